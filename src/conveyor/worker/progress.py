"""Carrying handlers' progress to PostgreSQL without a statement of its own: each
heartbeat writes the latest report of every attempt that has a new one, and an attempt's
outcome carries the report no heartbeat wrote (docs/progress.md)."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import replace
from uuid import UUID

from conveyor.store.work import Outcome
from conveyor.tasks import JobContext, ProgressReport


def unwritten(contexts: Sequence[JobContext]) -> list[ProgressReport | None]:
    """Each attempt's report the worker has not written yet (None: nothing new)."""
    return [ctx.unwritten_progress() for ctx in contexts]


def as_params(reports: Sequence[ProgressReport | None]) -> list[tuple[float, str | None] | None]:
    return [(r.fraction, r.message) if r is not None else None for r in reports]


def written(
    contexts: Sequence[JobContext],
    reports: Sequence[ProgressReport | None],
    owned: Collection[UUID],
) -> None:
    """The heartbeat committed: the reports of the attempts it still owned are written."""
    for ctx, report in zip(contexts, reports, strict=True):
        if report is not None and ctx.job_id in owned:
            ctx.progress_written(report)


def with_last_progress(outcome: Outcome, ctx: JobContext) -> Outcome:
    """The outcome, carrying the handler's latest progress if no heartbeat wrote it (a
    handler that reports and returns within one beat still leaves its last word)."""
    report = ctx.unwritten_progress()
    if report is None:
        return outcome
    return replace(outcome, progress=report.fraction, progress_message=report.message)
