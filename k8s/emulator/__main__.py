"""``python -m k8s.emulator --port 18080``: serve the emulator until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from types import FrameType

from k8s.emulator.server import EmulatorServer
from k8s.emulator.state import EmulatorConfig


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m k8s.emulator", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=18080, help="0 picks a free port")
    parser.add_argument(
        "--start-delay",
        type=float,
        default=EmulatorConfig().start_delay_seconds,
        help="seconds a pod stays Pending before Running",
    )
    parser.add_argument(
        "--no-pod-security", action="store_true", help='accept pods that break "restricted"'
    )
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    config = EmulatorConfig(
        start_delay_seconds=args.start_delay, enforce_pod_security=not args.no_pod_security
    )
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        logging.getLogger("k8s.emulator").info("%s: stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    server = EmulatorServer(args.host, args.port, config).start()
    # The URL on stdout lets a parent process that asked for port 0 find the server.
    print(f"kube emulator serving {server.url}", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
