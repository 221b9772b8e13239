"""JobWorkflow (``job-<job id>``): one job's life, from submission to its end.

The database is the truth; this workflow reacts. It records the job (checked against RBAC),
waits to be told it was admitted, launches the pod, waits for the pod's end (the pod watcher's
signal, or its own polling when a signal is lost), and finalises. A cancel arrives as an update;
a preemption saga tells it when its job becomes a victim, is requeued or is restored. Every
change of state is mirrored into the search attributes, so the Web UI can filter jobs.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.jobs import JobActivities
    from workflows.shared import (
        QF_GPUS,
        QF_POOL,
        QF_PRIORITY,
        QF_PRIORITY_CLASS,
        QF_PROJECT,
        QF_STATUS,
        AdmittedSignal,
        CancelInput,
        CancelRequest,
        FinishInput,
        JobInput,
        JobRef,
        JobRequest,
        JobView,
        PodEndedSignal,
        SagaNotice,
    )

# Database activities retry until the database answers again; what cannot succeed (bad input,
# permission) fails at once as a non-retryable ApplicationError.
DB_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=200),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=10),
)
DB_TIMEOUT = timedelta(seconds=30)


def _cause(err: BaseException) -> ApplicationError | None:
    cause = err.cause if isinstance(err, ActivityError) else err
    return cause if isinstance(cause, ApplicationError) else None


@workflow.defn(name="JobWorkflow")
class JobWorkflow:
    @workflow.init
    def __init__(self, input: JobInput) -> None:
        self._job_id = input.job_id
        # What was asked for (None when the workflow adopts an existing job, or after
        # continue-as-new): until the job's row is read, what a resubmission is compared with.
        self._request = input.request
        self._view: JobView | None = None
        self._rejected: ApplicationError | None = None
        self._admitted: list[int] = []
        self._endings: list[PodEndedSignal] = []
        self._notices: list[SagaNotice] = []
        self._handled: set[str] = set(input.handled_endings)
        # The attempt whose start_pod activity ran to its end (an interrupted one is started
        # again: the activity is idempotent).
        self._launched: int | None = None
        self._cancelling = False
        self._poll = timedelta(seconds=input.poll_seconds)
        self._revision = input.revision
        # Revision 2: one timer ticks every poll interval for the whole run (started lazily,
        # stopped at the end), instead of a timer started and cancelled around every wait.
        self._poller: asyncio.Task[None] | None = None
        self._poll_due = False

    # --- messages ---------------------------------------------------------------------

    @workflow.signal
    def admitted(self, signal: AdmittedSignal) -> None:
        self._admitted.append(signal.attempt)

    @workflow.signal
    def pod_ended(self, signal: PodEndedSignal) -> None:
        self._endings.append(signal)

    @workflow.signal
    def saga(self, notice: SagaNotice) -> None:
        self._notices.append(notice)

    @workflow.query
    def describe(self) -> JobView:
        if self._view is None:
            raise ApplicationError("the job is not recorded yet")
        return self._view

    @workflow.update
    async def submit(self, request: JobRequest) -> JobView:
        """Answer a submission (update-with-start): the recorded job, or why it was refused."""
        await workflow.wait_condition(lambda: self._view is not None or self._rejected is not None)
        if self._rejected is not None:
            raise self._rejected
        assert self._view is not None
        return self._view

    @submit.validator
    def _validate_submit(self, request: JobRequest) -> None:
        if request.job_id != self._job_id:
            raise ValueError(f"this workflow is job {self._job_id}, not {request.job_id}")
        # The comparison the database makes once the job has ended (QueueStore._same_job), so a
        # reused id is refused the same way before and after. A rejected update leaves no event.
        first = self._view or self._request
        if first is not None and (first.project_id, first.gpu, first.cpu) != (
            request.project_id,
            request.gpu,
            request.cpu,
        ):
            raise ApplicationError(
                f"job {self._job_id} already exists with a different project or resources",
                type="InvalidInput",
                non_retryable=True,
            )

    @workflow.update
    async def cancel(self, request: CancelRequest) -> JobView:
        """Cancel the job (the actor must be a member of its project); deletes its pod."""
        self._cancelling = True
        try:
            view = await workflow.execute_activity_method(
                JobActivities.cancel_job,
                CancelInput(job_id=self._job_id, request=request),
                start_to_close_timeout=DB_TIMEOUT,
                retry_policy=DB_RETRY,
            )
        finally:
            self._cancelling = False
        self._set(view)
        return view

    @cancel.validator
    def _validate_cancel(self, request: CancelRequest) -> None:
        if self._view is not None and self._view.final:
            raise ValueError(f"job {self._job_id} already ended: {self._view.status}")

    # --- the life ---------------------------------------------------------------------

    @workflow.run
    async def run(self, input: JobInput) -> JobView:
        try:
            view = await self._db(JobActivities.record_job, input)
        except ActivityError as err:
            cause = _cause(err)
            if cause is None or not cause.non_retryable:
                raise
            # Refused (permission, bad input): the submit update reports it, then we end.
            self._rejected = ApplicationError(cause.message, type=cause.type, non_retryable=True)
            await workflow.wait_condition(workflow.all_handlers_finished)
            raise self._rejected from None
        self._set(view)
        first_attempt = view.attempt
        while not self.view.final:
            await self._step()
            if (
                self.view.attempt - first_attempt >= input.attempts_per_run
                or workflow.info().is_continue_as_new_suggested()
            ) and not self.view.final:
                await workflow.wait_condition(workflow.all_handlers_finished)
                await self._stop_poller()
                workflow.continue_as_new(
                    JobInput(
                        job_id=self._job_id,
                        handled_endings=sorted(self._handled),
                        poll_seconds=input.poll_seconds,
                        attempts_per_run=input.attempts_per_run,
                        revision=input.revision,
                    )
                )
        await workflow.wait_condition(workflow.all_handlers_finished)
        await self._stop_poller()
        return self.view

    @property
    def view(self) -> JobView:
        assert self._view is not None
        return self._view

    async def _step(self) -> None:
        if self._admitted or self._endings or self._notices:
            # What arrived first: a stale pod ending (a restarted watcher repeats itself) must
            # not keep interrupting the launch below.
            await self._handle_messages()
            return
        view = self.view
        if view.status == "ADMITTED" and self._launched != view.attempt:
            await self._start_pod()
            return
        if self._revision >= 2:
            if self._poller is None:
                self._poller = asyncio.create_task(self._tick())
            await workflow.wait_condition(lambda: self._something_arrived() or self._poll_due)
            if not self._something_arrived():
                self._poll_due = False
                await self._poll_state()
                return
            await self._handle_messages()
            return
        try:
            await workflow.wait_condition(self._something_arrived, timeout=self._poll)
        except TimeoutError:
            await self._poll_state()
            return
        await self._handle_messages()

    async def _tick(self) -> None:
        while True:
            await workflow.sleep(self._poll)
            self._poll_due = True

    async def _stop_poller(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            # Let the cancellation run (it cancels the timer) before the run completes.
            poller = self._poller
            await workflow.wait_condition(poller.done)
            self._poller = None

    def _something_arrived(self) -> bool:
        return bool(self._admitted or self._endings or self._notices) or (
            self._view is not None and self._view.final
        )

    async def _start_pod(self) -> None:
        attempt = self.view.attempt
        handle = workflow.start_activity_method(
            JobActivities.start_pod,
            JobRef(job_id=self._job_id),
            start_to_close_timeout=timedelta(hours=24),
            heartbeat_timeout=timedelta(seconds=30),
            retry_policy=DB_RETRY,
        )
        await workflow.wait_condition(
            lambda: (
                handle.done()
                or bool(self._notices)
                or self._cancelling
                or any(e.attempt in (None, attempt) for e in self._endings)
            )
        )
        if not handle.done():
            # A saga took the job, or a cancel or this pod's end came first: stop waiting. (An
            # ending of an older attempt's pod, repeated by a restarted watcher, does not count.)
            handle.cancel()
        try:
            self._set(await handle)
            self._launched = attempt
            if self.view.status == "ADMITTED":
                # The pod ended (or vanished) before it was seen running: look at it now
                # rather than wait for the watcher.
                ending = await self._db(JobActivities.check_pod, JobRef(job_id=self._job_id))
                if ending is not None:
                    self._endings.append(ending)
        except ActivityError as err:
            cause = _cause(err)
            if cause is not None and cause.non_retryable:
                # The cluster refused the pod (bad image spec, forbidden…): the job fails.
                self._set(
                    await self._db(
                        JobActivities.finish_job,
                        FinishInput(
                            job_id=self._job_id,
                            attempt=attempt,
                            launch_failed=True,
                            ending=PodEndedSignal(
                                pod_name="",
                                uid="",
                                attempt=attempt,
                                outcome="Failed",
                                message=cause.message,
                            ),
                        ),
                    )
                )
                return
            await self._refresh()

    async def _handle_messages(self) -> None:
        while self._endings:
            ending = self._endings.pop(0)
            if ending.pod_name in self._handled:
                continue  # the watcher may repeat itself after a restart
            self._handled.add(ending.pod_name)
            attempt = ending.attempt if ending.attempt is not None else self.view.attempt
            self._set(
                await self._db(
                    JobActivities.finish_job,
                    FinishInput(job_id=self._job_id, attempt=attempt, ending=ending),
                )
            )
        if (
            self._admitted
            and not self._notices
            and self.view.status == "PENDING"
            and (self._revision >= 2 or workflow.patched("admitted-without-refresh"))
        ):
            # start_pod re-reads the row under its lock anyway: a read here only costs time.
            attempt = max(self._admitted)
            self._admitted.clear()
            if attempt >= self.view.attempt:
                self._set(self.view.model_copy(update={"status": "ADMITTED", "attempt": attempt}))
            return
        if self._notices or self._admitted:
            self._notices.clear()
            self._admitted.clear()
            await self._refresh()

    async def _poll_state(self) -> None:
        """Nothing arrived for a while: re-read the job, and look at the pod ourselves."""
        if self.view.status in ("RUNNING", "ADMITTED") and self.view.pod_name:
            ending = await self._db(JobActivities.check_pod, JobRef(job_id=self._job_id))
            if ending is not None:
                self._endings.append(ending)
                await self._handle_messages()
                return
        await self._refresh()

    async def _refresh(self) -> None:
        self._set(await self._db(JobActivities.refresh_job, JobRef(job_id=self._job_id)))

    async def _db(self, activity, arg):  # type: ignore[no-untyped-def]
        return await workflow.execute_activity_method(
            activity, arg, start_to_close_timeout=DB_TIMEOUT, retry_policy=DB_RETRY
        )

    def _set(self, view: JobView) -> None:
        before = self._view
        self._view = view
        if before is None or (before.status, before.project_path, before.pool) != (
            view.status,
            view.project_path,
            view.pool,
        ):
            workflow.upsert_search_attributes(
                [
                    QF_STATUS.value_set(view.status),
                    QF_PROJECT.value_set(view.project_path),
                    QF_PRIORITY.value_set(view.priority_value),
                    QF_PRIORITY_CLASS.value_set(view.priority_class),
                    QF_GPUS.value_set(view.gpu),
                    QF_POOL.value_set(view.pool),
                ]
            )
