"""`leadsync run`: the scheduler and the HTTP server in one process.

Threads: the main thread owns the lifecycle and the signals (SIGTERM/SIGINT stop,
SIGHUP reloads the YAML); APScheduler runs jobs on its own pool; uvicorn serves the app
on a thread of its own with its signal handlers off, so there is exactly one place that
decides when the process stops: `stopping`.

Stopping: set `stopping` (jobs check it between batches), stop the scheduler and wait
for the running jobs to return, then stop the server, release the SQLite lock, exit 0.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any, Literal

import structlog

from connector import checks
from connector.config import ConfigError, load_config
from connector.logs import describe
from connector.ports import Destination, Health, Job, Plugin, Runtime
from connector.runtime import health
from connector.runtime.locks import JobLocks, SqliteFileLock
from connector.runtime.scheduler import JobRunner, add_jobs, build
from connector.store import Store

log = structlog.get_logger("leadsync.daemon")

EXTRA_PLUGINS_ENV = "LEADSYNC_EXTRA_PLUGINS"
"""Test hook: comma-separated "module:attr" plugins added to the installed ones (so a
subprocess test can run `leadsync run` with a tiny plugin without installing one)."""

OUTBOX_JOB = "outbox.deliver"
OUTBOX_EVERY = 5.0


def installed_plugins() -> dict[str, Plugin]:
    """Entry-point plugins plus any named in $LEADSYNC_EXTRA_PLUGINS."""
    from importlib import import_module

    from connector.ports import plugins

    found = dict(plugins())
    for spec in filter(None, os.environ.get(EXTRA_PLUGINS_ENV, "").split(",")):
        module, _, attr = spec.strip().partition(":")
        plugin = getattr(import_module(module), attr or "plugin")
        found[getattr(plugin, "name", attr)] = plugin
    return found


class _LogBridge(logging.Handler):
    """A library's stdlib log records as structlog lines, so they land in the JSON log:
    APScheduler's notices (a run skipped because the previous one still runs, a run
    missed beyond its grace: no run is dropped without a trace) and uvicorn's errors.
    Their messages name jobs, times and addresses; an exception is logged by class and
    redacted message (describe), not as a traceback that could quote a request."""

    def __init__(self, event: str, level: int) -> None:
        super().__init__(level)
        self.event = event

    def emit(self, record: logging.LogRecord) -> None:
        emit = log.warning if record.levelno >= logging.WARNING else log.info
        fields: dict[str, Any] = {"detail": record.getMessage()}
        if record.exc_info and record.exc_info[1] is not None:
            fields["error"] = describe(record.exc_info[1])
        emit(self.event, **fields)


def _bridge_library_logs() -> None:
    for name, event in (("apscheduler", "scheduler.notice"), ("uvicorn", "http.notice")):
        logger = logging.getLogger(name)
        if not any(isinstance(h, _LogBridge) for h in logger.handlers):
            logger.addHandler(_LogBridge(event, logging.WARNING))
            logger.propagate = False


class _Server:
    """uvicorn on a thread, without its own signal handlers."""

    def __init__(self, app: Any, host: str, port: int) -> None:
        import uvicorn

        class Quiet(uvicorn.Server):
            def install_signal_handlers(self) -> None:  # the main thread handles them
                pass

        # log_config=None: uvicorn installs no handlers of its own; its records reach
        # the structured log through _bridge_library_logs.
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            log_level="warning",
            access_log=False,
            lifespan="off",
            log_config=None,
        )
        self.server = Quiet(config)
        self.thread = threading.Thread(target=self.server.run, name="http", daemon=True)
        self.where = f"{host}:{port}"

    def start(self) -> None:
        self.thread.start()
        while not self.server.started:
            if not self.thread.is_alive():
                raise OSError(f"the HTTP server could not listen on {self.where}")
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def scheduled(jobs: Sequence[Job], schedules: Mapping[str, Any]) -> list[Job]:
    """`jobs` with the YAML's `schedules:` applied (every/cron, jitter, misfire grace);
    a schedule for a job that does not exist is an error, not a silent no-op."""
    unknown = sorted(set(schedules) - {j.id for j in jobs})
    if unknown:
        known = ", ".join(j.id for j in jobs) or "none"
        raise ValueError(f"schedules: no job is called {unknown}; the jobs are: {known}")
    out: list[Job] = []
    for job in jobs:
        given = schedules.get(job.id)
        if given is not None:
            changes: dict[str, Any] = {}
            if given.every is not None:
                changes.update(every=given.every, cron=None)
            if given.cron is not None:
                changes.update(cron=given.cron, every=None)
            if given.jitter is not None:
                changes["jitter"] = given.jitter
            if given.misfire_grace is not None:
                changes["misfire_grace"] = given.misfire_grace
            job = dataclasses.replace(job, **changes)
        out.append(job)
    return out


def _listen(config: Any) -> tuple[Any, Any]:
    server = getattr(config, "server", None)
    return getattr(server, "host", None), getattr(server, "port", None)


class Daemon(Runtime):
    """The `Runtime` adapters see, and the process that runs their jobs and routes."""

    def __init__(
        self,
        config: Any,
        store: Store,
        plugins: dict[str, Plugin] | None = None,
        *,
        config_path: Path | str | None = None,
        fanout: Literal["process", "store"] | None = None,
    ) -> None:
        """`fanout`: where the caller connected the change feed's fan-out for `config`
        (`connector.sync.fanout.connect`): "process" for every store of the process (as
        `leadsync run` does), "store" for `store`'s engine only; a reload then connects
        it again from the new YAML. None: the caller owns it and a reload leaves it."""
        self.config = config
        self.store = store
        self.stopping = threading.Event()
        self.replica = f"{socket.gethostname()}:{os.getpid()}"
        self.plugins = plugins if plugins is not None else installed_plugins()
        self.config_path = config_path
        self.fanout = fanout
        self.locks = JobLocks(store)
        self.runner = JobRunner(self, self.locks)
        self.scheduler: Any = None
        self.app: Any = None
        """The HTTP app while serving; a reload swaps its routes."""
        self._reload = threading.Event()

    # -- Runtime ---------------------------------------------------------------------

    def report(
        self,
        source: str,
        state: Health,
        reason: str | None = None,
        *,
        until: datetime | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        health.report(self.store, source, state, reason, until=until, detail=detail)
        event = log.info if state == "ok" else log.warning
        event("source.health", source=source, state=state, reason=reason, until=until)

    def wake(self, job_id: str) -> None:
        scheduler = self.scheduler
        if scheduler is None or self.stopping.is_set():
            return
        if self.runner.wake_after(job_id):
            return
        try:
            scheduler.modify_job(job_id, next_run_time=datetime.now(UTC))
        except Exception as exc:  # JobLookupError: unknown id, or the scheduler is down
            log.info("job.wake_ignored", job=job_id, error=type(exc).__name__)

    # -- jobs ------------------------------------------------------------------------

    def destinations(self) -> list[Destination]:
        found: list[Destination] = []
        for plugin in self.plugins.values():
            contribute = getattr(plugin, "destinations", None)
            if contribute is not None:
                found.extend(contribute(self))
        return found

    def jobs(self) -> list[Job]:
        """Every plugin's jobs (by plugin name), then the core ones."""
        found: list[Job] = []
        for _name, plugin in sorted(self.plugins.items()):
            contribute = getattr(plugin, "jobs", None)
            if contribute is not None:
                found.extend(contribute(self))
        targets = self.destinations()
        if targets:

            def deliver(runtime: Runtime) -> dict[str, int]:
                from connector.sync import outbox

                settings = getattr(runtime.config, "outbox", None) or outbox.DEFAULTS
                stats = outbox.deliver(
                    runtime.store, targets, runtime.stopping, settings, runtime.replica
                )
                return {
                    "delivered": stats.delivered,
                    "retried": stats.retried,
                    "failed": stats.failed,
                    "stale": stats.stale,
                }

            found.append(Job(id=OUTBOX_JOB, run=deliver, every=OUTBOX_EVERY, jitter=1.0))
        # The same checks `leadsync config validate` runs (connector/checks.py).
        checks.require(self.config, found, self.config_path)
        return scheduled(found, getattr(self.config, "schedules", None) or {})

    def run_once(self, jobs: Sequence[Job] | None = None) -> int:
        """Every job once, in order; 0 if none failed, 1 otherwise."""
        failed = 0
        for job in self.jobs() if jobs is None else jobs:
            if self.stopping.is_set():
                break
            if self.runner.run(job) is False:
                failed += 1
        return 1 if failed else 0

    # -- the process -----------------------------------------------------------------

    def run(self, once: bool = False, host: str | None = None, port: int | None = None) -> int:
        """Run until SIGTERM/SIGINT (or, with `once`, every job once); the exit code."""
        file_lock = SqliteFileLock.for_store(self.store)
        if file_lock is not None:
            file_lock.acquire()
        previous = self._install_signals()
        try:
            if once:
                log.info("daemon.once", replica=self.replica)
                return self.run_once()
            return self._serve(host, port)
        finally:
            self._restore_signals(previous)
            if file_lock is not None:
                file_lock.release()

    def _serve(self, host: str | None, port: int | None) -> int:
        from connector.runtime.server import build_app

        server_config = getattr(self.config, "server", None)
        host = str(host or getattr(server_config, "host", "127.0.0.1"))
        port = int(port if port is not None else getattr(server_config, "port", 8787))
        _bridge_library_logs()
        jobs = self.jobs()
        self.scheduler = build(jobs, self.runner)
        self.app = build_app(self, self.plugins)
        server = _Server(self.app, host, port)
        server.start()
        self.scheduler.start()
        from connector.store import contacts as contact_store

        unlisted = contact_store.unlisted_statuses(self.store)
        if unlisted:
            log.warning("statuses.unlisted", reason=contact_store.unlisted_advice(unlisted))
        log.info(
            "daemon.started",
            replica=self.replica,
            listen=f"{host}:{port}",
            jobs=[j.id for j in jobs],
            store=self.store.dialect,
        )
        try:
            while not self.stopping.wait(0.2):
                if self._reload.is_set():
                    self._reload.clear()
                    try:
                        self.reload()
                    except Exception as exc:  # a reload never stops the daemon
                        log.warning("config.reload_failed", reason=describe(exc))
        finally:
            log.info("daemon.stopping", replica=self.replica)
            self.stopping.set()
            self.scheduler.shutdown(wait=True)
            server.stop()
            log.info("daemon.stopped", replica=self.replica)
        return 0

    def reload(self) -> bool:
        """Re-read and validate the YAML; keep the old config if it is invalid."""
        try:
            config = load_config(self.config_path)
        except ConfigError as exc:
            log.warning("config.reload_rejected", reason=str(exc))
            return False
        except Exception as exc:  # whatever a file does, the daemon lives on
            # ConfigError covers every invalid file we know of (yamlload); anything else
            # (a plugin's model, an OS error) still must not kill a running daemon.
            log.warning("config.reload_rejected", reason=describe(exc))
            return False
        if getattr(config, "store", None) != getattr(self.config, "store", None):
            log.warning("config.store_change_ignored", reason="restart to change the store")
        previous, self.config = self.config, config
        try:
            # Adapters read their sections here and may refuse them; nothing is applied
            # until both the jobs and the routes (webhook secrets, paths) are built.
            jobs = self.jobs()
            routes = None
            if self.app is not None:
                from connector.runtime.server import all_routes

                routes = all_routes(self, self.plugins)
            wiring = None
            if self.fanout is not None:
                # Where status changes and new contacts fan out: a system added to or
                # removed from the YAML is (not) fanned out to from this reload on.
                from connector.sync import fanout

                wiring = fanout.plan(config, self.plugins)
        except Exception as exc:
            self.config = previous
            log.warning("config.reload_rejected", reason=describe(exc))
            return False
        if wiring is not None:
            # Before the jobs: the new outbox job delivers to the new systems, so the
            # rows for them must be written by the new fan-out.
            wiring.apply(self.store.engine if self.fanout == "store" else None)
        if self.scheduler is not None:
            self.scheduler.remove_all_jobs()
            add_jobs(self.scheduler, jobs, self.runner)
        if self.app is not None and routes is not None:
            from connector.runtime.server import remount

            remount(self.app, routes)
        if _listen(config) != _listen(previous):
            log.warning("config.listen_change_ignored", reason="restart to listen elsewhere")
        systems = list(wiring.systems) if wiring is not None else None
        log.info("config.reloaded", jobs=[j.id for j in jobs], fanout=systems)
        return True

    def _install_signals(self) -> dict[int, Any]:
        if threading.current_thread() is not threading.main_thread():
            return {}

        def stop(signum: int, _frame: FrameType | None) -> None:
            log.info("daemon.signal", signal=signal.Signals(signum).name)
            self.stopping.set()

        def hup(_signum: int, _frame: FrameType | None) -> None:
            self._reload.set()

        previous: dict[int, Any] = {}
        for signum, handler in (
            (signal.SIGTERM, stop),
            (signal.SIGINT, stop),
            (signal.SIGHUP, hup),
        ):
            previous[signum] = signal.signal(signum, handler)
        return previous

    def _restore_signals(self, previous: dict[int, Any]) -> None:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
