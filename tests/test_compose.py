"""deploy/docker-compose.yml: it parses, every Conveyor service runs a real command with
real flags and real settings, and `docker compose up --scale worker=N` works (nothing in
the worker service is fixed per container). No Docker engine is needed: nothing runs."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from conveyor.config import Settings, parse_duration
from tests.deploy_files import (
    COMPOSE,
    SAMPLE_SECRETS,
    check_command,
    served_paths,
    settings_from_env,
)

# The supervisor waits worker.shutdown_grace and then this much more for its processes.
SUPERVISOR_MARGIN = 10.0
# ${NAME}, ${NAME:-default}, ${NAME:?message}: compose fills these in from the shell.
INTERPOLATION = re.compile(r"\$\{([A-Z_][A-Z0-9_]*)(?:[:?-][^}]*)?\}")
SAMPLES = {
    "CONVEYOR_WEB_TOKENS": SAMPLE_SECRETS["WEB_TOKENS"],
    "CONVEYOR_SESSION_SECRET": SAMPLE_SECRETS["WEB__SESSION_SECRET"],
}

COMPOSE_FILE: dict[str, Any] = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
SERVICES: dict[str, dict[str, Any]] = COMPOSE_FILE["services"]
CONVEYOR = sorted(name for name, service in SERVICES.items() if "build" in service)


def interpolated(value: str) -> str:
    return INTERPOLATION.sub(lambda match: SAMPLES[match.group(1)], value)


def test_the_conveyor_services_are_all_there() -> None:
    assert CONVEYOR == ["migrate", "queuer", "web", "worker"]
    for name in CONVEYOR:
        assert SERVICES[name]["build"]["dockerfile"] == "deploy/Dockerfile"


@pytest.mark.parametrize("name", CONVEYOR)
def test_every_conveyor_service_runs_a_real_command_with_real_settings(name: str) -> None:
    service = SERVICES[name]
    params = check_command(service["command"])
    env = {key: interpolated(str(value)) for key, value in service["environment"].items()}
    settings_from_env(env)
    if "healthcheck" in service:
        url = service["healthcheck"]["test"][-1]
        found = re.search(r"http://127\.0\.0\.1:(\d+)(/[a-z]+)", url)
        assert found, url
        assert int(found.group(1)) == params["health_port"]
        assert found.group(2) in served_paths()


def test_worker_scales_with_docker_compose_scale() -> None:
    worker = SERVICES["worker"]
    # A fixed name or a fixed host port would make the second replica fail to start.
    assert "container_name" not in worker
    for port in worker.get("ports", []):
        published = str(port).rsplit(":", 1)[0] if ":" in str(port) else ""
        assert not published or "-" in published, f"fixed host port {port}"
    assert "hostname" not in worker
    # Scaling down stops replicas: they must get their whole drain first.
    settings = settings_from_env(
        {key: interpolated(str(value)) for key, value in worker["environment"].items()}
    )
    grace = parse_duration(worker["stop_grace_period"])
    assert grace > settings.worker.shutdown_grace + SUPERVISOR_MARGIN
    assert settings.worker.shutdown_grace == Settings().worker.shutdown_grace


def test_only_the_web_service_publishes_a_port_and_only_on_loopback() -> None:
    published = {name: s["ports"] for name, s in SERVICES.items() if s.get("ports")}
    assert published == {"web": ["127.0.0.1:8080:8080"]}
