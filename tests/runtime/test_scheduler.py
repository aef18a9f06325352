"""The job wrapper and the scheduler built from plugins' jobs, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from apscheduler.events import EVENT_JOB_MISSED
from sqlalchemy import insert, select
from structlog.testing import capture_logs

from connector.config import LeadsyncConfig, load_config
from connector.ports import Job, Runtime
from connector.runtime import scheduler as sched
from connector.runtime.daemon import Daemon
from connector.runtime.metrics import REGISTRY
from connector.store import Store
from connector.store.tables import contacts, identities, job_runs


class Jobs:
    name = "inline"

    def __init__(self, *jobs: Job) -> None:
        self._jobs = list(jobs)

    def jobs(self, runtime: Runtime) -> Sequence[Job]:
        return self._jobs


def daemon(store: Store, *jobs: Job) -> Daemon:
    return Daemon(LeadsyncConfig(), store, {"inline": Jobs(*jobs)})  # type: ignore[dict-item]


def runs(store: Store, job_id: str | None = None) -> list[dict[str, Any]]:
    query = select(job_runs).order_by(job_runs.c.id)
    if job_id:
        query = query.where(job_runs.c.job_id == job_id)
    with store.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(query)]


def wait_for(condition: Callable[[], bool], what: str, limit: float = 20.0) -> None:
    """Poll until `condition` holds (a generous ceiling, not a timing assertion)."""
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        time.sleep(0.02)


@pytest.fixture
def started() -> Iterator[list[Daemon]]:
    """Daemons whose scheduler a test started; shut down afterwards."""
    made: list[Daemon] = []
    yield made
    for d in made:
        d.stopping.set()
        if d.scheduler is not None and d.scheduler.running:
            d.scheduler.shutdown(wait=True)


def start(d: Daemon, made: list[Daemon]) -> None:
    d.scheduler = sched.build(d.jobs(), d.runner)
    d.scheduler.start()
    made.append(d)


def test_run_once_records_each_run(store: Store) -> None:
    calls: list[str] = []
    d = daemon(
        store,
        Job("a.first", lambda rt: calls.append("a"), every=60),
        Job("b.second", lambda rt: calls.append("b"), cron="*/5 * * * *"),
    )
    assert d.run_once() == 0
    assert calls == ["a", "b"]
    assert REGISTRY.get_sample_value("leadsync_job_duration_seconds_count", {"job": "a.first"})
    assert REGISTRY.get_sample_value(
        "leadsync_job_last_success_timestamp_seconds", {"job": "b.second"}
    )
    rows = runs(store)
    assert [r["job_id"] for r in rows] == ["a.first", "b.second"]
    for r in rows:
        assert r["ok"] is True and r["message"] is None
        assert r["replica"] == d.replica and ":" in d.replica
        assert r["finished_at"] >= r["started_at"]


def test_counts_named_like_the_log_lines_own_keys_do_not_fail_the_run(store: Store) -> None:
    counted = Job("c.counts", lambda rt: {"seconds": 5, "job": 1, "event": 2, "rows": 3}, every=60)
    assert daemon(store, counted).run_once() == 0
    assert runs(store, "c.counts")[-1]["ok"] is True


def test_a_failed_write_is_recorded_without_the_values_of_its_row(store: Store) -> None:
    # PostgreSQL's DETAIL line and SQLAlchemy's parameter dump both quote the row that
    # failed; the job's message (shown by `leadsync status`) and its log line must not.
    secret = "ana.secret@example.com"

    def duplicate(rt: Runtime) -> None:
        now = datetime.now(UTC)
        with rt.store.engine.begin() as conn:
            conn.execute(
                insert(contacts).values(id=1, status=10, custom={}, created_at=now, updated_at=now)
            )
            conn.execute(
                insert(identities),
                [{"key": f"email:{secret}", "kind": "email", "contact_id": 1, "created_at": now}]
                * 2,
            )

    with capture_logs() as logged:
        assert daemon(store, Job("d.dup", duplicate, every=60)).run_once() == 1
    message = runs(store, "d.dup")[-1]["message"]
    assert message.startswith("IntegrityError:") and "unique" in message.lower()
    assert secret not in message
    assert any(e["event"] == "job.failed" for e in logged)
    assert secret not in repr(logged)


def test_exception_is_recorded_and_the_scheduler_survives(
    store: Store, started: list[Daemon]
) -> None:
    def broken(rt: Runtime) -> None:
        raise ValueError("token expired")

    good: list[int] = []
    d = daemon(
        store,
        Job("x.broken", broken, every=0.05),
        Job("x.good", lambda rt: good.append(1), every=0.05),
    )
    start(d, started)
    wait_for(lambda: len(runs(store, "x.broken")) >= 3 and len(good) >= 3, "repeated runs")
    assert d.scheduler.running
    failed = [r for r in runs(store, "x.broken") if r["finished_at"] is not None]
    assert failed and all(r["ok"] is False for r in failed)
    assert failed[0]["message"] == "ValueError: token expired"
    d.stopping.set()
    d.scheduler.shutdown(wait=True)  # frees the job (and its lock) for --once below
    assert daemon(store, Job("x.broken", broken, every=60)).run_once() == 1  # non-zero exit


def test_scheduler_configuration_follows_the_job(store: Store) -> None:
    d = daemon(
        store,
        Job("c.interval", lambda rt: None, every=30, jitter=5, misfire_grace=120),
        Job("c.cron", lambda rt: None, cron="0 3 * * *", misfire_grace=0.5),
    )
    scheduler = sched.build(d.jobs(), d.runner)
    interval, cron = scheduler.get_job("c.interval"), scheduler.get_job("c.cron")
    for job in (interval, cron):
        assert job.coalesce is True
        assert job.max_instances == 1
    assert interval.misfire_grace_time == 120  # the Job's, not APScheduler's 1 s
    assert cron.misfire_grace_time == 1
    assert interval.trigger.interval.total_seconds() == 30 and interval.trigger.jitter == 5
    assert str(cron.trigger.fields[5]) == "3"  # hour
    with pytest.raises(ValueError, match="exactly one"):
        sched.trigger(Job("bad", lambda rt: None))


def test_a_late_run_still_runs_unless_the_job_sets_a_grace(store: Store) -> None:
    # An hour late, as after a stalled host or a suspended container: by default the
    # run happens (once); a job that set a grace is dropped, which is what it asked for.
    ran: list[str] = []
    d = daemon(
        store,
        Job("late.default", lambda rt: ran.append("default"), every=7200),
        Job("late.graced", lambda rt: ran.append("graced"), every=7200, misfire_grace=60),
    )
    scheduler = sched.build(d.jobs(), d.runner)
    # The scheduler says when it drops a run: wait for that event, not for time to pass.
    missed: list[str] = []
    scheduler.add_listener(lambda event: missed.append(event.job_id), EVENT_JOB_MISSED)
    an_hour_ago = datetime.now(UTC) - timedelta(hours=1)
    for job_id in ("late.default", "late.graced"):
        scheduler.modify_job(job_id, next_run_time=an_hour_ago)
    scheduler.start()
    try:
        wait_for(lambda: "default" in ran, "the late run of a job without a grace")
        wait_for(lambda: "late.graced" in missed, "the graced job's late run dropped")
    finally:
        d.stopping.set()
        scheduler.shutdown(wait=True)
    assert ran == ["default"]


def test_at_most_one_instance_and_wake_while_running_runs_again(
    store: Store, started: list[Daemon]
) -> None:
    release = threading.Event()
    entered: list[int] = []

    def blocking(rt: Runtime) -> None:
        entered.append(1)
        release.wait(20)

    job = Job("d.block", blocking, every=3600)
    d = daemon(store, job)
    start(d, started)
    wait_for(lambda: entered == [1], "first run started")
    assert d.runner.run(job) is None  # a second instance is refused
    d.wake("d.block")  # arrives while running: remembered
    release.set()
    wait_for(lambda: len(entered) == 2, "the woken run")
    wait_for(lambda: all(r["ok"] for r in runs(store, "d.block")), "both runs finished")
    assert len(runs(store, "d.block")) == 2


def test_a_wake_during_a_run_runs_the_job_again_before_it_counts_as_finished(
    store: Store,
) -> None:
    # The rerun happens inside the same run() call: handed back to APScheduler, it could
    # arrive while APScheduler still counted this instance running, and be dropped
    # ("maximum number of running instances reached"), which lost the wake.
    d = daemon(store)
    entered: list[int] = []

    def woken_once(rt: Runtime) -> None:
        entered.append(1)
        if len(entered) == 1:
            assert d.runner.wake_after("g.woken")  # a webhook's wake, mid-run

    job = Job("g.woken", woken_once, every=3600)
    assert d.runner.run(job) is True
    assert entered == [1, 1]
    assert not d.runner.is_running("g.woken")
    assert [r["ok"] for r in runs(store, "g.woken")] == [True, True]
    assert d.runner.wake_after("g.woken") is False  # finished: a wake schedules it


def test_wake_runs_a_job_before_its_time(store: Store, started: list[Daemon]) -> None:
    calls: list[int] = []
    d = daemon(store, Job("e.hourly", lambda rt: calls.append(1), every=3600))
    start(d, started)
    wait_for(
        lambda: len(runs(store, "e.hourly")) == 1 and runs(store, "e.hourly")[0]["ok"], "first"
    )
    d.wake("e.hourly")
    wait_for(lambda: len(calls) == 2, "the woken run")
    d.wake("no.such.job")  # ignored, not an error


def test_stopping_skips_new_runs(store: Store) -> None:
    calls: list[int] = []
    d = daemon(store, Job("f.one", lambda rt: calls.append(1), every=60))
    d.stopping.set()
    assert d.run_once() == 0
    assert calls == [] and runs(store) == []


def test_duplicate_job_ids_are_refused(store: Store) -> None:
    d = daemon(
        store, Job("g.same", lambda rt: None, every=1), Job("g.same", lambda rt: None, every=2)
    )
    with pytest.raises(ValueError, match="unique"):
        sched.build(d.jobs(), d.runner)


def test_reload_keeps_the_old_config_when_the_new_one_is_refused(
    store: Store, tmp_path: Any
) -> None:
    config = tmp_path / "leadsync.yaml"
    config.write_text("default_region: MY\n")

    class Picky:
        name = "picky"

        def jobs(self, runtime: Runtime) -> Sequence[Job]:
            if runtime.config.default_region == "PL":
                raise ValueError("this adapter cannot run in PL")
            return [Job("picky.poll", lambda rt: None, every=60)]

    d = Daemon(LeadsyncConfig(default_region="MY"), store, {"picky": Picky()}, config_path=config)  # type: ignore[dict-item]
    config.write_text("default_region: nowhere\n")
    assert d.reload() is False and d.config.default_region == "MY"  # invalid YAML
    config.write_text("default_region: PL\n")
    assert d.reload() is False and d.config.default_region == "MY"  # an adapter refused
    config.write_text("default_region: VN\n")
    assert d.reload() is True and d.config.default_region == "VN"


def test_the_yaml_schedules_any_job_by_id(store: Store, tmp_path: Any) -> None:
    config = tmp_path / "leadsync.yaml"
    config.write_text(
        "schedules:\n"
        "  s.poll: {cron: '*/10 * * * *', jitter: 3}\n"
        "  s.sweep: {every: 45, misfire_grace: 600}\n"
    )
    jobs = Jobs(
        Job("s.poll", lambda rt: None, every=300, jitter=30),
        Job("s.sweep", lambda rt: None, cron="0 * * * *"),
        Job("s.other", lambda rt: None, every=60),
    )
    d = Daemon(load_config(config), store, {"s": jobs}, config_path=config)  # type: ignore[dict-item]
    scheduler = sched.build(d.jobs(), d.runner)
    poll, sweep, other = (scheduler.get_job(i) for i in ("s.poll", "s.sweep", "s.other"))
    assert str(poll.trigger.fields[6]) == "*/10" and poll.trigger.jitter == 3  # minute
    assert sweep.trigger.interval.total_seconds() == 45 and sweep.misfire_grace_time == 600
    assert other.trigger.interval.total_seconds() == 60  # untouched
    config.write_text("schedules:\n  s.pol: {every: 5}\n")  # a typo names no job
    assert d.reload() is False
    assert [j.every for j in d.jobs()] == [None, 45, 60]  # the old schedules stay
