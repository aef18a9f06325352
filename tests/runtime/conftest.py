"""Fixtures of the runtime tests that start `leadsync run` as real processes."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest


@pytest.fixture
def daemons() -> Iterator[list[subprocess.Popen[str]]]:
    """Processes a test starts (append them); any still running is killed at the end."""
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
