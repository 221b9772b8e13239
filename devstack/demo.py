"""The story behind ``python starter.py demo`` (``make demo``): seed, schedule, preempt, check.

It runs against a stack that is up (``cli/demo.py`` brings it up) and owns one corner of it:
the top-level project ``demo``, the users and groups named ``demo-…`` and the pool ``demo``.

1. **Seed** (idempotent: what exists is reused, the plans are reset to the wanted ones): a
   platform admin, two researchers in two groups, the tree ``demo/vision/training`` and
   ``demo/nlp/finetune`` with role bindings, a GPU plan on ``demo/nlp`` in force now and a
   weekend one on ``demo/vision`` (``Fri 22:00-Mon 06:00``, two rows in the database), an
   8-GPU pool, and a base configuration of ``demo/nlp``. Jobs an earlier, interrupted run left
   in the pool are cancelled first.
2. **Play**: four low-priority training jobs fill the pool; a high-priority fine-tuning job
   asks for 4 GPUs; the dispatcher starts a preemption saga that evicts the fewest victims; the
   urgent job runs and ends; the victims are requeued and finish; meanwhile a configuration
   change is committed and reverted through ConfigCommitWorkflow.
3. **Check** from the database that all of that held; the report says what did not.

Nothing here prints: a :class:`Reporter` (the CLI's live table, or plain lines) is told.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import combinations
from typing import Any, Literal, Protocol
from urllib.parse import quote
from uuid import UUID

from pydantic import BaseModel, Field
from temporalio.client import Client
from temporalio.service import RPCError

from activities.jobs import job_view
from activities.signals import wake_dispatcher
from domain.errors import IllegalTransition, NotFound, QuotaflowError
from domain.models import (
    AddPlan,
    ConfigCommit,
    CreateGroup,
    CreateProject,
    CreateUser,
    GrantRole,
    JobEvent,
    JobStatus,
    Pool,
    Project,
    ResourceType,
    Role,
    SetPool,
    User,
)
from domain.weekwindow import WEEK, WeekWindow, second_of_week
from settings import Settings
from store import Store
from workflows import client as wf
from workflows.shared import (
    CancelRequest,
    ConfigRequest,
    ConfigResult,
    JobRequest,
    JobView,
    job_workflow_id,
    preemption_workflow_id,
)

ROOT = "demo"
POOL = "demo"
POOL_GPUS = 8
POOL_CPUS = 64
ADMIN = "demo-admin"
VISION_USER = "demo-vera"
NLP_USER = "demo-nico"
VISION_GROUP = "demo-vision"
NLP_GROUP = "demo-nlp"
TRAINING = "demo/vision/training"
FINETUNE = "demo/nlp/finetune"
NLP = "demo/nlp"
VISION = "demo/vision"
WEEKEND_WINDOW = "Fri 22:00-Mon 06:00"
NLP_QUOTA_GPUS = 4
WEEKEND_QUOTA_GPUS = POOL_GPUS
POLL_SECONDS = 0.5
MAX_EXHAUSTIVE = 16  # candidates for which fewest_victims tries every subset (2^16 at most)
STOP_COMMAND = "python starter.py down"

BASE_CONFIG: dict[str, Any] = {
    "defaults": {"pool": POOL, "priority_class": "normal"},
    "limits": {"max_gpu_per_job": NLP_QUOTA_GPUS},
}
RAISED_CONFIG: dict[str, Any] = {
    "defaults": {"pool": POOL, "priority_class": "normal"},
    "limits": {"max_gpu_per_job": POOL_GPUS},
}
FINAL = {s.value for s in JobStatus if s.final}


@dataclass(frozen=True)
class JobSpec:
    name: str
    project: str
    user: str
    priority_class: str
    gpu: int
    cpu: int
    run_seconds: float


# Long enough that the fillers still run when the urgent job's saga picks its victims, even on
# a busy machine; short enough that the victims' second attempt ends soon after.
FILLER_RUN_SECONDS = 20.0
URGENT_RUN_SECONDS = 5.0
FILLERS = [
    JobSpec(f"train-{i}", TRAINING, VISION_USER, "low", 2, 8, FILLER_RUN_SECONDS)
    for i in range(1, 5)
]
URGENT = JobSpec("finetune-urgent", FINETUNE, NLP_USER, "high", 4, 16, URGENT_RUN_SECONDS)


# --- what the story reports -------------------------------------------------------------------


class JobRow(BaseModel):
    name: str
    job_id: UUID
    project: str
    priority_class: str
    gpu: int
    status: str
    attempt: int
    preempted_by: str | None = Field(default=None, description="the preemptor's name")
    reason: str | None = None


class Check(BaseModel):
    name: str
    ok: bool
    detail: str


class PreemptionReport(BaseModel):
    preemptor: str
    workflow_id: str
    status: str
    need_gpu: int
    victims: list[str]
    spared: list[str] = Field(description="ranked candidates the saga left running")
    fewest_possible: int | None


class ConfigReport(BaseModel):
    project: str
    author: str
    base: UUID
    commit: UUID
    revert: UUID


class StackReport(BaseModel):
    reused: bool
    temporal: str
    web_ui: str | None
    stop: str = STOP_COMMAND


class DemoReport(BaseModel):
    ok: bool
    reason: str | None = Field(description="the first check that failed, in one line")
    started_at: datetime
    seconds: float
    stack: StackReport | None = None
    plans: list[str] = Field(default_factory=list)
    jobs: list[JobRow] = Field(default_factory=list)
    preemption: PreemptionReport | None = None
    config: ConfigReport | None = None
    checks: list[Check] = Field(default_factory=list)
    visibility_query: str
    web_ui_links: dict[str, str] = Field(default_factory=dict)


class Reporter(Protocol):
    def step(self, text: str) -> None:
        """A new chapter of the story."""

    def show(self, jobs: list[JobRow], pool: Pool) -> None:
        """The demo's jobs as they are now (called about twice a second)."""


class DemoFailed(QuotaflowError):
    """The story did not go as told; the message is the first thing that went wrong."""

    code = "demo"


# --- the organisation --------------------------------------------------------------------------


@dataclass
class DemoOrg:
    users: dict[str, User]
    projects: dict[str, Project]
    plans: list[str] = field(default_factory=list)


def window_around(now: datetime, settings: Settings) -> WeekWindow:
    """Eight hours from the hour before ``now``, in the configured time zone: in force now."""
    start = (second_of_week(now, settings.zone) // 3600 - 1) * 3600
    return WeekWindow(start % WEEK, 8 * 3600)


def seed(store: Store, settings: Settings, now: datetime) -> DemoOrg:
    """The demo's organisation: created where missing, reused where present."""
    users = {
        ADMIN: _user(store, ADMIN, "Demo platform admin", platform_admin=True),
        VISION_USER: _user(store, VISION_USER, "Vera (vision)"),
        NLP_USER: _user(store, NLP_USER, "Nico (NLP)"),
    }
    members = {VISION_GROUP: VISION_USER, NLP_GROUP: NLP_USER}
    groups = {name: _group(store, name, users[user]) for name, user in members.items()}
    projects: dict[str, Project] = {}
    for path in (ROOT, VISION, TRAINING, NLP, FINETUNE):
        parent, _, name = path.rpartition("/")
        projects[path] = _project(store, name, projects[parent] if parent else None, users[ADMIN])
    bindings = [
        (groups[VISION_GROUP], VISION, Role.MEMBER),
        (groups[NLP_GROUP], NLP, Role.MEMBER),
        (users[NLP_USER].id, NLP, Role.ADMIN),  # commits demo/nlp's configuration
        (groups[VISION_GROUP], ROOT, Role.VIEWER),
        (groups[NLP_GROUP], ROOT, Role.VIEWER),
    ]
    for principal, path, role in bindings:
        store.tenants.grant(
            GrantRole(principal_id=principal, project_id=projects[path].p_id, role=role)
        )
    store.catalog.set_pool(SetPool(name=POOL, gpu_capacity=POOL_GPUS, cpu_capacity=POOL_CPUS))
    for name in ("low", "normal", "high"):
        store.catalog.priority_class(name)  # created by the migrations; NotFound if removed
    plans = [
        _plan(
            store, projects[NLP], groups[NLP_GROUP], NLP_QUOTA_GPUS, window_around(now, settings)
        ),
        _plan(
            store,
            projects[VISION],
            groups[VISION_GROUP],
            WEEKEND_QUOTA_GPUS,
            WeekWindow.parse(WEEKEND_WINDOW),
        ),
    ]
    return DemoOrg(users, projects, plans)


def _user(store: Store, username: str, display: str, *, platform_admin: bool = False) -> User:
    try:
        return store.tenants.user_by_name(username)
    except NotFound:
        return store.tenants.create_user(
            CreateUser(username=username, display_name=display, platform_admin=platform_admin)
        )


def _group(store: Store, name: str, member: User) -> UUID:
    try:
        group_id = store.tenants.group_by_name(name).id
    except NotFound:
        group_id = store.tenants.create_group(CreateGroup(name=name)).id
    listed = next((g for g in store.tenants.groups() if g["id"] == group_id), None)
    members = listed["members"] if listed is not None else []
    if not isinstance(members, list) or member.username not in members:
        store.tenants.add_member(group_id, member.id)
    return group_id


def _project(store: Store, name: str, parent: Project | None, owner: User) -> Project:
    path = f"{store.projects.display_path(parent.p_id)}/{name}" if parent else name
    try:
        return store.projects.resolve(path)
    except NotFound:
        return store.projects.create(
            CreateProject(name=name, owner_id=owner.id, parent_id=parent.p_id if parent else None)
        )


def _plan(store: Store, project: Project, holder: UUID, quantity: int, window: WeekWindow) -> str:
    """Make ``window`` the project's only GPU plan (plans cannot overlap: others go)."""
    keep = False
    for plan in store.plans.for_project(project.p_id):
        if plan.resource_type != ResourceType.GPU:
            continue
        if plan.segments == window.segments() and plan.quantity == quantity and not keep:
            keep = True
        else:
            store.plans.remove(plan.plan_group)
    if not keep:
        store.plans.add(
            AddPlan(
                project_id=project.p_id,
                resource_owner_id=holder,
                resource_type=ResourceType.GPU,
                quantity=quantity,
                window=str(window),
            )
        )
    wraps = " (wraps Sunday→Monday: two rows)" if len(window.segments()) > 1 else ""
    return f"{store.projects.display_path(project.p_id)}: {quantity} GPU {window}{wraps}"


# --- the story ----------------------------------------------------------------------------------


class DemoStory:
    """One run of the story on a running stack; :meth:`play` returns the checked report."""

    def __init__(
        self,
        store: Store,
        settings: Settings,
        client: Client,
        reporter: Reporter,
        *,
        stack: StackReport | None = None,
        timeout: float = 300.0,
    ) -> None:
        self.store = store
        self.settings = settings
        self.client = client
        self.reporter = reporter
        self.stack = stack
        self.timeout = timeout
        self.started_at = datetime.now(UTC)
        self._clock = time.monotonic()
        self.jobs: dict[str, UUID] = {}  # name → job id, in submission order
        self.org: DemoOrg | None = None
        self.base: ConfigCommit | None = None
        self.config: tuple[ConfigResult, ConfigResult] | None = None

    # --- the chapters ----------------------------------------------------------------------

    async def play(self) -> DemoReport:
        """Seed, play, check. A story that goes wrong still returns its report (not ok)."""
        failure: str | None = None
        try:
            await self._prepare()
            await self._fill()
            await self._preempt()
            await self._change_config()
            await self._until(
                "the victims to run again and finish",
                lambda rows: all(r.status in FINAL for r in rows),
            )
            self.reporter.step("every job ended; checking the outcomes in the database")
        except QuotaflowError as exc:  # DemoFailed, or a refusal from the product itself
            failure = exc.message if isinstance(exc, DemoFailed) else f"{exc.code}: {exc.message}"
        report = await asyncio.to_thread(self.report)
        if failure is not None:
            report.ok, report.reason = False, failure
        return report

    async def _prepare(self) -> None:
        now = datetime.now(UTC)
        self.org = org = await asyncio.to_thread(seed, self.store, self.settings, now)
        self.reporter.step(
            f"organisation ready: users {ADMIN} (platform admin), {VISION_USER} and {NLP_USER}; "
            f"projects {TRAINING} and {FINETUNE}; pool {POOL} with {POOL_GPUS} GPUs; plans "
            + "; ".join(org.plans)
        )
        await self._clear_leftovers()
        await wake_dispatcher(self.client, self.settings, POOL, "demo starts")
        self.base = await self._base_config()

    async def _clear_leftovers(self) -> None:
        """Cancel what an interrupted run left in the pool, and wait until the pool is idle."""
        left = await asyncio.to_thread(
            self.store.queue.search,
            statuses=[s for s in JobStatus if not s.final],
            pool=POOL,
            limit=1000,
        )
        if not left:
            return
        self.reporter.step(f"cancelling {len(left)} job(s) an earlier run left in pool {POOL}")
        request = CancelRequest(actor=ADMIN, reason="a new demo run starts")
        for row in left:
            try:
                await wf.cancel_job(self.client, self.settings, row["id"], request)
            except NotFound:
                # No workflow drives it any more: end it in the database directly.
                with contextlib.suppress(IllegalTransition):  # it ended meanwhile
                    await asyncio.to_thread(
                        self.store.queue.transition,
                        row["id"],
                        JobStatus.CANCELLED,
                        from_statuses=[s for s in JobStatus if not s.final],
                        reason="a new demo run starts",
                        actor=ADMIN,
                    )
            except QuotaflowError:
                continue  # it ended between the search and the cancel: the wait below tells
        await self._until_pool_idle()

    async def _until_pool_idle(self) -> None:
        deadline = time.monotonic() + self._remaining()
        while True:
            pool = await asyncio.to_thread(self.store.catalog.pool, POOL)
            if pool.gpu_in_use == 0 and pool.cpu_in_use == 0:
                return
            if time.monotonic() > deadline:
                raise DemoFailed(
                    f"pool {POOL} still has {pool.gpu_in_use} GPU in use by an earlier run; "
                    f"try `{STOP_COMMAND}` and run the demo again"
                )
            await asyncio.sleep(POLL_SECONDS)

    async def _base_config(self) -> ConfigCommit:
        """demo/nlp's head before the story's change: the base content, committed if needed."""
        project = self._project(NLP)
        head = await asyncio.to_thread(self.store.configs.head, project)
        if head is not None:
            _, content = await asyncio.to_thread(self.store.configs.show, head.id)
            if content == BASE_CONFIG:
                return head
        await self._config(
            "commit",
            head.id if head else None,
            content=BASE_CONFIG,
            message="demo: base configuration",
        )
        head = await asyncio.to_thread(self.store.configs.head, project)
        assert head is not None
        return head

    async def _fill(self) -> None:
        self.reporter.step(
            f"{len(FILLERS)} low-priority training jobs ({FILLERS[0].gpu} GPUs each, "
            f"{FILLER_RUN_SECONDS:g} s) fill the {POOL_GPUS}-GPU pool"
        )
        for spec in FILLERS:  # one by one: their order in the queue is their submission order
            await self._submit(spec)
        await self._until(
            "the training jobs to run",
            lambda rows: all(r.status == "RUNNING" for r in rows),
        )

    async def _preempt(self) -> None:
        self.reporter.step(
            f"{URGENT.name} ({URGENT.priority_class} priority, {URGENT.gpu} GPUs, in "
            f"{NLP}'s quota) arrives: the pool is full, so the dispatcher starts a preemption saga"
        )
        urgent = await self._submit(URGENT)
        rows = await self._until(
            "the preemption saga to choose its victims",
            lambda rows: bool(self._victims(rows)) or self._row(rows, URGENT).status != "PENDING",
        )
        victims = self._victims(rows)
        if victims:
            self.reporter.step(
                f"the saga evicts {len(victims)} job(s), the fewest that free {URGENT.gpu} GPUs: "
                f"{', '.join(victims)} (PREEMPTING until their pods are gone, then back in the "
                "queue at their old place)"
            )
        await self._until(
            f"{URGENT.name} to run and finish",
            lambda rows: self._row(rows, URGENT).status in FINAL,
        )
        view = await asyncio.to_thread(self.store.queue.get, urgent)
        self.reporter.step(f"{URGENT.name} {view.status.value}; the victims run again")

    async def _change_config(self) -> None:
        self.reporter.step(
            f"{NLP_USER} raises {NLP}'s GPU limit per job (a commit) and thinks better of it "
            "(a revert), both through ConfigCommitWorkflow"
        )
        assert self.base is not None
        commit = await self._config(
            "commit", self.base.id, content=RAISED_CONFIG, message="demo: allow whole-pool jobs"
        )
        revert = await self._config("revert", commit.commit_id)
        self.config = (commit, revert)

    # --- helpers ----------------------------------------------------------------------------

    def _project(self, path: str) -> UUID:
        assert self.org is not None
        return self.org.projects[path].p_id

    async def _submit(self, spec: JobSpec) -> UUID:
        request = JobRequest(
            job_id=uuid.uuid4(),
            project_id=self._project(spec.project),
            actor=spec.user,
            gpu=spec.gpu,
            cpu=spec.cpu,
            pool=POOL,
            priority_class=spec.priority_class,
            name=spec.name,
            run_seconds=spec.run_seconds,
        )
        self.jobs[spec.name] = request.job_id
        view = await wf.submit_job(self.client, self.settings, request)
        return view.job_id

    async def _config(
        self,
        op: Literal["commit", "revert"],
        parent: UUID | None,
        *,
        content: dict[str, Any] | None = None,
        message: str | None = None,
    ) -> ConfigResult:
        """demo-nico changes demo/nlp's configuration through ConfigCommitWorkflow; a revert
        goes back to the content of the commit before ``parent`` (HEAD~1)."""
        request = ConfigRequest(
            op=op,
            request_id=uuid.uuid4(),
            project_id=self._project(NLP),
            actor=NLP_USER,
            content=content,
            parent_id=parent,
            message=message,
            ref="HEAD~1" if op == "revert" else None,
        )
        return await wf.change_config(self.client, self.settings, request)

    def _remaining(self) -> float:
        return max(1.0, self.timeout - (time.monotonic() - self._clock))

    def _snapshot(self) -> tuple[list[JobRow], Pool]:
        views = {
            name: job_view(self.store.queue.view(job_id)) for name, job_id in self.jobs.items()
        }
        names = {job_id: name for name, job_id in self.jobs.items()}
        rows = [_job_row(name, view, names) for name, view in views.items()]
        return rows, self.store.catalog.pool(POOL)

    async def _until(self, what: str, done: Callable[[list[JobRow]], bool]) -> list[JobRow]:
        """Show the jobs until ``done(rows)``; DemoFailed when the demo's time runs out, or at
        once when a job fails or is cancelled (no job of the story ever should)."""
        deadline = time.monotonic() + self._remaining()
        while True:
            rows, pool = await asyncio.to_thread(self._snapshot)
            self.reporter.show(rows, pool)
            broken = next((r for r in rows if r.status in ("FAILED", "CANCELLED")), None)
            if broken is not None:
                raise DemoFailed(f"{broken.name} is {broken.status}: {broken.reason}")
            if done(rows):
                return rows
            if time.monotonic() > deadline:
                states = ", ".join(f"{r.name} {r.status}" for r in rows)
                raise DemoFailed(
                    f"timed out after {self.timeout:.0f}s waiting for {what} ({states})"
                )
            await asyncio.sleep(POLL_SECONDS)

    @staticmethod
    def _row(rows: list[JobRow], spec: JobSpec) -> JobRow:
        return next(r for r in rows if r.name == spec.name)

    @staticmethod
    def _victims(rows: list[JobRow]) -> list[str]:
        return [r.name for r in rows if r.preempted_by == URGENT.name]

    async def cancel_own_jobs(self) -> int:
        """Cancel this run's unfinished jobs (after Ctrl-C); returns how many were cancelled."""
        request = CancelRequest(actor=ADMIN, reason="the demo was interrupted")
        cancelled = 0
        for job_id in self.jobs.values():
            try:
                await wf.cancel_job(self.client, self.settings, job_id, request)
                cancelled += 1
            except (QuotaflowError, RPCError):
                continue  # already ended, or never started
        return cancelled

    # --- the report -------------------------------------------------------------------------

    def report(self) -> DemoReport:
        """What happened, and the checks, all read from the database."""
        rows, _ = self._snapshot() if self.jobs else ([], None)
        prefix = self.settings.workflow_id_prefix
        query = wf.visibility_query(project_prefix=f"{ROOT}/", prefix=prefix)
        report = DemoReport(
            ok=False,
            reason=None,
            started_at=self.started_at,
            seconds=round(time.monotonic() - self._clock, 1),
            stack=self.stack,
            plans=self.org.plans if self.org else [],
            jobs=rows,
            visibility_query=query,
        )
        urgent = self.jobs.get(URGENT.name)
        if urgent is not None:
            report.preemption = self._preemption_report(urgent)
        if self.config is not None and self.base is not None:
            commit, revert = self.config
            report.config = ConfigReport(
                project=NLP,
                author=NLP_USER,
                base=self.base.id,
                commit=commit.commit_id,
                revert=revert.commit_id,
            )
        report.web_ui_links = self._links(query, urgent)
        report.checks = self._checks(rows, report)
        failed = next((c for c in report.checks if not c.ok), None)
        report.ok = failed is None
        report.reason = f"{failed.name}: {failed.detail}" if failed else None
        return report

    def _links(self, query: str, urgent: UUID | None) -> dict[str, str]:
        ui = self.stack.web_ui if self.stack else None
        if not ui:
            return {}
        base = f"{ui}/namespaces/{quote(self.settings.temporal_namespace)}/workflows"
        links = {"demo jobs": f"{base}?query={quote(query)}"}
        if urgent is not None:
            prefix = self.settings.workflow_id_prefix
            links["the preemption saga"] = f"{base}/{preemption_workflow_id(urgent, prefix)}"
            links[URGENT.name] = f"{base}/{job_workflow_id(urgent, prefix)}"
        return links

    def _preemption_report(self, urgent: UUID) -> PreemptionReport | None:
        sagas = self.store.preemption.for_job(urgent)
        if not sagas:
            return None
        saga = sagas[-1]  # the first one it started (the list is newest first)
        ranking: list[dict[str, Any]] = saga["ranking"]
        taken = set(saga["victims"])
        spared = {UUID(c["id"]) for c in ranking} - taken
        return PreemptionReport(
            preemptor=URGENT.name,
            workflow_id=preemption_workflow_id(urgent, self.settings.workflow_id_prefix),
            status=str(saga["status"]),
            need_gpu=saga["need_gpu"],
            victims=self._named(taken),
            spared=self._named(spared),
            fewest_possible=fewest_victims(ranking, saga["need_gpu"], saga["need_cpu"]),
        )

    def _named(self, job_ids: set[UUID]) -> list[str]:
        """The demo's jobs by name in submission order, then any other job by id."""
        ours = [name for name, job_id in self.jobs.items() if job_id in job_ids]
        return ours + sorted(str(j) for j in job_ids - set(self.jobs.values()))

    def _checks(self, rows: list[JobRow], report: DemoReport) -> list[Check]:
        checks: list[Check] = []

        def check(name: str, ok: bool, detail: str) -> None:
            checks.append(Check(name=name, ok=ok, detail=detail))

        if len(rows) < len(FILLERS) + 1:
            check("story", False, "the story stopped before every job was submitted")
            return checks
        by_name = {r.name: r for r in rows}
        events = {r.name: self.store.queue.events(r.job_id) for r in rows}
        urgent = by_name[URGENT.name]
        ran = any(e.to_status == JobStatus.RUNNING for e in events[URGENT.name])
        check(
            "the urgent job ran",
            ran and urgent.status == "SUCCEEDED",
            f"{URGENT.name} is {urgent.status} after attempt {urgent.attempt}"
            + ("" if ran else ", and it never ran"),
        )
        saga = report.preemption
        sagas = self.store.preemption.for_job(urgent.job_id)
        check(
            "one saga, completed",
            len(sagas) == 1 and saga is not None and saga.status == "COMPLETED",
            f"{len(sagas)} saga(s) for {URGENT.name}"
            + (f", the first {saga.status}" if saga else ""),
        )
        victims = set(saga.victims) if saga else set()
        check(
            "the fewest victims",
            saga is not None and bool(victims) and len(victims) == saga.fewest_possible,
            f"{len(victims)} victim(s) ({', '.join(sorted(victims)) or 'none'}); the fewest that "
            f"free {saga.need_gpu if saga else '?'} GPU: "
            f"{saga.fewest_possible if saga else '?'}",
        )
        wrong: list[str] = []
        for spec in FILLERS:
            row, history = by_name[spec.name], events[spec.name]
            preempted = [e for e in history if e.to_status == JobStatus.PREEMPTED]
            expected = 1 if spec.name in victims else 0
            if len(preempted) != expected or row.attempt != expected:
                wrong.append(
                    f"{spec.name} preempted {len(preempted)}× (attempt {row.attempt}), "
                    f"expected {expected}"
                )
            elif expected and (row.preempted_by != URGENT.name or not _requeued(history)):
                wrong.append(f"{spec.name} was not requeued for {URGENT.name}")
        check(
            "each victim preempted once and requeued",
            not wrong,
            "; ".join(wrong) or f"{len(victims)} victim(s), each preempted once and requeued",
        )
        unfinished = [f"{r.name} {r.status}" for r in rows if r.status != "SUCCEEDED"]
        check(
            "every job succeeded",
            not unfinished,
            ", ".join(unfinished) or f"{len(rows)} jobs SUCCEEDED",
        )
        check("nothing left preempting", *self._nothing_preempting())
        check("pool counters consistent", *self._counters_consistent())
        check("config commit and revert recorded", *self._config_recorded())
        return checks

    def _nothing_preempting(self) -> tuple[bool, str]:
        with self.store.db.connection() as conn:
            row = conn.execute(
                "SELECT (SELECT count(*) FROM jobs WHERE pool = %(pool)s "
                "        AND status = 'PREEMPTING') AS jobs, "
                "       (SELECT count(*) FROM preemptions WHERE pool = %(pool)s "
                "        AND status = 'ACTIVE') AS sagas",
                {"pool": POOL},
            ).fetchone()
        assert row is not None
        return (
            row["jobs"] == 0 and row["sagas"] == 0,
            f"{row['jobs']} job(s) PREEMPTING, {row['sagas']} saga(s) still active in {POOL}",
        )

    def _counters_consistent(self) -> tuple[bool, str]:
        """The trigger-kept counters of the pool and of the demo's projects equal what the
        active jobs and holds add up to (and, with every demo job ended, zero)."""
        off = self.store.audit.counter_mismatches(pool=POOL, root=ROOT)
        pool = self.store.catalog.pool(POOL)
        return (
            not off,
            "; ".join(str(m) for m in off)
            or f"pool {POOL}: {pool.gpu_in_use}/{POOL_GPUS} GPU in use, as its jobs add up",
        )

    def _config_recorded(self) -> tuple[bool, str]:
        if self.config is None or self.base is None:
            return False, "the configuration change was not made"
        commit, revert = self.config
        log = self.store.configs.log(self._project(NLP), limit=2)
        ids = [row["id"] for row in log]
        head = self.store.configs.head(self._project(NLP))
        ok = (
            ids == [revert.commit_id, commit.commit_id]
            and commit.parent_id == self.base.id
            and head is not None
            and head.blob_hash == self.base.blob_hash
            and commit.blob_hash != self.base.blob_hash
        )
        return (
            ok,
            f"{NLP}: commit {commit.commit_id} then revert {revert.commit_id} "
            + ("back to the base content" if ok else f"(log head: {ids})"),
        )


def _job_row(name: str, view: JobView, names: dict[UUID, str]) -> JobRow:
    return JobRow(
        name=name,
        job_id=view.job_id,
        project=view.project_path,
        priority_class=view.priority_class,
        gpu=view.gpu,
        status=view.status,
        attempt=view.attempt,
        preempted_by=names.get(view.preempted_by) if view.preempted_by else None,
        reason=view.status_reason,
    )


def _requeued(history: list[JobEvent]) -> bool:
    """PREEMPTED was followed by PENDING (back in the queue)."""
    statuses = [e.to_status for e in history]
    at = statuses.index(JobStatus.PREEMPTED)
    return JobStatus.PENDING in statuses[at + 1 :]


def fewest_victims(ranking: list[dict[str, Any]], need_gpu: int, need_cpu: int) -> int | None:
    """The fewest candidates that together free ``need`` (None: all of them cannot, or there
    are too many to tell), worked out independently of the saga's prefix-and-reverse-pass.
    """
    sizes = [(int(c["gpu"]), int(c["cpu"])) for c in ranking]
    if need_gpu <= 0 or need_cpu <= 0:
        # One resource: the k largest free the most that any k can, so take them greedily.
        axis = 1 if need_gpu <= 0 else 0
        need = max(need_gpu, need_cpu, 0)
        freed = 0
        for count, size in enumerate(sorted((s[axis] for s in sizes), reverse=True)):
            if freed >= need:
                return count
            freed += size
        return len(sizes) if freed >= need else None
    if len(sizes) > MAX_EXHAUSTIVE:
        return None
    # Both resources: try every subset, smallest first (the demo's pool holds a few jobs).
    for count in range(len(sizes) + 1):
        for subset in combinations(sizes, count):
            if sum(g for g, _ in subset) >= need_gpu and sum(c for _, c in subset) >= need_cpu:
                return count
    return None
