"""deploy/k8s agrees with what the client does and what the emulator assumes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from k8s.emulator import EmulatorServer

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "k8s"


def documents(name: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all((DEPLOY / name).read_text()) if doc]


def test_role_grants_exactly_what_the_client_calls() -> None:
    by_kind = {doc["kind"]: doc for doc in documents("rbac.yaml")}
    rules = {
        (group, resource): set(rule["verbs"])
        for rule in by_kind["Role"]["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
    }
    assert rules == {
        ("", "pods"): {"get", "list", "watch", "create", "delete"},
        ("", "pods/eviction"): {"create"},
        ("policy", "poddisruptionbudgets"): {"get", "list"},
    }
    binding = by_kind["RoleBinding"]
    assert binding["roleRef"]["name"] == by_kind["Role"]["metadata"]["name"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "quotaflow-worker", "namespace": "quotaflow"}
    ]
    assert {doc["metadata"]["namespace"] for doc in by_kind.values()} == {"quotaflow"}


def test_priority_classes_match_quotaflow_classes_and_the_emulator(
    emulator: EmulatorServer,
) -> None:
    classes = {doc["metadata"]["name"]: doc for doc in documents("priority-classes.yaml")}
    assert {name: doc["value"] for name, doc in classes.items()} == {
        "quotaflow-low": 100,
        "quotaflow-normal": 1000,
        "quotaflow-high": 10000,
    }
    assert not any(doc["globalDefault"] for doc in classes.values())
    assert {doc["preemptionPolicy"] for doc in classes.values()} == {"Never"}
    served = emulator.state()["priorityclasses"]
    assert {name: served[name] for name in classes} == {n: d["value"] for n, d in classes.items()}


def test_namespace_enforces_restricted_and_kustomization_lists_everything() -> None:
    (namespace,) = documents("namespace.yaml")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    (kustomization,) = documents("kustomization.yaml")
    assert set(kustomization["resources"]) == {
        p.name for p in DEPLOY.glob("*.yaml") if p.name != "kustomization.yaml"
    }
