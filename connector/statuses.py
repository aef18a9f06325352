"""The status catalogue: canonical statuses, custom ones from YAML, ranks.

The numeric ids are part of the API (DOMAIN.md): they appear in exports, value maps
and other systems' mappings, so they never change meaning. A deployment may rename a
status, add its own (e.g. Trial, Churned) or delete one; deleting moves its contacts
to Unknown (0), which the store does with a history entry (see store.statuses).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace

UNKNOWN = 0
NEW = 10
REACH = 20
DISQUALIFIED = 25
QUALIFIED = 30
NEGOTIATING = 35
WON = 60
LOST = 70


@dataclass(frozen=True, slots=True)
class Status:
    """One status a contact can be in.

    `rank` orders statuses along the funnel; automation never moves a contact to a
    lower rank. `terminal` statuses change only by a person or an explicit rule.
    """

    id: int
    name: str
    rank: int
    terminal: bool = False
    builtin: bool = False


CANONICAL: tuple[Status, ...] = (
    Status(UNKNOWN, "Unknown", 0, builtin=True),
    Status(NEW, "New", 10, builtin=True),
    Status(REACH, "Reach", 20, builtin=True),
    # Disqualified ranks above Reach: a person judged the lead, which is more than a
    # delivered message; it is terminal so automation cannot quietly revive it.
    Status(DISQUALIFIED, "Disqualified", 25, terminal=True, builtin=True),
    Status(QUALIFIED, "Qualified", 30, builtin=True),
    Status(NEGOTIATING, "Negotiating", 35, builtin=True),
    Status(WON, "Won", 60, terminal=True, builtin=True),
    Status(LOST, "Lost", 70, terminal=True, builtin=True),
)


class UnknownStatusError(KeyError):
    """A status name or id that the catalogue does not know."""

    def __str__(self) -> str:
        return str(self.args[0])


def _fold(text: str) -> str:
    # Case- and accent-insensitive lookup key, so "won", "WON" and "Wón" all resolve.
    decomposed = unicodedata.normalize("NFKD", text.strip().casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


class Catalogue:
    """The statuses of one deployment: canonical ones plus config changes."""

    def __init__(self, statuses: Iterable[Status], deleted: Iterable[int] = ()) -> None:
        self.deleted: frozenset[int] = frozenset(deleted)
        self._by_id: dict[int, Status] = {}
        self._by_name: dict[str, Status] = {}
        for status in statuses:
            if status.id in self._by_id:
                raise ValueError(f"status id {status.id} is defined twice")
            key = _fold(status.name)
            if key in self._by_name:
                raise ValueError(f"status name {status.name!r} is defined twice")
            self._by_id[status.id] = status
            self._by_name[key] = status
        if UNKNOWN not in self._by_id:
            raise ValueError("the Unknown status (0) cannot be removed")

    @classmethod
    def default(cls) -> Catalogue:
        return cls(CANONICAL)

    @classmethod
    def build(
        cls,
        custom: Iterable[Status] = (),
        renames: dict[int, str] | None = None,
        deleted: Iterable[int] = (),
    ) -> Catalogue:
        """The canonical catalogue with custom statuses added, renames and deletions."""
        gone = set(deleted)
        if UNKNOWN in gone:
            raise ValueError("the Unknown status (0) cannot be deleted")
        renames = renames or {}
        statuses = [
            replace(s, name=renames.get(s.id, s.name)) for s in CANONICAL if s.id not in gone
        ]
        statuses += [s for s in custom if s.id not in gone]
        for status_id in renames:
            if status_id not in {s.id for s in statuses}:
                raise ValueError(f"cannot rename status {status_id}: it does not exist")
        return cls(statuses, deleted=gone)

    def __iter__(self) -> Iterator[Status]:
        return iter(sorted(self._by_id.values(), key=lambda s: (s.rank, s.id)))

    def __contains__(self, status_id: object) -> bool:
        return status_id in self._by_id

    def get(self, status_id: int) -> Status:
        try:
            return self._by_id[status_id]
        except KeyError:
            raise UnknownStatusError(f"no status with id {status_id}") from None

    def resolve(self, value: str | int) -> Status:
        """A status from its id (int or digits) or its name, any case or accents."""
        if isinstance(value, int) or (isinstance(value, str) and value.strip().isdigit()):
            return self.get(int(value))
        found = self._by_name.get(_fold(value))
        if found is None:
            names = ", ".join(s.name for s in self)
            raise UnknownStatusError(f"unknown status {value!r} (known: {names})")
        return found

    def name(self, status_id: int | None) -> str:
        if status_id is None:
            return "Unknown"
        status = self._by_id.get(status_id)
        return status.name if status else f"deleted ({status_id})"

    @property
    def ids(self) -> frozenset[int]:
        return frozenset(self._by_id)

    def may_move(self, current: int, target: int, *, by_person: bool = False) -> bool:
        """Whether a contact in `current` may be moved to `target`.

        A person may move any contact anywhere. Automation (imports, pollers, bots)
        never lowers the rank and never leaves a terminal status: a spreadsheet
        re-imported a month later must not drag a Won customer back to New.
        Contacts in a status that no longer exists count as Unknown.
        """
        if by_person or current == target:
            return True
        now = self._by_id.get(current)
        if now is None:
            return True
        goal = self.get(target)
        return not now.terminal and goal.rank >= now.rank
