"""A YAML file into a pydantic model, with errors that point at the line.

`${NAME}` values come from the environment; an unknown key gets "did you mean"; a
pattern is said in words. Used for the config and for mapping files alike.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from connector import yamlload

M = TypeVar("M", bound=BaseModel)


class ConfigError(ValueError):
    """A config (or mapping) file that cannot be used; each line names file:line and field."""


def node_at(root: yaml.Node | None, loc: tuple[int | str, ...]) -> yaml.Node | None:
    """The YAML node at a pydantic error location, as deep as it exists."""
    node = root
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = [v for k, v in node.value if str(k.value) == str(part)]
            if not match:
                return node
            node = match[0]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if part >= len(node.value):
                return node
            node = node.value[part]
        else:
            return node
    return node


def parse_yaml(path: Path) -> tuple[Any, yaml.Node | None]:
    """The data in a YAML file and its node tree (for line numbers in errors)."""
    try:
        return yamlload.load(path)
    except yamlload.YamlError as exc:
        raise ConfigError(str(exc)) from None


_ENV_REF = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")


def expand_env(data: Any, root: yaml.Node | None, path: Path) -> Any:
    """Replace every value written `${NAME}` with the environment variable NAME, so a
    config file can be committed while tokens live in the service's environment. A
    variable that is not set is an error naming the file, line and variable."""
    missing: list[str] = []

    def walk(value: Any, loc: tuple[int | str, ...]) -> Any:
        if isinstance(value, dict):
            return {k: walk(v, (*loc, k)) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v, (*loc, i)) for i, v in enumerate(value)]
        match = _ENV_REF.match(value.strip()) if isinstance(value, str) else None
        if match is None:
            return value
        name = match.group(1)
        if name not in os.environ:
            node = node_at(root, loc)
            line = f":{node.start_mark.line + 1}" if node is not None else ""
            field = ".".join(str(p) for p in loc)
            missing.append(f"{path}{line}: {field}: environment variable {name} is not set")
            return value
        return os.environ[name]

    expanded = walk(data, ())
    if missing:
        raise ConfigError("\n".join(missing))
    return expanded


# Patterns of the config's fields, said in words: `'^[A-Z]{2}$'` helps nobody.
PATTERN_WORDS = {
    "^[A-Z]{2}$": "a two-letter country code in capitals (ISO 3166), e.g. MY, PL, VN, US",
    r"^\d+$": "digits only",
    r"^v\d+\.\d+$": "a version like v26.0",
}


def _fields_at(model: type[BaseModel], loc: tuple[int | str, ...]) -> list[str]:
    """The field names the model allows at `loc` (a mapping's location), if it knows."""
    from typing import get_args, get_origin

    current: Any = model
    for part in loc:
        current = _plain(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            info = current.model_fields.get(str(part))
            if info is None:
                return []
            current = info.annotation
        elif get_origin(current) in (dict, list) and get_args(current):
            current = get_args(current)[-1]  # a dict's values, a list's items
        else:
            return []
    current = _plain(current)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def _plain(annotation: Any) -> Any:
    """`X` from `X | None` and `Annotated[X, ...]`; a model or container among unions."""
    from typing import Annotated, get_args, get_origin

    while True:
        if get_origin(annotation) is Annotated:
            annotation = get_args(annotation)[0]
            continue
        args = [a for a in get_args(annotation) if a is not type(None)]
        if get_origin(annotation) in (dict, list) or not args:
            return annotation
        for arg in args:
            plain = _plain(arg)
            if (isinstance(plain, type) and issubclass(plain, BaseModel)) or get_origin(plain) in (
                dict,
                list,
            ):
                return plain
        return args[0] if len(args) == 1 else annotation


def explain(err: Any, model: type[BaseModel]) -> str:
    """One validation error in words: unknown keys get "did you mean", patterns are
    described instead of quoted."""
    import difflib

    if err["type"] == "extra_forbidden":
        loc = tuple(err["loc"])
        known = _fields_at(model, loc[:-1])
        close = difflib.get_close_matches(str(loc[-1]), known, n=1) if known else []
        hint = f"; did you mean `{close[0]}`?" if close else ""
        allowed = f" (known keys: {', '.join(known)})" if known and not close else ""
        return f"unknown key `{loc[-1]}`{hint}{allowed}"
    if err["type"] == "string_pattern_mismatch":
        pattern = str((err.get("ctx") or {}).get("pattern", ""))
        words = PATTERN_WORDS.get(pattern, f"text matching {pattern}")
        return f"should be {words}; got {err.get('input')!r}"
    return str(err["msg"])


def validate_file(path: Path, model: type[M]) -> M:
    """Load `path` into `model`; errors name file:line, the field path and the problem."""
    data, root = parse_yaml(path)
    data = expand_env(data, root, path)
    try:
        return model.model_validate(data if data is not None else {})
    except ValidationError as exc:
        found: list[tuple[int, str]] = []
        for err in exc.errors():
            loc = tuple(err["loc"])
            node = node_at(root, loc)
            number = node.start_mark.line + 1 if node is not None else 0
            line = f":{number}" if node is not None else ""
            field = ".".join(str(p) for p in loc) or "(top level)"
            found.append((number, f"{path}{line}: {field}: {explain(err, model)}"))
        # In the order of the file, so the admin reads them top to bottom.
        ordered = sorted(found, key=lambda f: f[0])
        raise ConfigError("\n".join(text for _, text in ordered)) from None
