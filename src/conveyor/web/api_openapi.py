"""The OpenAPI 3.1 document, generated from the same operation table that builds the routes.

Response schemas come from the admin layer's result dataclasses and request schemas from
the API's input models (both through pydantic), with their `$defs` lifted into
components: nothing here is written by hand except the error shape, so the document
describes what the code actually does.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from pydantic import TypeAdapter
from pydantic.json_schema import JsonSchemaMode

from conveyor.admin import Admin
from conveyor.tasks import QUEUE_NAME
from conveyor.web.api_io import MAX_BODY, Body, NoQuery, Query
from conveyor.web.auth import Role

REF = "#/components/schemas/{model}"
SECURITY_SCHEME = "bearerAuth"


@dataclass(frozen=True)
class Call:
    """What an operation runs with: the admin layer, who is asking (for the audit log),
    and the keyword arguments gathered from the path, the query string and the body."""

    admin: Admin
    actor: str
    args: dict[str, Any]
    may_purge: bool = False  # the caller may purge dead letters (deleting a dead job)


@dataclass(frozen=True, kw_only=True)
class Operation:
    method: str
    path: str  # below /api
    operation_id: str
    tag: str
    summary: str
    role: Role | None  # None: served without credentials
    response: Any  # the type whose serialised form is the 200 body
    run: Callable[[Call], Awaitable[Any]] | None = None
    query: type[Query] = NoQuery
    body: type[Body] | None = None
    body_required: bool = False
    errors: tuple[int, ...] = ()  # beyond those every operation of its kind can return
    uses_admin: bool = True  # False when it never touches PostgreSQL or Redis (no 503)


ERRORS: dict[int, tuple[str, str]] = {
    400: ("BadRequest", "Bad input (the message names it); nothing was changed."),
    401: ("Unauthorized", "No credentials, or an unknown token."),
    403: ("Forbidden", "The token's role does not allow this (or a session failed CSRF)."),
    404: ("NotFound", "No such job, queue, schedule or batch."),
    409: ("Conflict", "The job is in a state the action does not apply to."),
    413: ("TooLarge", f"The request body is larger than {MAX_BODY} bytes."),
    503: ("Unavailable", "PostgreSQL (or Redis) did not answer."),
}
PATH_PARAMETERS: dict[str, dict[str, Any]] = {
    "job_id": {
        "description": "A job id.",
        "schema": {"type": "string", "format": "uuid"},
    },
    "queue": {
        "description": "A queue name.",
        "schema": {
            "type": "string",
            "minLength": 1,
            "maxLength": 100,
            "pattern": QUEUE_NAME.pattern,
        },
    },
    "batch_id": {
        "description": "A batch id.",
        "schema": {"type": "string", "format": "uuid"},
    },
    "schedule": {
        "description": "A schedule name.",
        "schema": {"type": "string", "minLength": 1, "maxLength": 200, "pattern": r"^[^\s/]+$"},
    },
}
ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"error": {"type": "string", "description": "What went wrong."}},
    "required": ["error"],
}


def _schemas(
    types: Iterable[tuple[str, Any]], mode: JsonSchemaMode
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(schema of each keyed type, shared definitions) for one pydantic mode."""
    inputs = [(key, mode, TypeAdapter(kind)) for key, kind in types]
    mapping, definitions = TypeAdapter.json_schemas(inputs, ref_template=REF)
    return {key: schema for (key, _), schema in mapping.items()}, definitions.get("$defs", {})


def _parameter_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """A query parameter is either present or absent, so `null` is not one of its values."""
    schema = {key: value for key, value in schema.items() if key not in ("title", "default")}
    choices = [choice for choice in schema.pop("anyOf", []) if choice != {"type": "null"}]
    if len(choices) == 1:
        schema.update(choices[0])
    elif choices:
        schema["anyOf"] = choices
    return schema


def _query_parameters(model: type[Query]) -> list[dict[str, Any]]:
    schema = model.model_json_schema(by_alias=True, ref_template=REF)
    if "$defs" in schema:
        raise TypeError(f"{model.__name__}: query parameters must be plain values")
    required = set(schema.get("required", []))
    parameters = []
    for name, prop in schema.get("properties", {}).items():
        description = prop.get("description", "")
        parameter = {
            "name": name,
            "in": "query",
            "required": name in required,
            "description": description,
            "schema": _parameter_schema(prop),
        }
        parameter["schema"].pop("description", None)
        parameters.append(parameter)
    return parameters


def _error_statuses(operation: Operation) -> list[int]:
    statuses = {400, *operation.errors}
    if operation.role is not None:
        statuses |= {401, 403}
    if operation.body is not None:
        statuses.add(413)
    if operation.uses_admin:
        statuses.add(503)
    return sorted(statuses)


def _operation(operation: Operation, response: dict[str, Any], body: dict[str, Any] | None) -> Any:
    role = operation.role
    access = f"Needs the **{role}** role." if role else "Served without credentials."
    item: dict[str, Any] = {
        "operationId": operation.operation_id,
        "tags": [operation.tag],
        "summary": operation.summary,
        "description": access,
        "security": [{SECURITY_SCHEME: []}] if role else [],
        "parameters": [
            {"name": name, "in": "path", "required": True, **PATH_PARAMETERS[name]}
            for name in re.findall(r"{(\w+)}", operation.path)
        ]
        + _query_parameters(operation.query),
        "responses": {
            "200": {
                "description": "OK",
                "content": {"application/json": {"schema": response}},
            },
            **{
                str(status): {"$ref": f"#/components/responses/{ERRORS[status][0]}"}
                for status in _error_statuses(operation)
            },
        },
    }
    if role:
        item["x-required-role"] = role
    if body is not None:
        item["requestBody"] = {
            "required": operation.body_required,
            "content": {"application/json": {"schema": body}},
        }
    return item


def _every_field_present(definitions: dict[str, Any]) -> None:
    # The admin results serialise every field, defaults included: say so, so a client
    # (or a conformance check) may rely on each key being there.
    for schema in definitions.values():
        if "properties" in schema:
            schema["required"] = list(schema["properties"])


def _version() -> str:
    try:
        return metadata.version("conveyor-queue")
    except metadata.PackageNotFoundError:  # running from a source tree
        return "0"


def build_document(operations: list[Operation]) -> dict[str, Any]:
    responses, response_defs = _schemas(
        ((op.operation_id, op.response) for op in operations), "serialization"
    )
    _every_field_present(response_defs)
    bodies, body_defs = _schemas(
        ((op.operation_id, op.body) for op in operations if op.body is not None), "validation"
    )
    clashes = set(response_defs) & set(body_defs)
    if clashes:
        raise TypeError(f"schema names used twice: {sorted(clashes)}")
    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        paths.setdefault(f"/api{op.path}", {})[op.method.lower()] = _operation(
            op, responses[op.operation_id], bodies.get(op.operation_id)
        )
    error = {"application/json": {"schema": {"$ref": REF.format(model="Error")}}}
    unauthorized = {
        "WWW-Authenticate": {"schema": {"type": "string"}, "description": "Bearer challenge."}
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Conveyor admin API",
            "version": _version(),
            "description": (
                "Everything `conveyor admin` does, as JSON. Send `Authorization: Bearer "
                "<token>`; each configured token has a role: viewer (read), operator "
                "(pause, resume, retry, cancel, delete), admin (purge dead jobs, audit "
                "log). Every change is written to the audit log."
            ),
        },
        "paths": paths,
        "components": {
            "securitySchemes": {SECURITY_SCHEME: {"type": "http", "scheme": "bearer"}},
            "schemas": {**response_defs, **body_defs, "Error": ERROR_SCHEMA},
            "responses": {
                name: {
                    "description": text,
                    "content": error,
                    **({"headers": unauthorized} if status == 401 else {}),
                }
                for status, (name, text) in ERRORS.items()
            },
        },
        "security": [{SECURITY_SCHEME: []}],
    }
