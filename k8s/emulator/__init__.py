"""A local Kubernetes API emulator that the official ``kubernetes`` client talks to over HTTP.

It serves what quotaflow uses — core/v1 pods (create, get, list with label and field selectors,
delete with grace periods, watch with resourceVersions, bookmarks and 410 Gone), the
``pods/eviction`` subresource honouring policy/v1 PodDisruptionBudgets, and
scheduling.k8s.io/v1 PriorityClasses — plus ``/_emulator`` endpoints to inject faults.

- in a test or a dev stack: ``with EmulatorServer() as emulator: ... emulator.url``
- standalone: ``python -m k8s.emulator --port 18080``
- from another process: ``EmulatorAdmin(url).inject_fault("pods.evict", status=500)``

See docs/en/kubernetes.md for what it does and does not emulate.
"""

from k8s.emulator.faults import Endpoint, Fault
from k8s.emulator.server import EmulatorAdmin, EmulatorServer
from k8s.emulator.state import OUTCOME, RUN_SECONDS, START_SECONDS, EmulatorConfig

__all__ = [
    "OUTCOME",
    "RUN_SECONDS",
    "START_SECONDS",
    "EmulatorAdmin",
    "EmulatorConfig",
    "EmulatorServer",
    "Endpoint",
    "Fault",
]
