"""Fixtures: a fresh emulator per test and the official client pointed at it over HTTP."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest
from kubernetes.client import ApiClient, CoreV1Api, PolicyV1Api, V1Pod

from k8s.client import KubeClient
from k8s.config import emulator_configuration
from k8s.emulator import EmulatorConfig, EmulatorServer
from k8s.models import PodRequest

NAMESPACE = "quotaflow"

T = TypeVar("T")


@pytest.fixture
def emulator() -> Iterator[EmulatorServer]:
    with EmulatorServer(config=EmulatorConfig(start_delay_seconds=0.05)) as server:
        yield server


@pytest.fixture
def api_client(emulator: EmulatorServer) -> Iterator[ApiClient]:
    client = ApiClient(emulator_configuration(emulator.url))
    yield client
    client.close()


@pytest.fixture
def kube(api_client: ApiClient) -> KubeClient:
    return KubeClient(api_client, NAMESPACE, request_timeout_seconds=5.0)


@pytest.fixture
def core(api_client: ApiClient) -> CoreV1Api:
    return CoreV1Api(api_client)


@pytest.fixture
def policy(api_client: ApiClient) -> PolicyV1Api:
    return PolicyV1Api(api_client)


def pod_request(**overrides: Any) -> PodRequest:
    fields: dict[str, Any] = {
        "job_id": uuid.uuid4(),
        "attempt": 0,
        "project_id": uuid.uuid4(),
        "project_path": "root.team.proj",
        "pool": "a100",
        "priority_class": "normal",
        "gpu": 1,
        "cpu": 2,
        "submitted_by": "alice",
    }
    return PodRequest(**(fields | overrides))


def wait_for(probe: Callable[[], T | None], timeout: float = 5.0, every: float = 0.02) -> T:
    """Poll ``probe`` until it returns something truthy; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout}s (last value {value!r})")
        time.sleep(every)


def wait_running(kube: KubeClient, name: str) -> None:
    wait_for(lambda: kube.pod_phase(name) == "Running")


def budget(name: str, labels: dict[str, str], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": name},
        "spec": {"selector": {"matchLabels": labels}, **spec},
    }


def read_pod(core: CoreV1Api, name: str) -> dict[str, Any]:
    """The pod as the official client read it, back in wire form (camelCase keys)."""
    pod = core.read_namespaced_pod(name, NAMESPACE)
    raw: dict[str, Any] = core.api_client.sanitize_for_serialization(pod)
    return raw


def list_names(core: CoreV1Api, selector: str) -> set[str]:
    pods = core.api_client.sanitize_for_serialization(
        core.list_namespaced_pod(NAMESPACE, label_selector=selector)
    )
    return {item["metadata"]["name"] for item in pods["items"]}


def pod_body(manifest: dict[str, Any]) -> V1Pod:
    body = V1Pod.from_dict(manifest)
    assert body is not None
    return body


def restricted_pod(name: str, labels: dict[str, str] | None = None) -> V1Pod:
    """A minimal pod that passes Pod Security "restricted"."""
    return pod_body(
        {
            "metadata": {"name": name, "labels": labels or {}},
            "spec": {
                "securityContext": {
                    "runAsNonRoot": True,
                    "seccompProfile": {"type": "RuntimeDefault"},
                },
                "containers": [
                    {
                        "name": "main",
                        "image": "nginx:1.27",
                        "securityContext": {
                            "allowPrivilegeEscalation": False,
                            "capabilities": {"drop": ["ALL"]},
                        },
                    }
                ],
            },
        }
    )
