"""Daemon benchmark (issue 4): idle RSS, and webhook -> stored latency under load.

    python benchmarks/daemon.py --rate 200 --seconds 20 --store sqlite
    python benchmarks/daemon.py --store postgres --graph-latency 0.05
    python benchmarks/daemon.py --find-max --seconds 10

One run, in one go:

1. the Graph API emulator in its own process (spawn): one Page, one form, one ad, and
   one lead per request to be sent, created with notify=False two days ago (so the
   daemon's first poll, which reads back `first_poll_days` = 1, finds none of them);
2. `leadsync -c CFG --store URL run --port P` as a subprocess on a fresh SQLite file or
   on PostgreSQL at 127.0.0.1:5432/leadsync_bench (schema dropped and recreated, then
   `leadsync db upgrade`), polling every hour so polls do not interfere;
3. idle RSS: 10 s after /healthz answers, the RSS of the daemon's process tree (psutil,
   children included), sampled a few times; the max is reported;
4. load: a separate process sends signed leadgen webhooks open loop, request i at
   t0 + i/rate, each for a distinct pre-created lead; latencies are measured from the
   scheduled time, so a sender that falls behind shows up as latency, not as a lower
   rate (coordinated omission);
5. stored latency: once every lead is in `leads` (or a timeout), leads.received_at (UTC,
   written in the ingest transaction) minus the request's scheduled time. The phases
   come from the store too: the inbox row's received_at (the handler's insert) and
   processed_at (the drain job's `done`), and the drain job's runs (job_runs).

`--find-max` steps the rate (100, 200, 400, 800 by default) with a fresh daemon each
time and reports the highest rate whose stored p95 is under 100 ms with nothing lost.
Every process started here is stopped on exit, Ctrl-C included.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import itertools
import json
import multiprocessing as mp
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.ingest import PG_BENCH, _reset_pg, machine  # noqa: E402

DAY = 86400.0
TARGET_P95_MS = 100.0
IDLE_SECONDS = 10.0
SOURCE = "facebook"
WEBHOOK_PATH = "/webhooks/facebook"


# -- the emulator process -------------------------------------------------------------


def _emulator(conn: Any, leads: int, latency: float, seed: int) -> None:
    """Child process: build the world, send its description, serve until told to stop."""
    from adapters.facebook.fake import FakeGraph, config_section

    fake = FakeGraph(seed=seed)
    fake.start()
    page = fake.add_page("Benchmark Page")
    campaign = fake.add_campaign(page.id, name="Benchmark campaign")
    adset = fake.add_adset(campaign, name="Ad set", interests=[{"id": "600", "name": "Bench"}])
    form = fake.add_form(page.id, name="Benchmark form")
    ad = fake.add_ad(adset, name="Ad", form_id=form)
    created = time.time() - 2 * DAY
    ids = [
        fake.add_lead(
            form,
            {
                "full_name": f"Bench Person {i}",
                "email": f"bench.person.{i}@example.com",
                "phone_number": f"+6012{i:07d}",
                "city": "Kuala Lumpur",
            },
            created_time=created + i % 3600,
            ad_id=ad,
            notify=False,
        )
        for i in range(leads)
    ]
    fake.faults.latency = latency
    fake.reset_calls()
    world = {"pages": [{"id": page.id, "token": page.token}]}
    conn.send(
        {
            **config_section(fake, world),
            "secret": fake.app_secret,
            "page": page.id,
            "form": form,
            "leads": ids,
            "created": int(created),
        }
    )
    with contextlib.suppress(EOFError, KeyboardInterrupt):
        conn.recv()  # "stop"
        conn.send(dict(fake.calls))
    fake.stop()


# -- the load process -----------------------------------------------------------------


def _load(conn: Any, port: int, job: dict[str, Any]) -> None:
    """Child process: send job["leads"] webhooks at job["rate"]/s, open loop.

    Each thread keeps one keep-alive connection and takes the next request index; it
    sleeps until that request's scheduled time (t0 + i/rate) and sends it at once if it
    is already late. Per request: scheduled time, actual send time, answer time (wall
    clock, time.time(), the clock the daemon's received_at uses), status."""
    import hashlib
    import hmac

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    rate, secret = float(job["rate"]), job["secret"].encode()
    page, form, created = job["page"], job["form"], job["created"]
    bodies = []
    for lead_id in job["leads"]:
        body = json.dumps(
            {
                "object": "page",
                "entry": [
                    {
                        "id": page,
                        "time": created,
                        "changes": [
                            {
                                "field": "leadgen",
                                "value": {
                                    "leadgen_id": lead_id,
                                    "page_id": page,
                                    "form_id": form,
                                    "created_time": created,
                                },
                            }
                        ],
                    }
                ],
            }
        ).encode()
        sig = "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
        bodies.append((body, sig))
    n = len(bodies)
    results: list[tuple[float, float, float, int] | None] = [None] * n
    lock = threading.Lock()
    nxt = [0]
    t0 = time.time() + 0.5

    def worker() -> None:
        client: http.client.HTTPConnection | None = None
        while True:
            with lock:
                i = nxt[0]
                nxt[0] += 1
            if i >= n:
                break
            scheduled = t0 + i / rate
            wait = scheduled - time.time()
            if wait > 0:
                time.sleep(wait)
            body, sig = bodies[i]
            sent = time.time()
            status = 0
            for _attempt in range(2):  # a dropped keep-alive connection: reconnect once
                try:
                    if client is None:
                        client = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                    client.request(
                        "POST",
                        WEBHOOK_PATH,
                        body=body,
                        headers={
                            "Content-Type": "application/json",
                            "X-Hub-Signature-256": sig,
                        },
                    )
                    answer = client.getresponse()
                    answer.read()
                    status = answer.status
                    break
                except (OSError, http.client.HTTPException):
                    if client is not None:
                        client.close()
                    client = None
            results[i] = (scheduled, sent, time.time(), status)
        if client is not None:
            client.close()

    threads = [
        threading.Thread(target=worker, name=f"load-{k}", daemon=True)
        for k in range(job["threads"])
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    conn.send({"t0": t0, "results": results})


# -- the daemon -----------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _write_config(path: Path, world: dict[str, Any]) -> None:
    import yaml

    section = {
        **world["facebook"],
        "region": "MY",
        "poll_every": 3600,
        "first_poll_days": 1,
    }
    path.write_text(yaml.safe_dump({"facebook": section}))


def _wait_ready(port: int, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the daemon exited with {proc.returncode} before it was ready")
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            c.request("GET", "/healthz")
            if c.getresponse().status == 200:
                c.close()
                return
            c.close()
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"the daemon on port {port} did not answer /healthz in {timeout:.0f} s")


def _tree_cpu(pid: int) -> float:
    """User + system CPU seconds of a process tree so far."""
    import psutil

    root = psutil.Process(pid)
    total = 0.0
    for p in [root, *root.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            t = p.cpu_times()
            total += t.user + t.system
    return total


def _tree_rss(pid: int) -> int:
    import psutil

    root = psutil.Process(pid)
    total = 0
    for p in [root, *root.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            total += p.memory_info().rss
    return total


class _Peak:
    """Samples the RSS of a process tree every 50 ms in a thread; `peak` is the max."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak = pid, 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            with contextlib.suppress(Exception):
                self.peak = max(self.peak, _tree_rss(self.pid))
            self.stop.wait(0.05)

    def __enter__(self) -> _Peak:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


def _stop(proc: Any, timeout: float = 15) -> None:
    """Stop a Popen or a multiprocessing.Process: SIGTERM, then SIGKILL."""
    if proc is None:
        return
    alive = proc.poll() is None if isinstance(proc, subprocess.Popen) else proc.is_alive()
    if not alive:
        return
    proc.terminate()
    try:
        if isinstance(proc, subprocess.Popen):
            proc.wait(timeout)
        else:
            proc.join(timeout)
            if proc.is_alive():
                raise subprocess.TimeoutExpired("process", timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        if isinstance(proc, subprocess.Popen):
            proc.wait(5)
        else:
            proc.join(5)


# -- the store ------------------------------------------------------------------------


def _stored(url: str, lead_ids: set[str]) -> dict[str, float]:
    """lead id -> received_at (epoch seconds) of the leads stored so far."""
    from sqlalchemy import create_engine, select

    from connector.store.tables import leads

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                select(leads.c.source_id, leads.c.received_at).where(leads.c.source == SOURCE)
            ).all()
    finally:
        engine.dispose()
    return {r.source_id: r.received_at.timestamp() for r in rows if r.source_id in lead_ids}


def _phases(url: str) -> dict[str, Any]:
    """The inbox rows (lead id -> put and done times) and the drain job's runs."""
    from sqlalchemy import create_engine, select

    from connector.store.tables import job_runs, webhook_deliveries

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                select(
                    webhook_deliveries.c.body,
                    webhook_deliveries.c.received_at,
                    webhook_deliveries.c.processed_at,
                )
            ).all()
            runs = conn.execute(
                select(job_runs.c.started_at, job_runs.c.finished_at).where(
                    job_runs.c.job_id == "facebook.webhooks"
                )
            ).all()
    finally:
        engine.dispose()
    inbox: dict[str, tuple[float, float | None]] = {}
    for body, put, done in rows:
        with contextlib.suppress(ValueError, KeyError, IndexError, TypeError):
            lead_id = json.loads(body)["entry"][0]["changes"][0]["value"]["leadgen_id"]
            inbox[str(lead_id)] = (put.timestamp(), done.timestamp() if done else None)
    durations = [
        (f.timestamp() - s.timestamp()) for s, f in runs if s is not None and f is not None
    ]
    return {"inbox": inbox, "runs": len(runs), "run_seconds": durations}


def _batches(log_path: Path) -> dict[str, Any]:
    """The drain job's ingest batches, from the daemon's JSON log: rows per batch and
    the time between two batches (one claim -> fetch -> ingest -> done cycle)."""
    from datetime import datetime

    rows: list[float] = []
    stamps: list[float] = []
    for line in log_path.read_text(errors="replace").splitlines():
        if '"ingest.batch"' not in line or f'"source": "{SOURCE}"' not in line:
            continue
        with contextlib.suppress(ValueError, KeyError):
            event = json.loads(line)
            rows.append(float(event["rows"]))
            stamps.append(datetime.fromisoformat(event["timestamp"]).timestamp())
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    return {"count": len(rows), "rows": rows, "gaps": gaps}


def _prepare_store(kind: str, tmp: str) -> str:
    if kind == "sqlite":
        return f"sqlite:///{tmp}/bench.db"
    _reset_pg()
    subprocess.run(
        [sys.executable, "-m", "connector", "--store", PG_BENCH, "db", "upgrade"],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return PG_BENCH


# -- one run --------------------------------------------------------------------------


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[k]


def _summary(values: list[float]) -> dict[str, float]:
    ms = [v * 1000 for v in values]
    return {
        "p50": _pct(ms, 50),
        "p95": _pct(ms, 95),
        "p99": _pct(ms, 99),
        "max": max(ms) if ms else float("nan"),
    }


def run(args: argparse.Namespace, rate: float, seconds: float) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    n = max(1, round(rate * seconds))
    emulator = load = daemon = None
    parent, child = ctx.Pipe()
    tmp = tempfile.mkdtemp(prefix="leadsync-daemon-bench-")
    try:
        emulator = ctx.Process(
            target=_emulator, args=(child, n, args.graph_latency, args.seed), daemon=True
        )
        emulator.start()
        world = parent.recv()
        url = _prepare_store(args.store, tmp)
        config = Path(tmp) / "leadsync.yaml"
        _write_config(config, world)
        port = _free_port()
        log_path = Path(tmp) / "daemon.log"
        cmd = [sys.executable, "-m", "connector", "-c", str(config), "--store", url, "run"]
        with log_path.open("ab") as out:
            daemon = subprocess.Popen([*cmd, "--port", str(port)], stdout=out, stderr=out)
        _wait_ready(port, daemon)
        time.sleep(1.0)  # the first poll and drain runs at start
        idle_cpu0, idle_t0 = _tree_cpu(daemon.pid), time.time()
        time.sleep(IDLE_SECONDS - 1.0)
        idle_cpu = (_tree_cpu(daemon.pid) - idle_cpu0) / (time.time() - idle_t0)
        idle = 0
        for _ in range(5):
            idle = max(idle, _tree_rss(daemon.pid))
            time.sleep(0.4)
        idle_load = os.getloadavg()

        lead_ids = [str(x) for x in world["leads"]]
        threads = args.threads or min(400, max(32, round(rate)))
        job = {**world, "rate": rate, "threads": threads}
        cpu0 = _tree_cpu(daemon.pid)
        lparent, lchild = ctx.Pipe()
        with _Peak(daemon.pid) as peak:
            load = ctx.Process(target=_load, args=(lchild, port, job), daemon=True)
            load.start()
            sent = lparent.recv()
            load.join(10)
            wanted = set(lead_ids)
            deadline = time.time() + args.drain_timeout
            stored = _stored(url, wanted)
            while len(stored) < len(wanted) and time.time() < deadline:
                time.sleep(0.5)
                stored = _stored(url, wanted)
            drained_at = time.time()
            cpu = _tree_cpu(daemon.pid) - cpu0
        load_avg = os.getloadavg()
        phases = _phases(url)
        batches = _batches(log_path)
        parent.send("stop")
        with contextlib.suppress(EOFError):
            calls = parent.recv()
        if args.keep_log:
            keep = Path(f"daemon-bench-{args.store}-{rate:.0f}.log")
            keep.write_bytes(log_path.read_bytes())
            print(f"daemon log: {keep.resolve()}", file=sys.stderr)
    finally:
        _stop(load)
        _stop(daemon)
        with contextlib.suppress(Exception):
            parent.send("stop")
        _stop(emulator)
        with contextlib.suppress(OSError):
            for p in sorted(Path(tmp).glob("*"), reverse=True):
                p.unlink()
            os.rmdir(tmp)

    results = sent["results"]
    done = [r for r in results if r is not None]
    answered = [r for r in done if r[3] == 200]
    errors = len(done) - len(answered) + (n - len(done))
    http_lat = [r[2] - r[0] for r in done]
    send_lag = [r[1] - r[0] for r in done]
    scheduled = {lead_ids[i]: r[0] for i, r in enumerate(results) if r is not None}
    stored_lat = [stored[k] - scheduled[k] for k in stored if k in scheduled]
    first_send = min(r[1] for r in done)
    last_send = max(r[1] for r in done)
    inbox = phases["inbox"]
    to_put = [inbox[k][0] - scheduled[k] for k in scheduled if k in inbox]
    put_to_stored = [stored[k] - inbox[k][0] for k in stored if k in inbox]
    stored_to_done = [
        inbox[k][1] - stored[k] for k in stored if k in inbox and inbox[k][1] is not None
    ]
    return {
        "store": args.store,
        "rate": rate,
        "seconds": seconds,
        "sent": len(done),
        "achieved_rate": round((len(done) - 1) / max(1e-9, last_send - first_send), 1),
        "errors": errors,
        "statuses": {
            str(k): sum(1 for r in done if r[3] == k) for k in sorted({r[3] for r in done})
        },
        "stored": len(stored),
        "http_ms": _summary(http_lat),
        "send_lag_ms": _summary(send_lag),
        "stored_ms": _summary(stored_lat),
        "phase_to_inbox_ms": _summary(to_put),
        "phase_inbox_to_stored_ms": _summary(put_to_stored),
        "phase_stored_to_done_ms": _summary(stored_to_done),
        "drain_runs": phases["runs"],
        "batches": batches["count"],
        "batch_rows": {
            "p50": _pct(batches["rows"], 50),
            "p95": _pct(batches["rows"], 95),
            "max": max(batches["rows"], default=0),
        },
        "batch_gap_ms": _summary(batches["gaps"]),
        "drain_run_ms": _summary(phases["run_seconds"]),
        "drain_s_after_last_send": round(
            (max(stored.values()) if stored else drained_at) - last_send, 2
        ),
        "daemon_cpu_s": round(cpu, 1),
        "idle_cpu_share": round(idle_cpu, 3),
        "wall_s": round(drained_at - sent["t0"], 1),
        "threads": threads,
        "idle_rss_mb": round(idle / 2**20),
        "peak_rss_mb": round(peak.peak / 2**20),
        "graph_calls": sum(calls.values()) if isinstance(calls, dict) else None,
        "load_idle": [round(x, 2) for x in idle_load],
        "load_after": [round(x, 2) for x in load_avg],
    }


def _row(r: dict[str, Any]) -> str:
    h, s = r["http_ms"], r["stored_ms"]
    return (
        f"{r['store']:<8} {r['rate']:>6.0f} {r['achieved_rate']:>8.1f} {r['sent']:>6} "
        f"{r['errors']:>4} {r['stored']:>6} "
        f"{h['p50']:>6.1f} {h['p95']:>6.1f} {h['p99']:>6.1f} {h['max']:>7.1f}  "
        f"{s['p50']:>7.1f} {s['p95']:>7.1f} {s['p99']:>7.1f} {s['max']:>7.1f}  "
        f"{r['idle_rss_mb']:>4} MB {r['peak_rss_mb']:>4} MB  "
        f"{' '.join(f'{x:.2f}' for x in r['load_after'])}"
    )


def _details(r: dict[str, Any]) -> str:
    def fmt(name: str, d: dict[str, float]) -> str:
        return (
            f"  {name:<24} p50 {d['p50']:8.1f}  p95 {d['p95']:8.1f}  p99 {d['p99']:8.1f}  "
            f"max {d['max']:8.1f} ms"
        )

    return "\n".join(
        [
            fmt("send lag (sched->sent)", r["send_lag_ms"]),
            fmt("sched -> inbox insert", r["phase_to_inbox_ms"]),
            fmt("inbox -> lead stored", r["phase_inbox_to_stored_ms"]),
            fmt("lead stored -> done", r["phase_stored_to_done_ms"]),
            fmt(f"drain runs ({r['drain_runs']})", r["drain_run_ms"]),
            fmt(f"ingest batch gap ({r['batches']})", r["batch_gap_ms"]),
            f"  leads per ingest batch: p50 {r['batch_rows']['p50']:.0f}, "
            f"p95 {r['batch_rows']['p95']:.0f}, max {r['batch_rows']['max']:.0f}",
            f"  HTTP statuses {r['statuses']} (0: no answer); "
            f"last lead stored {r['drain_s_after_last_send']} s after the last send; "
            f"Graph calls {r['graph_calls']}; daemon CPU {r['daemon_cpu_s']} s in "
            f"{r['wall_s']} s of load (idle: {r['idle_cpu_share']} CPU s/s); "
            f"{r['threads']} sender threads; load avg idle "
            f"{' '.join(f'{x:.2f}' for x in r['load_idle'])}",
        ]
    )


HEADER = (
    f"{'store':<8} {'rate':>6} {'achieved':>8} {'sent':>6} {'err':>4} {'stored':>6} "
    f"{'http50':>6} {'http95':>6} {'http99':>6} {'httpmax':>7}  "
    f"{'st50':>7} {'st95':>7} {'st99':>7} {'stmax':>7}  {'idle RSS':>7} {'peak RSS':>7}  "
    "load avg (1/5/15 min)"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=200.0, help="webhook requests per second")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of the load")
    parser.add_argument("--store", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--graph-latency", type=float, default=0.0, help="seconds per call")
    parser.add_argument(
        "--threads", type=int, default=0, help="sender threads (default: rate, 32..400)"
    )
    parser.add_argument("--find-max", action="store_true", help="step the rate up")
    parser.add_argument("--rates", default="100,200,400,800", help="rates for --find-max")
    parser.add_argument("--drain-timeout", type=float, default=120.0)
    parser.add_argument("--seed", type=int, default=4)
    parser.add_argument("--keep-log", action="store_true", help="keep the daemon's log in ./")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    print(f"machine: {machine()}")
    print(f"command: python benchmarks/daemon.py {' '.join(sys.argv[1:])}")
    print(f"load avg at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print("latencies in ms from each request's scheduled send time; RSS of the daemon's tree")
    print(HEADER, flush=True)
    rates = [float(x) for x in args.rates.split(",")] if args.find_max else [args.rate]
    results = []
    best = None
    for rate in rates:
        r = run(args, rate, args.seconds)
        results.append(r)
        print(_row(r), flush=True)
        print(_details(r), flush=True)
        ok = r["stored_ms"]["p95"] < TARGET_P95_MS and r["stored"] == r["sent"] == round(
            rate * args.seconds
        )
        ok = ok and r["errors"] == 0
        if not args.find_max:
            continue
        if not ok:
            break
        best = rate
    if args.find_max:
        print(
            f"highest rate with stored p95 < {TARGET_P95_MS:.0f} ms and nothing lost: "
            f"{best if best is not None else 'none of ' + args.rates} req/s"
        )
    if args.json:
        Path(args.json).write_text(
            json.dumps({"machine": machine(), "results": results}, indent=1) + "\n"
        )


if __name__ == "__main__":
    main()
