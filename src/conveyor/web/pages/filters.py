"""The job-list filters as they travel in a URL, checked once, for pages and fragments."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from conveyor.admin import Admin, JobSummary, Page
from conveyor.durations import parse_duration
from conveyor.labels import Meta, check_tags, parse_meta_pairs
from conveyor.vocabulary import (
    CANCELLED,
    COMPLETED,
    DEAD,
    DISPATCHED,
    EXPIRED,
    LANES,
    QUEUED,
    RETRY_SCHEDULED,
    RUNNING,
    WAITING,
)
from conveyor.web.pages.common import query_string

PAGE_SIZE = 50
# The statuses an operator filters by, in the order a job passes through them.
STATUS_CHOICES = (
    WAITING,
    QUEUED,
    RETRY_SCHEDULED,
    DISPATCHED,
    RUNNING,
    COMPLETED,
    DEAD,
    CANCELLED,
    EXPIRED,
)
LANE_CHOICES = LANES


@dataclass(frozen=True)
class JobFilters:
    queue: str | None = None
    status: str = ""
    lane: str = ""
    min_age: str = ""  # as typed: "90", "5m", "1h30m"
    max_age: str = ""
    text: str = ""
    tag: str = ""  # as typed: "invoice, eu"
    meta: str = ""  # as typed: "customer=acme, batch:=7"
    after: str = ""
    problem: str = ""  # why the filters cannot be used as given
    queue_in_query: bool = (
        False  # the dead-letter view filters by queue; a queue page has it in its path
    )

    @classmethod
    def parse(
        cls, params: Mapping[str, str], queue: str | None = None, queue_in_query: bool = False
    ) -> JobFilters:
        def field(name: str, limit: int = 500) -> str:
            value = params.get(name) or ""
            return value.strip()[:limit]

        filters = cls(
            queue=queue,
            status=field("status", 40),
            lane=field("lane", 20),
            min_age=field("min_age", 40),
            max_age=field("max_age", 40),
            # A NUL cannot be in any stored text, so searching for it finds nothing anyway.
            text=(params.get("text") or "").replace("\x00", "")[:500],
            tag=field("tag"),
            meta=field("meta", 2000),
            after=field("after", 200),
            queue_in_query=queue_in_query,
        )
        problems = []
        for label, value in (("older than", filters.min_age), ("newer than", filters.max_age)):
            if value:
                try:
                    if parse_duration(value) < 0:
                        raise ValueError("must not be negative")
                except ValueError as error:
                    problems.append(f"“{label}”: {error}")
        try:
            filters.labels()
        except ValueError as error:
            problems.append(f"“tags and meta”: {error}")
        return replace(filters, problem="; ".join(problems))

    def labels(self) -> tuple[list[str] | None, Meta | None]:
        """The tags and meta typed into the form (comma-separated; meta pairs as the CLI
        takes them); ValueError naming what is wrong."""
        tags = [tag.strip() for tag in self.tag.split(",") if tag.strip()]
        pairs = [pair.strip() for pair in self.meta.split(",") if pair.strip()]
        return (check_tags(tags, "tag") or None, parse_meta_pairs(pairs) or None)

    def seconds(self, value: str) -> float | None:
        return parse_duration(value) if value else None

    @property
    def active(self) -> bool:
        return any(
            (self.status, self.lane, self.min_age, self.max_age, self.text.strip(), self.tag)
        ) or bool(self.meta)

    def params(self, **changes: Any) -> dict[str, str]:
        values = {
            "queue": (self.queue or "") if self.queue_in_query else "",
            "status": self.status,
            "lane": self.lane,
            "min_age": self.min_age,
            "max_age": self.max_age,
            "text": self.text,
            "tag": self.tag,
            "meta": self.meta,
            "after": self.after,
        }
        values.update(changes)
        return values

    def query(self, **changes: Any) -> str:
        return query_string(self.params(**changes))

    async def fetch(self, admin: Admin, status: str | None = None) -> Page[JobSummary]:
        """One page of jobs; `status` overrides the filter (the dead-letter view)."""
        tags, meta = self.labels()
        return await admin.list_jobs(
            queue=self.queue,
            status=status or self.status or None,
            lane=self.lane or None,
            min_age_seconds=self.seconds(self.min_age),
            max_age_seconds=self.seconds(self.max_age),
            text=self.text if self.text.strip() else None,
            after=self.after or None,
            limit=PAGE_SIZE,
            tags=tags,
            meta=meta,
        )
