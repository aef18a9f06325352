"""The language as a person meets it: what parses, what each condition means, and
errors that name the column."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from connector import checks
from connector.config import ConfigError, LeadsyncConfig, validate_file
from connector.segments import Segment, SegmentError, parse
from connector.segments.tree import And, Not, Or, Term
from connector.statuses import Catalogue, Status

NOW = datetime(2026, 12, 1, tzinfo=UTC)
CATALOGUE = Catalogue.default()


def resolved(text: str) -> object:
    return Segment.of(text, CATALOGUE, NOW).expr


@pytest.mark.parametrize(
    ("text", "column", "says"),
    [
        ("status >= ", 11, "expected a value"),
        ("status >= Qualifed", 11, "unknown status 'Qualifed'"),
        ("score >= seventy", 10, "compares with numbers"),
        ("city = New York", 12, "quote a value that has spaces"),
        ("(score > 1", 11, "expected"),
        ("score > 1 and and", 15, "unexpected `and`"),
        ("audience = lookalike", 1, "audiences are not built yet"),
        ("created = 30d", 1, "created takes < <= > >="),
        ("created > soon", 11, "a duration (30d, 12h, 2w) or a date"),
        ("budget > yes", 10, "cannot be ordered"),
        ("budget < 30d", 10, "a duration compares only"),
        ("source > facebook", 1, "source takes = != in contains exists"),
        ("city", 1, "alone is not a condition"),
        ("created > 2026-13-45", 11, "not a date"),
        ("owner = kevin and foo.bar = 1", 19, "only custom.NAME is dotted"),
        ("score ~ 1", 7, "unexpected `~`"),
        (" ", 1, "empty"),
    ],
)
def test_errors_point_at_the_column(text: str, column: int, says: str) -> None:
    with pytest.raises(SegmentError) as caught:
        Segment.of(text, CATALOGUE, NOW) if text.strip() else parse(text)
    assert caught.value.column == column, str(caught.value)
    assert says in str(caught.value)
    # The pointed form shows the caret under that column.
    pointer = caught.value.pointed().splitlines()
    if text.strip():
        assert pointer[2].index("^") - 2 == column - 1


def test_status_by_name_id_set_and_rank() -> None:
    def ids(text: str) -> tuple[object, ...]:
        term = resolved(text)
        assert isinstance(term, Term)
        return term.values

    assert ids("status = qualified") == (30,)
    assert ids("status = 60") == (60,)
    assert ids("status in (New, 'Reach')") == (10, 20)
    # By rank: Qualified (30) and everything further along the funnel.
    assert ids("status >= Qualified") == (30, 35, 60, 70)
    assert ids("status < Reach") == (0, 10)
    custom = Catalogue.build([Status(101, "Trial", 40)])
    term = Segment.of("status > Negotiating", custom, NOW).expr
    assert isinstance(term, Term) and term.values == (60, 70, 101)


def test_durations_are_ages() -> None:
    recent = resolved("last_activity < 30d")
    assert isinstance(recent, Term)
    assert (recent.op, recent.values) == (">", (NOW - timedelta(days=30),))
    stale = resolved("in_status > 14d")
    assert isinstance(stale, Term) and stale.op == "<"
    dated = resolved("created >= 2026-11-01")
    assert isinstance(dated, Term)
    assert dated.values == (datetime(2026, 11, 1, tzinfo=UTC),)


def test_not_equal_and_not_in_are_negations_and_between_is_a_range() -> None:
    assert isinstance(resolved("city != Warsaw"), Not)
    assert isinstance(resolved("owner not in (kevin, liz)"), Not)
    between = resolved("score between 70 and 100")
    assert isinstance(between, And) and [t.op for t in between.items] == [">=", "<="]  # type: ignore[union-attr]


def test_precedence_not_binds_tighter_than_and_than_or() -> None:
    tree = parse("not a = 1 and b = 2 or c = 3")
    assert isinstance(tree, Or)
    first = tree.items[0]
    assert isinstance(first, And) and isinstance(first.items[0], Not)


def test_literals_read_by_kind() -> None:
    term = resolved("budget in (1500, '1500', yes, 2026-01-01)")
    assert isinstance(term, Term)
    assert term.kinds == ("number", "text", "bool", "text")
    assert term.values == (1500.0, "1500", True, "2026-01-01")
    clash = resolved("custom.city = Warsaw")
    assert isinstance(clash, Term) and clash.field.kind == "custom"
    standard = resolved("city = Warsaw")
    assert isinstance(standard, Term) and standard.field.kind == "text"


def _config(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "leadsync.yaml"
    path.write_text(body, encoding="utf-8")
    return path


def test_config_refuses_a_view_that_does_not_parse_with_line_and_column(tmp_path: Path) -> None:
    path = _config(
        tmp_path,
        "views:\n  - name: hot\n    where: status >= Qualified and\n    sort: -score\n",
    )
    with pytest.raises(ConfigError) as caught:
        validate_file(path, LeadsyncConfig)
    assert f"{path}:3: views.0.where" in str(caught.value)
    assert "column 24" in str(caught.value)


def test_config_refuses_bad_sort_columns_and_twice_named_views(tmp_path: Path) -> None:
    path = _config(
        tmp_path,
        "views:\n  - {name: a, where: score > 1, sort: -price}\n"
        "  - {name: a, where: score > 2, columns: [id, shoe]}\n",
    )
    with pytest.raises(ConfigError) as caught:
        validate_file(path, LeadsyncConfig)
    message = str(caught.value)
    assert "cannot sort by `price`" in message and "no column `shoe`" in message


def test_checks_resolve_views_in_the_deployments_catalogue(tmp_path: Path) -> None:
    path = _config(
        tmp_path,
        "statuses:\n  custom: [{id: 101, name: Trial, rank: 40}]\n"
        "views:\n  - {name: trials, where: status = Trial}\n"
        "segments:\n  - {name: typo, where: status = Trail and score > 1}\n",
    )
    config = validate_file(path, LeadsyncConfig)
    problems = checks.segment_problems(config, config.catalogue())
    assert [p.loc for p in problems] == [("segments", 0, "where")]
    rendered = checks.render(problems, path)
    assert f"{path}:6: segments.0.where: column 10: unknown status 'Trail'" in rendered
    assert config.view("trials").where == "status = Trial"
    assert config.view("typo").sort is None  # a segment serves as an unsorted view
    with pytest.raises(LookupError, match="no view or segment is called `nope`"):
        config.view("nope")


def test_statuses_that_are_activities_owners_or_categories_are_warned(tmp_path: Path) -> None:
    path = _config(
        tmp_path,
        "statuses:\n  custom:\n"
        "    - {id: 101, name: Called 3 times, rank: 15}\n"
        '    - {id: 102, name: "Kevin\'s leads", rank: 15}\n'
        "    - {id: 103, name: CES 2017, rank: 15}\n"
        "    - {id: 104, name: Trial, rank: 40}\n"
        "    - {id: 105, name: Email 2, rank: 15}\n"
        "  rename: {20: Khách hàng của Kevin}\n",
    )
    config = validate_file(path, LeadsyncConfig)
    warned = {p.loc: p.message for p in checks.status_warnings(config)}
    assert "activity" in warned[("statuses", "custom", 0, "name")]
    assert "owner" in warned[("statuses", "custom", 1, "name")]
    assert "custom field" in warned[("statuses", "custom", 2, "name")]
    assert "activity" in warned[("statuses", "custom", 4, "name")]
    assert "owner" in warned[("statuses", "rename", 20)]
    assert ("statuses", "custom", 3, "name") not in warned  # Trial is a real stage
