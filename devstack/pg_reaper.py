"""Stops an embedded PostgreSQL once no live process holds a lease on it.

Started detached by :class:`devstack.postgres.EmbeddedPostgres`; it is what makes a holder
killed with SIGKILL harmless: its lease dies with it, and after a grace period without any live
holder the reaper stops the server and exits. A new holder arriving within the grace period keeps
the server (and this reaper) alive.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from devstack.postgres import EmbeddedPostgres

POLL_SECONDS = 0.5


def main(argv: list[str]) -> int:
    state_dir, name, grace = Path(argv[0]), argv[1], float(argv[2])
    server = EmbeddedPostgres(state_dir, port=0, name=name)
    unheld_since: float | None = None
    while True:
        if not server.is_running():
            return 0
        if server.live_holders():
            unheld_since = None
        else:
            unheld_since = unheld_since or time.monotonic()
            if time.monotonic() - unheld_since >= grace and server.reap_once():
                return 0
        time.sleep(POLL_SECONDS)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
