"""The checks a configuration must pass before the daemon uses it.

One function, `daemon_problems`, holds every check beyond the schema that the daemon
runs at start, on SIGHUP and before `run --once`, and `leadsync config validate` runs
the same one, so a file validate accepts is a file the daemon accepts: schedules name
jobs that exist, mapping files exist and validate, the status words of their value maps
resolve in this deployment's catalogue, and the catalogue itself builds.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from connector.ports import Job
from connector.statuses import Catalogue, UnknownStatusError
from connector.validation import ConfigError, node_at, parse_yaml

Loc = tuple[int | str, ...]


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a config, at a location in its YAML (field path)."""

    loc: Loc
    message: str


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """`; did you mean `x`?` for the closest choice, or "" when none is close."""
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f"; did you mean `{close[0]}`?" if close else ""


def schedule_problems(schedules: Iterable[str], jobs: Sequence[Job]) -> list[Problem]:
    """A schedule for a job that does not exist would silently do nothing: refuse it."""
    known = [j.id for j in jobs]
    found = []
    for job_id in schedules:
        if job_id not in known:
            listed = ", ".join(known) or "none (no source is configured)"
            found.append(
                Problem(
                    ("schedules", job_id),
                    f"no job is called `{job_id}`{did_you_mean(job_id, known)} "
                    f"(the jobs are: {listed})",
                )
            )
    return found


def _mapping_refs(value: Any, loc: Loc) -> Iterable[tuple[Loc, Path]]:
    """Every mapping file a config names: fields called `mapping` or `*_mappings`."""
    if not isinstance(value, BaseModel):
        return
    for name in type(value).model_fields:
        item = getattr(value, name)
        here = (*loc, name)
        if isinstance(item, Path) and "mapping" in name:
            yield here, item
        elif isinstance(item, dict) and "mapping" in name:
            yield from (((*here, k), v) for k, v in item.items() if isinstance(v, Path))
        elif isinstance(item, BaseModel):
            yield from _mapping_refs(item, here)
        elif isinstance(item, list):
            for index, element in enumerate(item):
                yield from _mapping_refs(element, (*here, index))


def mapping_problems(path: Path, catalogue: Catalogue, loc: Loc = ()) -> list[Problem]:
    """A mapping file that is missing, invalid, or maps to statuses that do not exist."""
    from connector.mapping import load_mapping

    if not path.exists():
        return [Problem(loc, f"mapping file {path} does not exist")]
    try:
        mapping = load_mapping(path)
    except ConfigError as exc:
        return [Problem(loc, f"mapping file {line}") for line in str(exc).splitlines()]
    found = []
    for column, target in mapping.fields().items():
        if target.field != "status":
            continue
        for word, status in target.values.items():
            try:
                catalogue.resolve(status)
            except UnknownStatusError:
                names = [s.name for s in catalogue]
                found.append(
                    Problem(
                        loc,
                        f"mapping file {path}: columns.{column}.values.{word}: no status is "
                        f"called `{status}`{did_you_mean(status, names)}",
                    )
                )
    return found


def daemon_problems(config: Any, jobs: Sequence[Job]) -> list[Problem]:
    """Every check the daemon runs on a config that passed its schema."""
    found: list[Problem] = []
    try:
        catalogue = config.catalogue() if hasattr(config, "catalogue") else Catalogue.default()
    except (ValueError, LookupError) as exc:
        found.append(Problem(("statuses",), str(exc)))
        catalogue = Catalogue.default()
    for loc, path in _mapping_refs(config, ()):
        found.extend(mapping_problems(path, catalogue, loc))
    found.extend(schedule_problems(getattr(config, "schedules", None) or {}, jobs))
    found.extend(segment_problems(config, catalogue))
    return found


def segment_problems(config: Any, catalogue: Catalogue) -> list[Problem]:
    """Views and segments whose filter names a status, field or value that means nothing
    in this deployment (the grammar was checked when the YAML was read)."""
    from datetime import UTC, datetime

    from connector.segments import Segment, SegmentError

    found = []
    for section in ("segments", "views"):
        for index, item in enumerate(getattr(config, section, None) or []):
            try:
                Segment.of(item.where, catalogue, datetime.now(UTC))
            except SegmentError as exc:
                found.append(Problem((section, index, "where"), f"{exc} in `{item.where}`"))
    return found


# Status names that are not stages of a funnel (Callio's "common mistakes"): activities,
# owners, categories. Each pattern with where that information belongs instead.
_ACTIVITY = re.compile(
    r"\b(call(ed|s)?|e-?mail(ed|s)?|sms|texted|messaged|voicemail|no answer|not reached|"
    r"\d+ times?|g[oọ]i|kh[oô]ng tr[aả] l[oờ]i|dzwon\w*|telefon\w*|hubungi)\b"
    r"|^(email|call|gọi điện thoại)\s*\d+$",
    re.IGNORECASE,
)
_OWNER = re.compile(r"\w+['’]s\b|\b(của|leads of|list of)\b", re.IGNORECASE)
_CATEGORY = re.compile(r"\b(19|20)\d{2}\b")


def status_warnings(config: Any) -> list[Problem]:
    """Custom or renamed statuses that look like activities ("Called 3 times"), owners
    ("Kevin's leads") or categories ("CES 2017"): a status should mark a meaningful step
    of the funnel, and these belong in views, the owner field and custom fields."""
    statuses = getattr(config, "statuses", None)
    if statuses is None:
        return []
    named: list[tuple[Loc, str]] = [
        (("statuses", "custom", i, "name"), s.name) for i, s in enumerate(statuses.custom)
    ]
    named += [(("statuses", "rename", k), v) for k, v in statuses.rename.items()]
    found = []
    for loc, name in named:
        if _ACTIVITY.search(name):
            advice = (
                "records an activity: the timeline keeps calls and messages; make a view "
                "instead (e.g. `last_activity > 7d and status = Reach`)"
            )
        elif _OWNER.search(name):
            advice = "names an owner: set the contact's owner and use a view `owner = NAME`"
        elif _CATEGORY.search(name):
            advice = (
                "names a category or event: keep it in a custom field (`event = 'CES 2017'`) "
                "and filter a view by it"
            )
        else:
            continue
        found.append(Problem(loc, f"status `{name}` {advice}"))
    return found


def render(problems: Sequence[Problem], path: Path | None) -> str:
    """One line per problem, `file:line: field: message`, in the file's order."""
    root = None
    if path is not None:
        try:
            _, root = parse_yaml(path)
        except ConfigError:
            root = None
    lines: list[tuple[int, str]] = []
    for problem in problems:
        node = node_at(root, problem.loc) if root is not None else None
        number = node.start_mark.line + 1 if node is not None else 0
        where = f"{path}:{number}: " if node is not None else (f"{path}: " if path else "")
        field = ".".join(str(p) for p in problem.loc) or "(top level)"
        lines.append((number, f"{where}{field}: {problem.message}"))
    return "\n".join(text for _, text in sorted(lines, key=lambda item: item[0]))


def require(config: Any, jobs: Sequence[Job], path: Path | str | None) -> None:
    """Raise ConfigError naming every problem, or return when there is none."""
    problems = daemon_problems(config, jobs)
    if problems:
        raise ConfigError(render(problems, Path(path) if path else None))


__all__ = [
    "Problem",
    "daemon_problems",
    "did_you_mean",
    "mapping_schema",
    "render",
    "require",
    "segment_problems",
    "status_warnings",
]


def mapping_schema() -> dict[str, Any]:
    """The mapping files' JSON Schema, with the shorthand the README uses
    (`E-mail: email` for `E-mail: {field: email}`) allowed as it is in the files."""
    from connector.mapping import TARGETS, Mapping

    schema = Mapping.model_json_schema()
    columns = schema["properties"]["columns"]
    full = columns.get("additionalProperties", {"$ref": "#/$defs/FieldMap"})
    columns["additionalProperties"] = {
        "anyOf": [
            {"type": "string", "enum": list(TARGETS), "description": "Shorthand for {field: X}."},
            full,
        ]
    }
    return schema
