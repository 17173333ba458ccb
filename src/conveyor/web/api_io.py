"""Input and output of the JSON API: query strings and bodies in, JSON out.

Query strings and bodies are parsed into pydantic models, so the same models give the
OpenAPI document its parameter and body schemas and the two cannot drift apart. Anything
that does not fit is a 400 naming the field, raised before the admin layer is called, so
a refused request changes nothing. The admin layer still checks everything itself (it is
also called by the CLI); the checks here exist to turn text into typed values and to
catch what would otherwise reach the database as a 500 (NUL bytes, for one).
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal
from uuid import UUID

import orjson
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    WithJsonSchema,
)
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from conveyor.admin.base import MAX_IDS, MAX_LIMIT
from conveyor.admin.history import check_window
from conveyor.labels import MAX_META_BYTES, check_meta, check_tags
from conveyor.tasks import QUEUE_NAME
from conveyor.vocabulary import LaneName

MAX_BODY = 1 << 20  # a full MAX_IDS list of ids is about 400 KiB
MAX_REPORTED_ERRORS = 5


def _no_nul(value: str) -> str:
    # PostgreSQL text cannot hold NUL: without this check it would surface as a 500.
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


QueueName = Annotated[str, Field(min_length=1, max_length=100, pattern=QUEUE_NAME.pattern)]
Text = Annotated[str, Field(min_length=1, max_length=500), AfterValidator(_no_nul)]
Lane = LaneName
Status = Literal[
    "queued",
    "dispatched",
    "running",
    "completed",
    "dead",
    "cancelled",
    "retry_scheduled",
    "expired",
    "waiting",
]
JobIds = Annotated[
    list[UUID], Field(min_length=1, max_length=MAX_IDS, description="Job ids (UUIDs)")
]
Limit = Annotated[int, Field(ge=1, le=MAX_LIMIT)]
# Ages reach PostgreSQL as `now() - interval`: unbounded, they overflow its timestamp range.
MAX_AGE = 100 * 366 * 86400
Seconds = Annotated[float, Field(ge=0, le=MAX_AGE, allow_inf_nan=False)]


class Query(BaseModel):
    """A query string. Unknown parameters are refused: a misspelt filter must not
    silently widen a listing."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Body(BaseModel):
    """A JSON body. Strict: `"dry_run": "no"` is an error, not a truthy string, and an
    unknown key (say `dryRun`) is refused rather than ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


# Field names are the admin layer's keyword arguments; aliases are what clients send.


class NoQuery(Query):
    pass


class PeekQuery(Query):
    n: Limit = Field(20, description="How many jobs (1-1000).")
    lane: Lane | None = Field(None, description="Only this priority lane.")


def _split_tags(value: Any) -> Any:
    # Tags cannot hold a comma (conveyor.labels), so one parameter carries several.
    return [tag.strip() for tag in value.split(",")] if isinstance(value, str) else value


def _parse_meta(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError:
        raise ValueError('must be a JSON object, such as {"customer": "acme"}') from None


# Documented as the text that travels in the query string, parsed into what the admin
# layer takes, and checked as an enqueue checks tags and meta.
TagList = Annotated[
    list[str],
    BeforeValidator(_split_tags),
    AfterValidator(lambda tags: check_tags(tags, "tag")),
    WithJsonSchema({"type": "string", "minLength": 1, "maxLength": 2000}),
]
MetaObject = Annotated[
    dict[str, Any],
    BeforeValidator(_parse_meta),
    AfterValidator(lambda meta: check_meta(meta, "meta")),
    WithJsonSchema({"type": "string", "minLength": 2, "maxLength": MAX_META_BYTES}),
]


class JobsQuery(Query):
    queue: QueueName | None = Field(None, description="Only this queue.")
    status: Status | None = Field(
        None, description="Only this status (retry_scheduled: queued after a failed attempt)."
    )
    lane: Lane | None = Field(None, description="Only this priority lane.")
    min_age_seconds: Seconds | None = Field(
        None, alias="min_age", description="Created at least this many seconds ago."
    )
    max_age_seconds: Seconds | None = Field(
        None, alias="max_age", description="Created at most this many seconds ago."
    )
    text: Text | None = Field(None, description="Find this text inside the payload.")
    tenant: QueueName | None = Field(None, description="Only this tenant's jobs.")
    tags: TagList | None = Field(
        None,
        alias="tag",
        description="Only jobs carrying every one of these tags (comma-separated).",
    )
    meta: MetaObject | None = Field(
        None,
        description="Only jobs whose meta holds every pair of this JSON object "
        '({"customer": "acme"}).',
    )
    after: Annotated[str, Field(max_length=200), AfterValidator(_no_nul)] | None = Field(
        None, alias="cursor", description="The next_cursor of the previous page."
    )
    limit: Limit = Field(50, description="Jobs per page (1-1000).")


class AuditQuery(Query):
    limit: Limit = Field(100, description="Entries, newest first (1-1000).")


def _window(value: str) -> str:
    check_window(value)  # its message names the accepted range
    return value


Window = Annotated[str, Field(min_length=1, max_length=20), AfterValidator(_window)]


class HistoryQuery(Query):
    window: Window = Field("1h", description="How far back: 1h, 24h, 72h, or any duration.")
    queue: QueueName | None = Field(None, description="Only this queue (default: all, summed).")


class IdsBody(Body):
    ids: JobIds


class ReplayBody(Body):
    payload: Any = Field(
        description="The dead job's new payload, any JSON value (encrypted fields: keep the "
        "sealed value, or give a new clear one)."
    )


class DeadRetryBody(Body):
    queue: QueueName | None = Field(None, description="Only dead jobs of this queue.")
    task: Text | None = Field(None, description="Only dead jobs of this task.")
    ids: JobIds | None = Field(None, description="Only these dead jobs.")
    dry_run: bool = Field(False, description="Only count what would be replayed.")


class PurgeBody(Body):
    queue: QueueName | None = Field(None, description="Only dead jobs of this queue.")
    dry_run: bool = Field(True, description="Only count (the default): send false to delete.")


def bad_request(message: str) -> HTTPException:
    return HTTPException(400, message)


def describe_errors(error: ValidationError, where: str) -> str:
    """One line naming each offending field (at most a few), for the {"error": ...} body."""
    parts = []
    for item in error.errors(include_url=False)[:MAX_REPORTED_ERRORS]:
        field = ".".join(str(part) for part in item["loc"])
        if item["type"] == "json_invalid":
            parts.append(f"the request body is not valid JSON ({item['msg']})")
        elif item["type"] == "extra_forbidden":
            parts.append(f"unknown {where} {field!r}")
        elif not field:
            parts.append(f"the request body: {item['msg']}")
        else:
            shown = item.get("input")
            got = f" (got {shown!r:.60})" if isinstance(shown, str | int | float) else ""
            parts.append(f"{where} {field!r}: {item['msg']}{got}")
    more = error.error_count() - MAX_REPORTED_ERRORS
    if more > 0:
        parts.append(f"and {more} more problem(s)")
    return "; ".join(parts)


def parse_query(request: Request, model: type[Query]) -> dict[str, Any]:
    """The admin keyword arguments the query string asks for."""
    values: dict[str, str] = {}
    for key, value in request.query_params.multi_items():
        if key in values:
            raise bad_request(f"query parameter {key!r} is given more than once")
        values[key] = value
    try:
        parsed = model.model_validate(values)
    except ValidationError as error:
        raise bad_request(describe_errors(error, "query parameter")) from None
    return parsed.model_dump()


async def read_body(request: Request) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY:
        raise HTTPException(413, f"the request body is larger than {MAX_BODY} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise HTTPException(413, f"the request body is larger than {MAX_BODY} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def parse_body(request: Request, model: type[Body]) -> dict[str, Any]:
    """The admin keyword arguments the JSON body asks for. Any content type is read as
    JSON (curl -d sends a form type by default); an empty body means `{}`."""
    raw = await read_body(request)
    try:
        parsed = model.model_validate_json(raw if raw.strip() else b"{}")
    except ValidationError as error:
        raise bad_request(describe_errors(error, "body field")) from None
    return parsed.model_dump()


def json_response(data: Any, status_code: int = 200) -> Response:
    try:
        content = orjson.dumps(data)
    except orjson.JSONEncodeError:
        # A payload may hold integers beyond 64 bits, which orjson refuses; json does not.
        content = json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()
    return Response(content, status_code=status_code, media_type="application/json")
