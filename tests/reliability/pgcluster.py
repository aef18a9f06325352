"""A throwaway PostgreSQL cluster for tests that stop and start the server.

It is made with the machine's server binaries (`/usr/lib/postgresql/*/bin/`) in a
fresh temporary directory, listens on a free port of its own on 127.0.0.1 with its
socket in that directory, and is stopped and removed at the end. Every pg_ctl call
names that directory with -D, so the machine's own cluster(s) cannot be touched.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from tests.reliability.daemons import free_port

MACHINE_PORT = 5432  # the port a machine's packaged cluster listens on


def server_binaries() -> Path | None:
    """The newest installed PostgreSQL server's bin directory, or None."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: (
            int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0
        ),
    )
    return Path(found[-1]).parent if found else None


def why_unavailable() -> str | None:
    """Why a throwaway cluster cannot be made here, or None when it can."""
    if server_binaries() is None:
        return "no PostgreSQL server binaries under /usr/lib/postgresql/*/bin/"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no `postgres` user to run initdb as"
        if shutil.which("runuser") is None:
            return "running as root and runuser is not installed"
    return None


@dataclass
class Cluster:
    """One throwaway cluster: its directory, port and the URL of its `postgres` db."""

    bin: Path
    root: Path
    port: int

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        # initdb refuses to run as root (documented), so as root every server command
        # runs as the `postgres` OS user, which owns the temporary directory.
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        subprocess.run([*prefix, *args], check=True, capture_output=True, timeout=120)

    def pg_ctl(self, *args: str) -> None:
        """pg_ctl on this cluster's directory only."""
        assert self.port != MACHINE_PORT and self.data.is_relative_to(self.root)
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), *args)

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        log = str(self.root / "server.log")
        self.pg_ctl("-o", options, "-l", log, "-w", "-t", "60", "start")

    def stop(self, mode: str = "fast") -> None:
        self.pg_ctl("-m", mode, "-w", "-t", "60", "stop")


@contextmanager
def throwaway_cluster() -> Iterator[Cluster]:
    """A started cluster, stopped and removed afterwards (call why_unavailable first)."""
    bin_dir = server_binaries()
    assert bin_dir is not None
    root = Path(tempfile.mkdtemp(prefix="leadsync-pg-"))
    if os.geteuid() == 0:
        owner = pwd.getpwnam("postgres")
        os.chown(root, owner.pw_uid, owner.pw_gid)
    port = free_port()
    while port == MACHINE_PORT:  # never, with an ephemeral port; said for the reader
        port = free_port()
    cluster = Cluster(bin_dir, root, port)
    try:
        cluster._run(
            str(bin_dir / "initdb"), "-D", str(cluster.data), "-U", "postgres",
            "-A", "trust", "--no-sync", "-E", "UTF8",
        )  # fmt: skip
        cluster.start()
        yield cluster
    finally:
        if (cluster.data / "postmaster.pid").exists():
            with suppress(subprocess.CalledProcessError):
                cluster.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)
