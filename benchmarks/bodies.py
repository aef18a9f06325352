"""Memory of a running daemon sent oversized request bodies (issue 10, item 5).

Starts `leadsync run` on a scratch SQLite store, sends N concurrent POSTs of SIZE MB
each (with Content-Length, and chunked), and prints the daemon's resident memory before
and its peak (VmHWM) after. Each POST must be answered 413 without the body being read.

    .venv/bin/python benchmarks/bodies.py [--posts 4] [--mb 150]
"""

from __future__ import annotations

import argparse
import http.client
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _memory(pid: int) -> dict[str, int]:
    found = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            found[key] = int(value.split()[0]) // 1024
    return found


def _post(port: int, mb: int, chunked: bool, out: list[object]) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    block = b"x" * (1 << 20)
    try:
        conn.putrequest("POST", "/webhooks/facebook")
        if chunked:
            conn.putheader("Transfer-Encoding", "chunked")
        else:
            conn.putheader("Content-Length", str(mb << 20))
        conn.endheaders()
        for _ in range(mb):
            if chunked:
                conn.send(b"%x\r\n%s\r\n" % (len(block), block))
            else:
                conn.send(block)
        if chunked:
            conn.send(b"0\r\n\r\n")
        out.append(conn.getresponse().status)
    except OSError as exc:  # the server answered and closed while we were still sending
        try:
            out.append(conn.getresponse().status)
        except Exception:
            out.append(f"closed ({type(exc).__name__})")
    finally:
        conn.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--posts", type=int, default=4)
    parser.add_argument("--mb", type=int, default=150)
    parser.add_argument(
        "--max-body", type=int, default=None, help="server.max_body (default: 1 MiB)"
    )
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp())
    port = _port()
    # A Facebook section, so the webhook route exists and reads (and checks) bodies; the
    # Graph URL goes nowhere (the poll fails, the server does not care).
    (work / "leadsync.yaml").write_text(
        "facebook:\n  app_secret: s3cret\n  graph_url: http://127.0.0.1:9\n"
        "  pages: [{id: '1', access_token: t}]\n"
        + (f"server: {{max_body: {args.max_body}}}\n" if args.max_body else "")
    )
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "connector",
            "--store",
            f"sqlite:///{work / 'b.db'}",
            "run",
            "--port",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=work,  # its ./leadsync.yaml; server limits are the defaults (1 MiB)
    )
    try:
        for _ in range(300):
            try:
                http.client.HTTPConnection("127.0.0.1", port, timeout=1).request("GET", "/healthz")
                break
            except OSError:
                time.sleep(0.1)
        time.sleep(1)
        before = _memory(proc.pid)
        for chunked in (False, True):
            results: list[object] = []
            threads = [
                threading.Thread(target=_post, args=(port, args.mb, chunked, results))
                for _ in range(args.posts)
            ]
            started = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            kind = "chunked" if chunked else "Content-Length"
            print(f"{args.posts} x {args.mb} MB ({kind}): {results} "
                  f"in {time.perf_counter() - started:.1f} s")  # fmt: skip
        after = _memory(proc.pid)
        print(f"daemon RSS before: {before['VmRSS']} MB; after: {after['VmRSS']} MB; "
              f"peak (VmHWM): {after['VmHWM']} MB")  # fmt: skip
    finally:
        proc.terminate()
        proc.wait(timeout=30)


if __name__ == "__main__":
    main()
