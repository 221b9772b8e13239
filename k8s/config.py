"""Build the official client's ``ApiClient`` from :class:`settings.Settings`.

Three modes (``QF_KUBE_MODE``): ``emulator`` (plain HTTP to ``QF_KUBE_URL``, no auth),
``kubeconfig`` (``QF_KUBE_CONFIG`` / ``QF_KUBE_CONTEXT``, or the usual ``~/.kube/config``) and
``incluster`` (the pod's service account token and CA).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from kubernetes import config as kube_config
from kubernetes.client import ApiClient, Configuration

from settings import Settings

_LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}


def kube_url(settings: Settings) -> str:
    """The URL of the emulator (or any API server) used in ``emulator`` mode."""
    return settings.kube_url or f"http://127.0.0.1:{settings.kube_emulator_port}"


def emulator_configuration(url: str) -> Configuration:
    """A client configuration for an unauthenticated HTTP API server such as the emulator."""
    host = urlsplit(url).hostname or ""
    # A proxy from the environment must never see traffic meant for a local emulator.
    no_proxy = ",".join(sorted(_LOOPBACK_HOSTS)) if host in _LOOPBACK_HOSTS else None
    return Configuration(host=url.rstrip("/"), no_proxy=no_proxy)


def api_client_from_settings(settings: Settings) -> ApiClient:
    """A new ``ApiClient`` for the configured cluster; the caller closes it."""
    if settings.kube_mode == "emulator":
        return ApiClient(emulator_configuration(kube_url(settings)))
    if settings.kube_mode == "kubeconfig":
        config_file = str(settings.kube_config) if settings.kube_config else None
        return kube_config.new_client_from_config(
            config_file=config_file, context=settings.kube_context, persist_config=False
        )
    configuration = Configuration()
    kube_config.load_incluster_config(client_configuration=configuration)
    return ApiClient(configuration)
