"""Building the client from settings: emulator URL, kubeconfig, in-cluster."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from kubernetes.config import ConfigException

from k8s.client import KubeClient
from k8s.config import api_client_from_settings, kube_url
from k8s.emulator import EmulatorServer
from k8s.models import BackoffPolicy
from settings import Settings
from tests.k8s.conftest import pod_request


def test_emulator_mode_defaults_to_the_local_port(emulator: EmulatorServer) -> None:
    settings = Settings(kube_mode="emulator", kube_emulator_port=emulator.port, kube_url=None)
    assert kube_url(settings) == f"http://127.0.0.1:{emulator.port}"
    with KubeClient.from_settings(settings) as kube:
        pod = kube.create_job_pod(pod_request(priority_class="low"))
        assert kube.namespace == "quotaflow"
        assert pod.priority_class_name == "quotaflow-low"


def test_emulator_mode_with_an_explicit_url_and_prefix(emulator: EmulatorServer) -> None:
    settings = Settings(
        kube_url=emulator.url + "/",
        kube_namespace="batch",
        kube_priority_class_prefix="system-",
        kube_default_image="alpine:3.20",
    )
    with KubeClient.from_settings(settings) as kube:
        kube.create_job_pod(pod_request(priority_class="cluster-critical"))
        (pod,) = emulator.pods("batch")
        assert pod["spec"]["priorityClassName"] == "system-cluster-critical"
        assert pod["spec"]["containers"][0]["image"] == "alpine:3.20"


def test_kubeconfig_mode_uses_the_named_context(emulator: EmulatorServer, tmp_path: Path) -> None:
    kubeconfig = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "emulated", "cluster": {"server": emulator.url}},
            {"name": "nowhere", "cluster": {"server": "http://127.0.0.1:9"}},
        ],
        "users": [{"name": "worker", "user": {"token": "not-checked-by-the-emulator"}}],
        "contexts": [
            {"name": "emulated", "context": {"cluster": "emulated", "user": "worker"}},
            {"name": "nowhere", "context": {"cluster": "nowhere", "user": "worker"}},
        ],
        "current-context": "nowhere",
    }
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(kubeconfig))
    settings = Settings(kube_mode="kubeconfig", kube_config=path, kube_context="emulated")
    client = api_client_from_settings(settings)
    try:
        assert client.configuration.host == emulator.url
        assert KubeClient(client, "quotaflow").list_job_pods() == []
    finally:
        client.close()


def test_incluster_mode_outside_a_cluster_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_PORT", raising=False)
    with pytest.raises(ConfigException):
        api_client_from_settings(Settings(kube_mode="incluster"))


def test_backoff_grows_to_its_cap() -> None:
    backoff = BackoffPolicy(initial_seconds=0.5, multiplier=2, max_seconds=3)
    assert [backoff.delay(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]
