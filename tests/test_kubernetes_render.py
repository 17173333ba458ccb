"""deploy/kubernetes as kustomize renders it (kubectl kustomize, offline): each of the four
entry points builds, every rendered object validates, and exactly the overlays hand the
worker Deployment to one autoscaler."""

from __future__ import annotations

from typing import Any

import pytest

from tests.deploy_files import KUBERNETES, kustomize, validate_object

AUTOSCALERS = {"ScaledObject", "HorizontalPodAutoscaler"}
ENTRY_POINTS = {
    "kubernetes": None,
    "keda": "ScaledObject",
    "keda-prometheus": "ScaledObject",
    "hpa": "HorizontalPodAutoscaler",
}


def directory_of(name: str) -> Any:
    return KUBERNETES if name == "kubernetes" else KUBERNETES / name


def test_the_entry_points_are_every_kustomization_but_the_base() -> None:
    found = {p.parent.name for p in KUBERNETES.rglob("kustomization.yaml")} - {"base"}
    assert found == set(ENTRY_POINTS)


@pytest.mark.parametrize("name", sorted(ENTRY_POINTS))
def test_each_entry_point_renders_valid_objects_and_one_owner_for_worker_replicas(
    name: str,
) -> None:
    rendered = kustomize(directory_of(name))
    kinds = sorted(body["kind"] for body in rendered)
    assert kinds.count("Deployment") == 3 and "Job" in kinds and "Secret" in kinds
    for body in rendered:
        validate_object(body)
    (worker,) = [
        b
        for b in rendered
        if b["kind"] == "Deployment" and b["metadata"]["name"] == "conveyor-worker"
    ]
    scalers = [body for body in rendered if body["kind"] in AUTOSCALERS]
    if ENTRY_POINTS[name] is None:
        assert scalers == []
        assert worker["spec"]["replicas"] >= 1
        return
    (scaler,) = scalers
    assert scaler["kind"] == ENTRY_POINTS[name]
    assert scaler["spec"]["scaleTargetRef"]["name"] == "conveyor-worker"
    # With a replica count in the manifest, every apply would reset the autoscaler's.
    assert "replicas" not in worker["spec"]
    others = [b for b in rendered if b["kind"] == "Deployment" and b is not worker]
    assert others and all(b["spec"]["replicas"] >= 1 for b in others)
