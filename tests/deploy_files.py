"""Reading the deployment files (deploy/kubernetes, deploy/docker-compose.yml) and checking
what they ask of Conveyor: real commands and flags, real probe paths, real settings.

Shared by the Kubernetes and the compose tests; nothing here starts a process.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import yaml

from conveyor.cli import main
from conveyor.config import Settings, load_settings
from conveyor.probes import health_routes

ROOT = Path(__file__).resolve().parent.parent
KUBERNETES = ROOT / "deploy" / "kubernetes"
COMPOSE = ROOT / "deploy" / "docker-compose.yml"

# Sample values for the placeholders of secrets: the tests check names and the shape of
# the configuration, not anyone's passwords.
SAMPLE_SECRETS = {
    "DATABASE_URL": "postgresql://conveyor:sample@postgres:5432/conveyor",
    "REDIS_URL": "redis://:sample@redis:6379/0",
    "WEB_TOKENS": "ops:admin:sample-token-0123456789",
    "WEB__SESSION_SECRET": "5f0c3e9a1b7d2e4f8a6c0b9d3e1f7a2c4b8d6e0f1a3c5e7b9d2f4a6c8e0b1d3f",
}


@dataclass(frozen=True)
class Document:
    path: Path
    body: dict[str, Any]

    @property
    def kind(self) -> str:
        return str(self.body.get("kind", ""))

    @property
    def name(self) -> str:
        return str(self.body.get("metadata", {}).get("name", ""))

    def __str__(self) -> str:
        return f"{self.path.relative_to(ROOT)}: {self.kind}/{self.name}"


def kubernetes_documents() -> list[Document]:
    """Every YAML document under deploy/kubernetes, kustomizations included."""
    found = []
    for path in sorted(KUBERNETES.rglob("*.yaml")):
        for body in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            assert isinstance(body, dict), f"{path}: a document that is not a mapping"
            found.append(Document(path, body))
    return found


def pod_specs(documents: list[Document]) -> Iterator[tuple[Document, dict[str, Any]]]:
    for document in documents:
        if document.kind in ("Deployment", "Job", "StatefulSet", "DaemonSet"):
            yield document, document.body["spec"]["template"]["spec"]


def containers(documents: list[Document]) -> Iterator[tuple[Document, dict[str, Any]]]:
    for document, spec in pod_specs(documents):
        for container in [*spec.get("initContainers", []), *spec["containers"]]:
            yield document, container


def check_command(argv: list[str]) -> dict[str, Any]:
    """Parse argv exactly as `conveyor` would, without running it; return the parameters.

    Raises click.UsageError for an unknown command or flag, or a bad flag value.
    """
    if len(argv) < 2 or argv[0] != "conveyor":
        raise click.UsageError(f"not a conveyor command: {argv}")
    group = click.Context(main, info_name="conveyor")
    command = main.get_command(group, argv[1])
    if command is None:
        raise click.UsageError(f"no such command: conveyor {argv[1]}")
    with command.make_context(argv[1], list(argv[2:]), parent=group) as parsed:
        return dict(parsed.params)


def served_paths() -> set[str]:
    """The paths every process's health port serves (queuer, worker supervisor, web)."""

    class Ready:
        ready = True
        not_ready_reason = ""

    async def build() -> set[str]:
        return {route.path for route in health_routes(Settings(), Ready())}

    return asyncio.run(build())


def settings_from_env(env: Mapping[str, str]) -> Settings:
    """Load settings from these variables alone, every name with the CONVEYOR_ prefix: a
    prefixed name that is not a setting is an error, where a bare one might be skipped as
    another program's, so a misspelt name cannot slip through."""
    return load_settings(None, env={f"CONVEYOR_{name}": value for name, value in env.items()})
