"""Stack commands: ``up``, ``down``, ``status`` — PostgreSQL, the Temporal dev server, the
Kubernetes emulator and a worker on this machine (devstack/stack.py, docs/en/operations.md)."""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING, Annotated

import typer

from cli.app import JsonOpt, app, emit, say, session
from settings import get_settings

if TYPE_CHECKING:
    from devstack.stack import StackState, StackStatus

# devstack.stack is imported by the commands only: it needs psutil and the embedded servers'
# helpers, which an image that talks to real servers does not carry.

TimeoutOpt = Annotated[
    float, typer.Option("--timeout", help="Seconds to wait for every piece.", min=1)
]
COLUMNS = ["piece", "state", "pid", "port", "address", "log"]


def show(status: StackStatus, *, json_: bool) -> None:
    if json_ or session.json:
        emit(status, json_=True)
        return
    if status.pieces and status.status != "not running":
        who = f"supervisor pid {status.supervisor_pid}" if status.running else "no supervisor"
        emit(
            [piece.model_dump() for piece in status.pieces],
            COLUMNS,
            title=f"quotaflow stack: {status.status} ({who}, state dir {status.state_dir})",
        )
    else:
        say(f"the stack is {status.status} (state dir {status.state_dir})")
    if status.status == "stale":
        say("its supervisor is gone: `python starter.py down` (or `up`) cleans up")
    if status.error:
        say(f"last error: {status.error}")


@app.command("up")
def up(
    detach: Annotated[
        bool,
        typer.Option(
            "--detach", "-d", help="Run in the background; return once every piece is ready."
        ),
    ] = False,
    timeout: TimeoutOpt = 180.0,
    json_: JsonOpt = False,
) -> None:
    """Start (or reuse) the local stack: PostgreSQL, Temporal + Web UI, emulator, one worker.

    In the foreground by default: Ctrl-C stops every piece.
    """
    from devstack.stack import Stack, StackError

    stack = Stack(get_settings())
    as_json = json_ or session.json
    if detach:
        _, reused = stack.up_detached(timeout)
        show(stack.status(), json_=as_json)
        if not as_json:
            started = "already running" if reused else "running in the background"
            say(f"{started}; `python starter.py down` stops it")
        return
    # The supervisor reports its progress through logging (stdout stays for the status); its
    # failure comes back as the one `error:` line, so only a traceback is logged twice.
    progress = logging.StreamHandler(sys.stderr)
    progress.setFormatter(logging.Formatter("%(message)s"))
    progress.addFilter(lambda r: r.levelno < logging.ERROR or r.exc_info is not None)
    logging.basicConfig(level=logging.INFO, handlers=[progress])

    reused_stack = False

    def ready(state: StackState, reused: bool) -> None:
        nonlocal reused_stack
        reused_stack = reused
        show(stack.status(), json_=as_json)
        if as_json:
            sys.stdout.flush()
        elif reused:
            say("already running in another process: `python starter.py down` stops it")
        else:
            say("Ctrl-C stops the stack")

    final = stack.run_foreground(ready, timeout)
    if reused_stack:
        return
    if final.status == "failed":
        raise StackError(final.error or "the stack failed; see its logs")


@app.command("down")
def down(timeout: TimeoutOpt = 60.0, json_: JsonOpt = False) -> None:
    """Stop the local stack (and whatever a killed supervisor left running)."""
    from devstack.stack import Stack

    report = Stack(get_settings()).down(timeout)
    if report.supervisor_pid is not None:
        message = f"stopped the stack (supervisor pid {report.supervisor_pid})"
    elif report.cleaned:
        message = "no supervisor was running"
    else:
        message = "nothing was running"
    if report.cleaned:
        message += "; stopped what was left: " + ", ".join(report.cleaned)
    if report.postgres_holders:
        pids = ", ".join(str(pid) for pid in report.postgres_holders)
        message += f"; PostgreSQL keeps running for the other process(es) holding it: {pids}"
    say(
        message,
        json_=json_,
        supervisor_pid=report.supervisor_pid,
        cleaned=report.cleaned,
        postgres_holders=report.postgres_holders,
    )


@app.command("status")
def status(json_: JsonOpt = False) -> None:
    """What runs where: pids, ports, addresses (Temporal, Web UI, emulator, database), logs."""
    from devstack.stack import Stack

    show(Stack(get_settings()).status(), json_=json_)
