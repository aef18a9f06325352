"""Installed adapters and the contract cases they offer, from the `leadsync.adapters`
entry points: the suite keeps no list of adapters."""

from __future__ import annotations

from connector.ports import plugins


def offering(member: str) -> list[str]:
    """Names of installed adapters whose plugin has `member` (e.g. "contract_source")."""
    return sorted(name for name, p in plugins().items() if callable(getattr(p, member, None)))


SOURCES = offering("contract_source")
STATUS_SYSTEMS = offering("contract_status")
