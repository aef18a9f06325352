from __future__ import annotations

import pytest

from connector.statuses import (
    DISQUALIFIED,
    LOST,
    NEGOTIATING,
    NEW,
    QUALIFIED,
    REACH,
    UNKNOWN,
    WON,
    Catalogue,
    Status,
    UnknownStatusError,
)


def test_canonical_ids_are_the_api() -> None:
    names = {s.id: s.name for s in Catalogue.default()}
    assert names == {
        0: "Unknown",
        10: "New",
        20: "Reach",
        25: "Disqualified",
        30: "Qualified",
        35: "Negotiating",
        60: "Won",
        70: "Lost",
    }


def test_resolve_by_name_id_case_and_accents() -> None:
    cat = Catalogue.default()
    assert cat.resolve("won").id == WON
    assert cat.resolve(" QUALIFIED ").id == QUALIFIED
    assert cat.resolve("35").id == NEGOTIATING
    assert cat.resolve(20).id == REACH
    with pytest.raises(UnknownStatusError, match="unknown status 'Maybe'"):
        cat.resolve("Maybe")


def test_custom_rename_delete() -> None:
    cat = Catalogue.build([Status(40, "Trial", 33)], renames={NEW: "Fresh"}, deleted=[LOST])
    assert cat.resolve("trial").id == 40
    assert cat.get(NEW).name == "Fresh"
    assert LOST not in cat and LOST in cat.deleted
    assert cat.name(LOST) == "deleted (70)"
    with pytest.raises(ValueError, match="Unknown"):
        Catalogue.build(deleted=[UNKNOWN])
    with pytest.raises(ValueError, match="twice"):
        Catalogue.build([Status(40, "won", 1)])


@pytest.mark.parametrize(
    ("current", "target", "allowed"),
    [
        (NEW, REACH, True),
        (REACH, QUALIFIED, True),
        (QUALIFIED, NEW, False),  # never backwards
        (WON, LOST, False),  # terminal
        (DISQUALIFIED, QUALIFIED, False),  # terminal: only a person revives it
        (UNKNOWN, NEW, True),
    ],
)
def test_automation_moves(current: int, target: int, allowed: bool) -> None:
    cat = Catalogue.default()
    assert cat.may_move(current, target) is allowed
    assert cat.may_move(current, target, by_person=True)
