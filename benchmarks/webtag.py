"""Web tag collector benchmark (issue 16): events/s and latency on loopback.

    python benchmarks/webtag.py --store sqlite --rate 400 --events 5 --seconds 20
    python benchmarks/webtag.py --store postgres --rate 400 --events 5 --seconds 20
    python benchmarks/webtag.py --find-max --rates 200,400,600 --events 5 --store sqlite

1. `leadsync -c CFG --store URL run --port P` as a subprocess, on a fresh SQLite file or
   on PostgreSQL at 127.0.0.1:5432/lt_webtag_bench (`LEADSYNC_BENCH_WEBTAG_DB`; a
   database this script creates for the run and drops after it), then `db upgrade`;
2. a separate load process (spawned) sends collector batches open loop, request i at
   t0 + i/rate, over `--connections` keep-alive connections, each batch `--events`
   page views of one of 5,000 visitors with a browser User-Agent and an allowed
   Origin; latency is measured from the scheduled time (a sender that falls behind
   shows as latency, not as a lower rate). `--loadgen asyncio` (default) sends from one
   uvloop event loop with pre-built requests; `--loadgen threads` is the earlier
   generator (`http.client`, a thread per connection), which costs the shared cores
   about four times the CPU a request; the load process's own CPU is printed;
3. after the run, the page views in the store are counted: every event acknowledged
   must be there; the daemon's CPU time (psutil) per request, the requests per write
   transaction (from /metrics) and the 1-minute load average are printed with the
   latencies, since the latencies depend on what else runs on the box.

The daemon, the load process and PostgreSQL share the machine's cores: the figures are
for the whole loop on one box, not for the daemon alone.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing as mp
import os
import resource
import secrets
import shutil
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

from benchmarks.ingest import machine  # noqa: E402
from benchmarks.pgdb import drop_database, empty_schema  # noqa: E402

PG_DB = os.environ.get("LEADSYNC_BENCH_WEBTAG_DB", "lt_webtag_bench")
PG_URL = f"postgresql+psycopg://postgres@127.0.0.1:5432/{PG_DB}"
ORIGIN = "https://www.example.com"
KEY = "bench-site-key"
UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0"
CONFIG = f"""
webtag:
  sites:
    - {{name: www, key: {KEY}, allowed_origins: ["{ORIGIN}"]}}
  rate_per_ip: 100000
  burst_per_ip: 100000
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _reset_pg() -> None:
    empty_schema(PG_URL)


def _drop_pg() -> None:
    drop_database(PG_URL)


def _batch(i: int, events: int, run: str) -> bytes:
    now = int(time.time() * 1000)
    visitor = f"bench-visitor-{i % 5000:05d}"
    return json.dumps(
        {
            "site": KEY,
            "visitor": visitor,
            "events": [
                {
                    "type": "page_view",
                    "id": f"{run}-{i}-{k}",
                    "at": now,
                    "url": f"{ORIGIN}/page/{k}?utm_source=bench&fbclid=IwAR{i}",
                    "referrer": ORIGIN + "/",
                    "title": "A page",
                    "fbc": f"fb.1.{now}.IwAR{i}",
                }
                for k in range(events)
            ],
        }
    ).encode()


def _cpu() -> float:
    used = resource.getrusage(resource.RUSAGE_SELF)
    return used.ru_utime + used.ru_stime


def _load(
    port: int,
    rate: float,
    seconds: float,
    events: int,
    connections: int,
    out: Any,
    kind: str = "threads",
) -> None:
    """Child process: send open loop, then report latencies (ms), failures and its own
    CPU time while sending (bodies are built before)."""
    total = int(rate * seconds)
    run = secrets.token_hex(4)
    bodies = [_batch(i, events, run) for i in range(total)]
    if kind == "asyncio":
        _load_asyncio(port, rate, total, bodies, connections, out)
        return
    cpu0 = _cpu()
    lock = threading.Lock()
    state = {"next": 0}
    latencies: list[float] = []
    errors: list[str] = []
    t0 = time.perf_counter() + 0.5
    headers = {"origin": ORIGIN, "user-agent": UA, "content-type": "text/plain"}

    def worker() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        while True:
            with lock:
                i = state["next"]
                state["next"] += 1
            if i >= total:
                break
            due = t0 + i / rate
            wait = due - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            try:
                conn.request("POST", "/collect", body=bodies[i], headers=headers)
                answer = conn.getresponse()
                answer.read()
                if answer.status != 200:
                    errors.append(str(answer.status))
            except Exception as exc:  # counted; the connection is renewed
                errors.append(type(exc).__name__)
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            latencies.append((time.perf_counter() - due) * 1000)

    threads = [threading.Thread(target=worker) for _ in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    out.send(
        {
            "latencies": latencies,
            "errors": errors,
            "elapsed": elapsed,
            "requests": total,
            "load_cpu_s": _cpu() - cpu0,
        }
    )


def _load_asyncio(
    port: int, rate: float, total: int, bodies: list[bytes], connections: int, out: Any
) -> None:
    """The same open loop as the threads above (`connections` keep-alive connections
    taking the next request in turn, each sent at its scheduled time or as soon as its
    connection is free, latency from the scheduled time), on one uvloop event loop with
    requests pre-built as bytes and responses parsed by hand: far less CPU a request
    than `http.client` in threads, which takes cores the daemon needs."""
    import asyncio

    try:
        import uvloop

        uvloop.install()
    except ImportError:  # plain asyncio: slower, still open loop
        pass
    head = (
        "POST /collect HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Origin: {ORIGIN}\r\nUser-Agent: {UA}\r\nContent-Type: text/plain\r\n"
    )
    requests = [f"{head}Content-Length: {len(b)}\r\n\r\n".encode() + b for b in bodies]
    latencies: list[float] = []
    errors: list[str] = []
    state = {"next": 0}

    async def worker(t0: float) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while True:
            i = state["next"]
            state["next"] += 1
            if i >= total:
                break
            due = t0 + i / rate
            wait = due - time.perf_counter()
            if wait > 0:
                await asyncio.sleep(wait)
            try:
                writer.write(requests[i])
                status_line = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in status_line.split(b"\r\n"):
                    if line[:15].lower() == b"content-length:":
                        length = int(line[15:])
                if length:
                    await reader.readexactly(length)
                if status_line[9:12] != b"200":
                    errors.append(status_line[9:12].decode())
            except Exception as exc:  # counted; the connection is renewed
                errors.append(type(exc).__name__)
                writer.close()
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            latencies.append((time.perf_counter() - due) * 1000)
        writer.close()

    async def main() -> float:
        t0 = time.perf_counter() + 0.5
        await asyncio.gather(*(worker(t0) for _ in range(connections)))
        return time.perf_counter() - t0

    cpu0 = _cpu()
    elapsed = asyncio.run(main())
    out.send(
        {
            "latencies": latencies,
            "errors": errors,
            "elapsed": elapsed,
            "requests": total,
            "load_cpu_s": _cpu() - cpu0,
        }
    )


def _metrics(port: int, names: tuple[str, ...]) -> dict[str, float]:
    """Unlabelled metrics from the daemon's /metrics (absent: NaN; older daemons)."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("GET", "/metrics")
    text = c.getresponse().read().decode()
    c.close()
    found = {name: float("nan") for name in names}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in found:
            found[name] = float(value)
    return found


WRITER_METRICS = ("leadsync_webtag_write_transactions", "leadsync_webtag_written_requests")


def _pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] if ordered else float("nan")


def run_once(
    store: str,
    rate: float,
    seconds: float,
    events: int,
    connections: int,
    profile: str | None = None,
    loadgen: str = "threads",
) -> dict[str, Any]:
    from sqlalchemy import create_engine, func, select

    from connector.store.tables import web_page_views

    with tempfile.TemporaryDirectory(prefix="leadsync-webtag-bench-") as tmp:
        config = Path(tmp) / "leadsync.yaml"
        config.write_text(CONFIG)
        if store == "postgres":
            _reset_pg()
            url = PG_URL
        else:
            url = f"sqlite:///{Path(tmp) / 'store.db'}"
        base = [sys.executable, "-m", "connector", "-c", str(config), "--store", url]
        subprocess.run([*base, "db", "upgrade"], check=True, capture_output=True)
        port = _free_port()
        log = open(Path(tmp) / "daemon.log", "wb")  # noqa: SIM115 - closed below
        daemon = subprocess.Popen([*base, "run", "--port", str(port)], stdout=log, stderr=log)
        try:
            deadline = time.time() + 60
            while time.time() < deadline:
                try:
                    c = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
                    c.request("GET", "/healthz")
                    if c.getresponse().status == 200:
                        break
                except OSError:
                    time.sleep(0.2)
            import psutil

            proc = psutil.Process(daemon.pid)
            writes_before = _metrics(port, WRITER_METRICS)
            cpu_before = sum(proc.cpu_times()[:2])
            ctx = mp.get_context("spawn")
            receive, send = ctx.Pipe(duplex=False)
            load = ctx.Process(
                target=_load, args=(port, rate, seconds, events, connections, send, loadgen)
            )
            load.start()
            spy = None
            if profile:  # py-spy samples the daemon while the load runs (its own CPU too)
                spy = subprocess.Popen(
                    [
                        shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy"),
                        "record",
                        "--pid",
                        str(daemon.pid),
                        "--threads",
                        "--format",
                        "speedscope" if profile.endswith(".json") else "flamegraph",
                        "-o",
                        profile,
                        "--duration",
                        str(int(seconds) + 1),
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            result = receive.recv()
            if spy is not None:
                spy.wait(60)
            load.join()
            # The daemon's own CPU: a figure the other processes on the box do not move
            # much, unlike the latencies.
            result["daemon_cpu_s"] = sum(proc.cpu_times()[:2]) - cpu_before
            result["load_average"] = os.getloadavg()[0]
            writes = _metrics(port, WRITER_METRICS)
            result["transactions"] = writes[WRITER_METRICS[0]] - writes_before[WRITER_METRICS[0]]
            result["written"] = writes[WRITER_METRICS[1]] - writes_before[WRITER_METRICS[1]]
        finally:
            daemon.terminate()
            daemon.wait(30)
            log.close()
        engine = create_engine(url)
        with engine.connect() as conn:
            stored = int(
                conn.execute(select(func.count()).select_from(web_page_views)).scalar_one()
            )
        engine.dispose()
        if store == "postgres":
            _drop_pg()
    lat = result["latencies"]
    sent_events = result["requests"] * events
    return {
        "store": store,
        "rate_req_s": rate,
        "events_per_request": events,
        "target_events_s": rate * events,
        "achieved_events_s": round(sent_events / result["elapsed"]),
        "p50_ms": round(_pct(lat, 50), 1),
        "p95_ms": round(_pct(lat, 95), 1),
        "p99_ms": round(_pct(lat, 99), 1),
        "errors": len(result["errors"]),
        "daemon_cpu_ms_per_request": round(result["daemon_cpu_s"] * 1000 / result["requests"], 2),
        "daemon_cpu_share_of_a_core": round(result["daemon_cpu_s"] / result["elapsed"], 2),
        # How well the writer grouped requests: at a low rate each request gets a
        # transaction of its own, and costs the daemon more CPU (BENCHMARKS.md).
        "requests_per_transaction": round(result["written"] / result["transactions"], 1)
        if result["transactions"]
        else None,
        "loadgen": loadgen,
        # The load process's own CPU: on two shared cores, what it takes the daemon lacks.
        "load_cpu_ms_per_request": round(result["load_cpu_s"] * 1000 / result["requests"], 2),
        "load_cpu_share_of_a_core": round(result["load_cpu_s"] / result["elapsed"], 2),
        "load_average_1m": round(result["load_average"], 1),
        "events_sent": sent_events,
        "events_stored": stored,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--rate", type=float, default=400, help="Requests per second.")
    parser.add_argument("--events", type=int, default=5, help="Page views per request.")
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--find-max", action="store_true")
    parser.add_argument("--py-spy", metavar="FILE", help="Profile the daemon (svg or .json).")
    parser.add_argument("--rates", default="200,400,600,800")
    parser.add_argument(
        "--loadgen",
        choices=["threads", "asyncio"],
        default="asyncio",
        help="threads: http.client, a thread per connection (the generator of the runs "
        "before 2026-12-01 19:00); asyncio: uvloop, pre-built requests (cheaper).",
    )
    args = parser.parse_args()
    if args.py_spy and not (
        shutil.which("py-spy") or (Path(sys.executable).parent / "py-spy").exists()
    ):
        parser.error("--py-spy needs py-spy (pip install py-spy)")
    print(machine())
    rates = [float(r) for r in args.rates.split(",")] if args.find_max else [args.rate]
    for rate in rates:
        found = run_once(
            args.store, rate, args.seconds, args.events, args.connections, args.py_spy, args.loadgen
        )
        print(json.dumps(found))
        if args.find_max and (found["p95_ms"] >= 50 or found["errors"]):
            break


if __name__ == "__main__":
    main()
