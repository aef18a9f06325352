"""Scheduled jobs: APScheduler 3.x triggers around one wrapper that makes every run safe.

Every job runs with coalesce=True (missed runs become one), max_instances=1 and the Job's
own misfire grace, by default none: a run that starts late still runs, however late
(APScheduler's default of 1 s drops runs that start a little late: see the field
notes). The wrapper takes the job's lock (locks.py), records a job_runs row, times the
run for /metrics and turns an exception into a recorded failure and a log line: a job
can fail, the scheduler keeps going.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

import structlog
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import insert, update

from connector.logs import describe
from connector.ports import Job, Runtime
from connector.runtime.locks import JobLocks
from connector.runtime.metrics import JOB_DURATION, JOB_FAILURES, JOB_LAST_SUCCESS
from connector.store.tables import job_runs

log = structlog.get_logger("leadsync.scheduler")


class JobRunner:
    """Runs one job once under its lock and records the run; never raises."""

    def __init__(self, runtime: Runtime, locks: JobLocks) -> None:
        self.runtime = runtime
        self.locks = locks
        self._running: set[str] = set()
        self._again: set[str] = set()
        self._mutex = threading.Lock()

    def is_running(self, job_id: str) -> bool:
        with self._mutex:
            return job_id in self._running

    def wake_after(self, job_id: str) -> bool:
        """If `job_id` is running, remember to run it again when it ends; True if so."""
        with self._mutex:
            if job_id in self._running:
                self._again.add(job_id)
                return True
            return False

    def run(self, job: Job) -> bool | None:
        """True: ran and succeeded; False: failed; None: skipped (stopping, or another
        replica holds the job). A wake that arrived while it ran runs it again here, at
        once, before it counts as finished (the last run's result is returned): handed
        back to the scheduler instead, the new run could reach APScheduler while it
        still counted this one running, and be dropped as a second instance."""
        if self.runtime.stopping.is_set():
            return None
        with self._mutex:
            if job.id in self._running:
                return None
            self._running.add(job.id)
        try:
            while True:
                result = self._guarded(job)
                with self._mutex:
                    # Under the mutex: a wake either lands in _again before this check
                    # (and runs) or finds the job no longer running (and schedules it).
                    again = job.id in self._again and not self.runtime.stopping.is_set()
                    self._again.discard(job.id)
                    if not again:
                        self._running.discard(job.id)
                        return result
        except BaseException:
            with self._mutex:
                self._running.discard(job.id)
                self._again.discard(job.id)
            raise

    def _guarded(self, job: Job) -> bool | None:
        try:
            return self._locked(job)
        except Exception as exc:  # the store itself failed (lock, job_runs row)
            JOB_FAILURES.labels(job.id).inc()
            log.warning("job.error", job=job.id, error=describe(exc))
            return False

    def _locked(self, job: Job) -> bool | None:
        with self.locks.hold(job.id) as got:
            if not got:
                log.info("job.skipped", job=job.id, reason="another replica runs it")
                return None
            store = self.runtime.store
            started = datetime.now(UTC)
            with store.engine.begin() as conn:
                run_id = conn.execute(
                    insert(job_runs)
                    .values(job_id=job.id, replica=self.runtime.replica, started_at=started)
                    .returning(job_runs.c.id)
                ).scalar_one()
            log.info("job.started", job=job.id)
            clock = time.perf_counter()
            ok, message, counts = True, None, {}
            try:
                counts = _counts(job.run(self.runtime))
            except Exception as exc:
                ok, message = False, describe(exc)
                JOB_FAILURES.labels(job.id).inc()
                log.warning("job.failed", job=job.id, error=message)
            seconds = time.perf_counter() - clock
            with store.engine.begin() as conn:
                conn.execute(
                    update(job_runs)
                    .where(job_runs.c.id == run_id)
                    .values(finished_at=datetime.now(UTC), ok=ok, message=message)
                )
            JOB_DURATION.labels(job.id).observe(seconds)
            if ok:
                JOB_LAST_SUCCESS.labels(job.id).set(time.time())
                log.info("job.finished", job=job.id, seconds=round(seconds, 3), **counts)
            return ok


# Keys of the `job.finished` line itself: a job's counts may not overwrite them (as
# keyword arguments they would raise after the job had already succeeded).
_OWN_KEYS = frozenset({"event", "job", "seconds"})


def _counts(result: object) -> dict[str, int | float]:
    """The numbers a job returned, for its log line; anything else is dropped."""
    if isinstance(result, Mapping):
        return {
            str(k): v
            for k, v in result.items()
            if isinstance(v, int | float) and not isinstance(v, bool) and str(k) not in _OWN_KEYS
        }
    return {}


def trigger(job: Job) -> IntervalTrigger | CronTrigger:
    """The APScheduler trigger of a Job: every N seconds or a crontab, both with jitter."""
    if (job.every is None) == (job.cron is None):
        raise ValueError(f"job {job.id}: set exactly one of `every` and `cron`")
    jitter = int(job.jitter) if job.jitter else None
    if job.every is not None:
        return IntervalTrigger(seconds=job.every, jitter=jitter, timezone=UTC)
    assert job.cron is not None
    cron = CronTrigger.from_crontab(job.cron, timezone=UTC)
    cron.jitter = jitter
    return cron


def grace(job: Job) -> int | None:
    """misfire_grace_time in whole seconds, at least 1; None runs late jobs however late."""
    return None if job.misfire_grace is None else max(1, math.ceil(job.misfire_grace))


def build(jobs: Sequence[Job], runner: JobRunner) -> BackgroundScheduler:
    """A scheduler (not started) with every job; each first runs at start."""
    scheduler = BackgroundScheduler(
        timezone=UTC,
        executors={"default": ThreadPoolExecutor(max(4, len(jobs) + 2))},
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
    )
    add_jobs(scheduler, jobs, runner)
    return scheduler


def add_jobs(scheduler: BackgroundScheduler, jobs: Sequence[Job], runner: JobRunner) -> None:
    seen: set[str] = set()
    now = datetime.now(UTC)
    for job in jobs:
        if job.id in seen:
            raise ValueError(f"two jobs are called {job.id!r}; job ids must be unique")
        seen.add(job.id)
        scheduler.add_job(
            runner.run,
            trigger(job),
            args=[job],
            id=job.id,
            name=job.id,
            coalesce=True,
            max_instances=1,
            misfire_grace_time=grace(job),
            next_run_time=now,
            replace_existing=True,
        )
