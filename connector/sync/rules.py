"""The conflict rules of two-way status sync: who may move a contact where, and when.

One pure function, `judge`, so the engine (observations from systems), a person's
set-status and the tests all decide the same way. The rules, in order:

1. `authoritative`: a system named for a status (`sync.authoritative: {hubspot: [Won]}`)
   decides it: its change into that status is accepted whatever the age or rank (the
   explicit rule that may leave a terminal status); nobody else moves a contact into
   or out of such a status ("authoritative:<system>").
2. `older`: a system's change no newer (by its own timestamp) than the contact's last
   status change loses. A person using leadsync acts now and skips this.
3. `rank` / `terminal`: automation never lowers the rank and never leaves a terminal
   status; a person (there or here) may.
4. otherwise the change is accepted: `newest` (a system) or `person` (leadsync's CLI).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from connector.config import SyncConfig
from connector.statuses import Catalogue, UnknownStatusError

PERSON = "person"
"""The origin of a change a person made through leadsync itself (the CLI)."""


@dataclass(frozen=True, slots=True)
class Rules:
    """SyncConfig resolved against a catalogue: status id -> the system that owns it."""

    catalogue: Catalogue
    owners: dict[int, str] = field(default_factory=dict)

    @classmethod
    def of(cls, catalogue: Catalogue, config: SyncConfig | None = None) -> Rules:
        owners: dict[int, str] = {}
        for system, names in (config or SyncConfig()).authoritative.items():
            for name in names:
                try:
                    status = catalogue.resolve(name)
                except UnknownStatusError:
                    continue  # `leadsync check` names it; an unknown status owns nothing
                owners[status.id] = system
        return cls(catalogue, owners)


def judge(
    rules: Rules,
    current: int,
    current_at: datetime | None,
    proposed: int,
    origin: str,
    by_person: bool,
    at: datetime,
) -> tuple[bool, str]:
    """Whether `origin` may move a contact from `current` (last changed at `current_at`)
    to `proposed` with a change made at `at`, and the rule that said so."""
    if proposed == current:
        return True, "unchanged"
    owner = rules.owners.get(proposed)
    if owner == origin:
        return True, "authoritative"
    for owned in (owner, rules.owners.get(current)):
        if owned is not None and owned != origin:
            return False, f"authoritative:{owned}"
    if origin != PERSON and current_at is not None and at <= current_at:
        return False, "older"
    if not rules.catalogue.may_move(current, proposed, by_person=by_person):
        now = rules.catalogue.get(current)
        return False, "terminal" if now.terminal else "rank"
    return True, PERSON if origin == PERSON else "newest"
