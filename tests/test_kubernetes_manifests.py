"""deploy/kubernetes: every manifest parses, asks Conveyor only for what exists (commands,
flags, probe paths, settings), keeps the worker's drain inside the grace period, and
validates against the Kubernetes schemas (kubernetes-validate) and KEDA's (the
cloudcoil-models-keda models, generated from KEDA's CRDs)."""

from __future__ import annotations

import re
from typing import Any

import click
import pytest
import yaml

from conveyor.admin import Admin
from conveyor.config import ConfigError, Settings
from conveyor.vocabulary import COMPLETED, DISPATCHED, QUEUED, RUNNING, STATUSES
from tests.deploy_files import (
    KUBERNETES,
    SAMPLE_SECRETS,
    Document,
    check_command,
    containers,
    kubernetes_documents,
    pod_specs,
    served_paths,
    settings_from_env,
    validate_object,
)
from tests.factories import Db, add_job

# The supervisor waits worker.shutdown_grace and then this much more for its processes.
SUPERVISOR_MARGIN = 10.0
# metadata.labels values and selector values (Kubernetes' own rule).
LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")
ALL_INTERFACES = "0.0.0.0"  # noqa: S104 - the address the pods must listen on
TEMP_DIR = "/tmp"  # noqa: S108 - the path the image's Python uses for temporary files

DOCUMENTS = kubernetes_documents()
OBJECTS = [d for d in DOCUMENTS if d.kind != "Kustomization"]


def by_kind(kind: str) -> list[Document]:
    return [d for d in OBJECTS if d.kind == kind]


def named(kind: str, name: str) -> Document:
    found = [d for d in OBJECTS if d.kind == kind and d.name == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def env_of(document: Document) -> dict[str, str]:
    return {str(k): str(v) for k, v in document.body.get("data", {}).items()} | {
        str(k): str(v) for k, v in document.body.get("stringData", {}).items()
    }


def test_every_document_parses_and_the_base_lists_every_manifest() -> None:
    assert len(OBJECTS) >= 10
    base = KUBERNETES / "base"
    listed = set(yaml.safe_load((base / "kustomization.yaml").read_text())["resources"])
    assert listed == {p.name for p in base.glob("*.yaml")} - {"kustomization.yaml"}
    for document in OBJECTS:
        assert "namespace" not in document.body["metadata"], f"{document}: namespace-agnostic"


def test_kustomizations_name_existing_files_and_patch_existing_fields() -> None:
    kustomizations = [d for d in DOCUMENTS if d.kind == "Kustomization"]
    overlays = {d.path.parent.name for d in kustomizations} - {"base", "kubernetes"}
    assert overlays == {"keda", "keda-prometheus", "hpa"}
    worker = named("Deployment", "conveyor-worker").body
    for kustomization in kustomizations:
        home = kustomization.path.parent.resolve()
        for resource in kustomization.body["resources"]:
            target = (home / resource).resolve()
            assert target.exists(), f"{kustomization}: {resource}"
            # kustomize refuses to include a directory that contains the including one.
            assert not home.is_relative_to(target), f"{kustomization}: {resource}"
        for patch in kustomization.body.get("patches", []):
            assert patch["target"] == {"kind": "Deployment", "name": "conveyor-worker"}
            for operation in yaml.safe_load(patch["patch"]):
                assert operation["op"] == "remove"
                *parents, last = operation["path"].strip("/").split("/")
                node: Any = worker
                for part in parents:
                    node = node[part]
                assert last in node, f"{kustomization}: {operation['path']} is not in the worker"


@pytest.mark.parametrize("document", OBJECTS, ids=str)
def test_validates_against_the_kubernetes_or_keda_schema(document: Document) -> None:
    validate_object(document.body)


def test_every_label_and_selector_value_is_a_valid_label_value() -> None:
    values = []
    for document in OBJECTS:
        values += document.body["metadata"].get("labels", {}).values()
        spec = document.body.get("spec", {})
        values += spec.get("selector", {}).get("matchLabels", {}).values()
        values += spec.get("template", {}).get("metadata", {}).get("labels", {}).values()
    assert values
    for value in values:
        assert len(value) <= 63 and LABEL_VALUE.fullmatch(value), value


@pytest.mark.parametrize(
    ("document", "container"),
    [pytest.param(d, c, id=f"{d.name}/{c['name']}") for d, c in containers(OBJECTS)],
)
def test_every_container_runs_a_real_conveyor_command(
    document: Document, container: dict[str, Any]
) -> None:
    argv = [*container.get("command", []), *container.get("args", [])]
    assert argv, f"{document}: the image's default command only prints help"
    params = check_command(argv)
    probes = [container.get(p) for p in ("livenessProbe", "readinessProbe", "startupProbe")]
    probes = [probe for probe in probes if probe]
    if document.kind == "Deployment":
        assert len(probes) >= 2, f"{document}: liveness and readiness probes"
        ports = {port["name"]: port["containerPort"] for port in container["ports"]}
        for probe in probes:
            port = probe["httpGet"]["port"]
            # Each probe reaches the port the command serves its health routes on.
            assert ports.get(port, port) == params["health_port"], f"{document}: {port}"


def test_unknown_flags_and_commands_are_caught() -> None:
    with pytest.raises(click.UsageError, match="--autoscal"):
        check_command(["conveyor", "worker", "--app", "a:b", "--autoscal", "1:4"])
    with pytest.raises(click.UsageError, match="no such command"):
        check_command(["conveyor", "queue", "--health-port", "9101"])
    with pytest.raises(click.BadParameter):
        check_command(["conveyor", "queuer", "--health-port", "99999"])


def test_every_probe_path_is_served_and_liveness_is_healthz() -> None:
    served = served_paths()
    checked = 0
    for document, container in containers(OBJECTS):
        for kind in ("livenessProbe", "readinessProbe", "startupProbe"):
            if kind in container:
                assert container[kind]["httpGet"]["path"] in served, f"{document} {kind}"
                checked += 1
        if "livenessProbe" in container:
            assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert checked >= 6
    for name in ("conveyor-queuer", "conveyor-worker"):
        (container,) = named("Deployment", name).body["spec"]["template"]["spec"]["containers"]
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"


def test_the_worker_pod_outlasts_its_drain() -> None:
    settings = configured_settings()
    spec = named("Deployment", "conveyor-worker").body["spec"]["template"]["spec"]
    grace = spec["terminationGracePeriodSeconds"]
    assert grace > settings.worker.shutdown_grace + SUPERVISOR_MARGIN
    assert settings.worker.shutdown_grace == Settings().worker.shutdown_grace


def configured_settings() -> Settings:
    env = env_of(named("ConfigMap", "conveyor-config"))
    secrets = env_of(named("Secret", "conveyor-secrets"))
    assert set(secrets) == set(SAMPLE_SECRETS)
    return settings_from_env(env | SAMPLE_SECRETS)


def test_configmap_and_secret_hold_only_real_settings() -> None:
    settings = configured_settings()
    # Probes and the Service reach the pod from outside it.
    assert settings.health.host == ALL_INTERFACES
    assert settings.web.host == ALL_INTERFACES
    assert settings.log.format == "json"
    for document, spec in pod_specs(OBJECTS):
        # Kubernetes' service links (CONVEYOR_WEB_PORT=tcp://... for conveyor-web) would
        # otherwise be read as settings and stop every process.
        assert spec.get("enableServiceLinks") is False, str(document)
        (container,) = spec["containers"]
        sources = {
            ref.get("configMapRef", ref.get("secretRef"))["name"] for ref in container["envFrom"]
        }
        assert sources == {"conveyor-config", "conveyor-secrets"}, str(document)


def test_an_unreplaced_session_secret_placeholder_stops_every_process() -> None:
    env = env_of(named("ConfigMap", "conveyor-config"))
    secrets = env_of(named("Secret", "conveyor-secrets"))
    assert all("REPLACE-ME" in value for value in secrets.values())
    with pytest.raises(ConfigError) as error:
        settings_from_env(env | secrets)
    assert [issue.key for issue in error.value.errors] == ["web.session_secret"]


def test_pods_run_as_non_root_on_a_read_only_root_with_a_writable_tmp() -> None:
    checked = 0
    for document, spec in pod_specs(OBJECTS):
        assert spec["securityContext"]["runAsNonRoot"] is True
        # The image's USER is a name (nobody): the kubelet needs a number to check it.
        assert spec["securityContext"]["runAsUser"] == 65534
        volumes = {v["name"] for v in spec["volumes"] if "emptyDir" in v}
        for container in spec["containers"]:
            assert container["securityContext"]["readOnlyRootFilesystem"] is True
            mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
            # The worker supervisor keeps PROMETHEUS_MULTIPROC_DIR under the temp dir.
            assert mounts.get(TEMP_DIR) in volumes, str(document)
            assert "memory" in container["resources"]["limits"]
            checked += 1
    assert checked == 4


def test_disruption_budgets_cover_queuers_and_workers() -> None:
    covered = {
        d.body["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"]
        for d in by_kind("PodDisruptionBudget")
    }
    assert {"queuer", "worker"} <= covered
    assert named("Deployment", "conveyor-queuer").body["spec"]["replicas"] >= 2


def keda_query() -> str:
    scaled = [d for d in by_kind("ScaledObject") if d.path.parent.name == "keda"]
    (trigger,) = scaled[0].body["spec"]["triggers"]
    assert trigger["type"] == "postgresql"
    return str(trigger["metadata"]["query"])


def test_the_keda_query_names_real_statuses_and_served_queues() -> None:
    query = keda_query()
    literals = set(re.findall(r"status = '([a-z_]+)'", query))
    assert literals == {QUEUED, DISPATCHED, RUNNING}
    assert literals <= set(STATUSES)
    worker = named("Deployment", "conveyor-worker").body["spec"]["template"]["spec"]
    served = check_command(worker["containers"][0]["command"])["queues"].split(",")
    assert re.findall(r"'([^']+)'", query.split("IN (")[1].split(")")[0]) == served
    schema = configured_settings().database.schema_name
    assert f" {schema}.jobs" in query and f" {schema}.job_queues" in query


async def test_the_keda_query_counts_the_demand_for_workers(settings: Settings, db: Db) -> None:
    query = keda_query().replace("conveyor.", f'"{settings.database.schema_name}".')
    add_job(db, "email-sending", status=QUEUED)
    add_job(db, "email-sending", status=QUEUED, priority=10)
    add_job(db, "email-sending", status=DISPATCHED)
    add_job(db, "analytics:daily-aggregate", status=RUNNING)
    add_job(db, "email-sending", status=QUEUED, run_in=60)  # a retry, not due yet
    add_job(db, "email-sending", status=COMPLETED)
    add_job(db, "another-queue", status=QUEUED)  # served by other workers
    # A paused queue's waiting jobs need no worker; its running ones still run.
    add_job(db, "warmup:process", status=QUEUED)
    add_job(db, "warmup:process", status=RUNNING)
    async with Admin(settings) as admin:
        await admin.pause("warmup:process", "test")
    row = db.execute(query.encode()).fetchone()
    assert row == (5,)


def test_postgresql_connections_fit_the_default_max_connections_at_the_largest_scale() -> None:
    pool = configured_settings().database.pool_size
    worker = named("Deployment", "conveyor-worker").body["spec"]["template"]["spec"]
    processes = check_command(worker["containers"][0]["command"])["processes"]
    largest = max(
        [d.body["spec"]["maxReplicaCount"] for d in by_kind("ScaledObject")]
        + [d.body["spec"]["maxReplicas"] for d in by_kind("HorizontalPodAutoscaler")]
    )
    others = sum(
        named("Deployment", name).body["spec"]["replicas"]
        for name in ("conveyor-queuer", "conveyor-web")
    )
    # PostgreSQL's default max_connections, less superuser_reserved_connections.
    assert (largest * processes + others) * pool <= 100 - 3


def test_every_selector_selects_a_deployment_and_every_service_port_exists() -> None:
    templates = {d.name: d.body["spec"]["template"] for d in OBJECTS if d.kind == "Deployment"}

    def selected(labels: dict[str, str]) -> list[str]:
        return [
            name
            for name, template in templates.items()
            if labels.items() <= template["metadata"]["labels"].items()
        ]

    for document in by_kind("PodDisruptionBudget"):
        assert len(selected(document.body["spec"]["selector"]["matchLabels"])) == 1, str(document)
    for name in templates:
        deployment = named("Deployment", name).body["spec"]
        assert selected(deployment["selector"]["matchLabels"]) == [name]
    (service,) = by_kind("Service")
    (target,) = selected(service.body["spec"]["selector"])
    (container,) = templates[target]["spec"]["containers"]
    names = {port["name"] for port in container["ports"]}
    assert {port["targetPort"] for port in service.body["spec"]["ports"]} <= names
    for scaler in by_kind("ScaledObject") + by_kind("HorizontalPodAutoscaler"):
        assert scaler.body["spec"]["scaleTargetRef"]["name"] in templates, str(scaler)
