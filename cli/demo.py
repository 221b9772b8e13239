"""``demo`` (what ``make demo`` runs): bring the local stack up, play the preemption story of
devstack/demo.py with a live table of its jobs, print what happened, and exit 0 only if the
story's outcomes held in the database — so it doubles as an end-to-end check.

The stack stays up afterwards (explore the Web UI; ``python starter.py down`` stops it) unless
``--down-after``. ``--json`` prints the report for scripts; the live table is shown only on a
terminal (``--headless`` prints one line per change instead, as CI logs want).
"""

from __future__ import annotations

import asyncio
import sys
import time
from types import TracebackType
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from cli.app import JsonOpt, app, console, emit, session
from domain.models import Pool
from settings import Settings, get_settings

if TYPE_CHECKING:
    from devstack.demo import DemoReport, JobRow
    from devstack.stack import Stack

# devstack.* is imported by the command only, as in cli/stack.py: an image that talks to real
# servers does not carry the embedded servers' helpers.

STACK_SECONDS = 180.0
INTERRUPTED = 130  # the shell's code for "ended by SIGINT"
STATUS_STYLES = {
    "PENDING": "yellow",
    "ADMITTED": "cyan",
    "RUNNING": "bold green",
    "PREEMPTING": "bold magenta",
    "PREEMPTED": "bold red",
    "SUCCEEDED": "green",
    "FAILED": "bold red",
    "CANCELLED": "dim",
}


def job_table(jobs: list[JobRow], pool: Pool | None, *, title: str = "demo jobs") -> Table:
    caption = (
        f"pool {pool.name}: {pool.gpu_in_use}/{pool.gpu_capacity} GPU in use "
        "(running jobs plus capacity a saga holds)"
        if pool is not None
        else None
    )
    table = Table(title=title, caption=caption, header_style="bold")
    for column in ("job", "project", "class", "GPUs", "status", "attempt", "note"):
        table.add_column(column, justify="right" if column in ("GPUs", "attempt") else "left")
    for job in jobs:
        note = f"preempted by {job.preempted_by}" if job.preempted_by else ""
        table.add_row(
            job.name,
            job.project,
            job.priority_class,
            str(job.gpu),
            Text(job.status, style=STATUS_STYLES.get(job.status, "")),
            str(job.attempt),
            note,
        )
    return table


class LiveReporter:
    """The story's steps printed above a live table of its jobs (on a terminal)."""

    def __init__(self, out: Console) -> None:
        # Transient: the report's final table replaces the live one instead of repeating it.
        self.live = Live(console=out, refresh_per_second=4, transient=True)

    def __enter__(self) -> LiveReporter:
        self.live.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.live.stop()

    def step(self, text: str) -> None:
        self.live.console.print(Text("▶ ", style="bold cyan") + Text(text))

    def show(self, jobs: list[JobRow], pool: Pool) -> None:
        self.live.update(job_table(jobs, pool))


class LineReporter:
    """One line per step and per job change: for logs, pipes and ``--json`` (on stderr)."""

    def __init__(self, out: Console) -> None:
        self.out = out
        self._seen: dict[str, tuple[str, int]] = {}
        self._clock = time.monotonic()

    def __enter__(self) -> LineReporter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        return None

    def _print(self, text: str) -> None:
        elapsed = time.monotonic() - self._clock
        # One line each, however long: logs are read with grep.
        self.out.print(f"{elapsed:6.1f}s  {text}", markup=False, highlight=False, soft_wrap=True)

    def step(self, text: str) -> None:
        self._print(f"▶ {text}")

    def show(self, jobs: list[JobRow], pool: Pool) -> None:
        for job in jobs:
            now = (job.status, job.attempt)
            before = self._seen.get(job.name)
            if before == now:
                continue
            self._seen[job.name] = now
            was = f"{before[0]} → " if before else ""
            by = f", preempted by {job.preempted_by}" if job.preempted_by else ""
            self._print(
                f"  {job.name:<16} {was}{job.status} (attempt {job.attempt}{by}; "
                f"pool {pool.gpu_in_use}/{pool.gpu_capacity} GPU)"
            )


def print_report(report: DemoReport) -> None:
    console.print()
    console.print(job_table(report.jobs, None, title="the demo's jobs at the end"))
    saga = report.preemption
    if saga is not None:
        spared = f"; spared: {', '.join(saga.spared)}" if saga.spared else ""
        console.print(
            f"[bold]{saga.preemptor}[/] preempted [bold]{', '.join(saga.victims) or 'nobody'}[/] "
            f"to free {saga.need_gpu} GPU ({len(saga.victims)} victim(s); the fewest possible: "
            f"{saga.fewest_possible}){spared}; saga {saga.status}."
        )
    attempts = ", ".join(f"{job.name} {job.attempt}" for job in report.jobs if job.attempt)
    if attempts:
        console.print(f"Attempts after requeue: {attempts}.")
    if report.config is not None:
        c = report.config
        console.print(
            f"{c.author} changed {c.project}'s configuration (commit {c.commit}) and reverted it "
            f"(commit {c.revert}, the content of {c.base})."
        )
    checks = Table(title="outcome checks (from the database)", header_style="bold")
    for column in ("", "check", "detail"):
        checks.add_column(column)
    for check in report.checks:
        mark = Text("✓", style="green") if check.ok else Text("✗", style="bold red")
        checks.add_row(mark, check.name, check.detail)
    console.print(checks)
    # Links and the query on one line each, however narrow the terminal: they are copied.
    if report.web_ui_links:
        console.print("Temporal Web UI:")
        for what, url in report.web_ui_links.items():
            console.print(Text(f"  {what}: {url}"), soft_wrap=True)
    console.print(Text("Visibility query (Web UI search or `temporal workflow list -q`):"))
    console.print(Text(f"  {report.visibility_query}"), highlight=False, soft_wrap=True)
    verdict = "the story held" if report.ok else f"the story did not hold: {report.reason}"
    console.print(f"{verdict} ({report.seconds:.0f} s).")


@app.command("demo")
def demo(
    headless: Annotated[
        bool | None,
        typer.Option(
            "--headless/--live",
            help="Lines instead of a live table (default: live on a terminal only).",
        ),
    ] = None,
    down_after: Annotated[
        bool, typer.Option("--down-after", help="Stop the stack at the end (tests, CI).")
    ] = False,
    timeout: Annotated[
        float, typer.Option("--timeout", help="Seconds the story may take.", min=30)
    ] = 300.0,
    json_: JsonOpt = False,
) -> None:
    """Play a preemption story on the local stack and check its outcomes (make demo).

    Seeds a small organisation under the project `demo` (idempotent), fills the pool `demo`
    with low-priority jobs, lets a high-priority job preempt the fewest of them, commits and
    reverts a configuration change, and exits 0 only if the database shows all of it held.
    The stack keeps running for the Web UI: `python starter.py down` stops it.
    """
    from devstack.stack import Stack

    settings = get_settings()
    as_json = json_ or session.json
    live = not as_json and not headless and (headless is False or sys.stdout.isatty())
    # With --json, stdout carries the report only: the story goes to stderr.
    out = Console(stderr=True, highlight=False) if as_json else console
    stack = Stack(settings)
    interrupted = False
    try:
        report = _play(stack, settings, out, live=live, timeout=timeout)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        if down_after:
            session.close()  # our lease on the embedded PostgreSQL must not keep it up
            stack.down(60.0)
            out.print("stopped the stack", highlight=False)
    if interrupted:
        if not down_after:
            out.print("the stack keeps running: `python starter.py down` stops it")
        raise typer.Exit(INTERRUPTED)
    if as_json:
        emit(report, json_=True)
    else:
        print_report(report)
        if not down_after:
            console.print("The stack keeps running: [bold]python starter.py down[/] stops it.")
    if not report.ok:
        from devstack.demo import DemoFailed

        raise DemoFailed(report.reason or "the story did not hold")


def _play(
    stack: Stack, settings: Settings, out: Console, *, live: bool, timeout: float
) -> DemoReport:
    from devstack.demo import DemoStory, StackReport

    running = stack.status()
    if running.running and running.status == "ready":
        out.print("reusing the running stack", highlight=False)
    else:
        out.print(
            "starting the local stack: PostgreSQL, Temporal + Web UI, the Kubernetes emulator, "
            "a worker (the first start takes a minute)",
            highlight=False,
        )
    state, reused = stack.up_detached(STACK_SECONDS)
    temporal = state.pieces["temporal"]
    address = settings.temporal_address or temporal.address
    assert address is not None
    info = StackReport(reused=reused, temporal=address, web_ui=temporal.ui_url)
    if info.web_ui:
        out.print(f"Temporal Web UI: {info.web_ui} (open it beside this terminal)", highlight=False)
    store = session.store
    reporter = LiveReporter(out) if live else LineReporter(out)

    async def play() -> DemoReport:
        client = await Client.connect(
            address, namespace=settings.temporal_namespace, data_converter=pydantic_data_converter
        )
        story = DemoStory(store, settings, client, reporter, stack=info, timeout=timeout)
        me = asyncio.current_task()
        try:
            return await story.play()
        except BaseException:
            # Ctrl-C cancels this task; the call it interrupts may turn that into an error of
            # its own (the Temporal client does), so ask the task rather than the exception.
            if me is None or not me.cancelling():
                raise
            cancelled = await story.cancel_own_jobs()  # no half-told story left running
            out.print(f"interrupted: cancelled {cancelled} job(s) of this run", highlight=False)
            raise asyncio.CancelledError from None  # asyncio.run makes it a KeyboardInterrupt

    with reporter:
        return asyncio.run(play())
