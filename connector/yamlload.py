"""Reading a YAML file an admin (or an attacker) wrote: bounded, strict, with line numbers.

Every YAML file leadsync reads (the config, mapping files) comes through `load`, which
guards what PyYAML alone does not:
- size: the file is refused above `MAX_BYTES` before it is parsed;
- encoding: the bytes must be UTF-8; an error names the byte offset and line;
- depth: nesting beyond `MAX_DEPTH` is refused while streaming the parser's events,
  before any recursive code (composer, constructor, env-var expansion) sees it;
- aliases: the tree an anchor/alias document expands to is counted while streaming
  (billion laughs), refused above `MAX_NODES`;
- duplicate keys: an error naming both lines (PyYAML silently keeps the last);
- keys: a mapping key written plainly as `NO`, `Yes`, `On`, `1` or `~` stays the
  string the admin wrote; YAML 1.1 would make it a boolean, number or null, so a
  column called `NO` (Norway, "number") would be lost in a mapping.
The C parser (libyaml) is used where PyYAML was built with it: 20-50x faster.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

MAX_BYTES = 4 << 20
"""Largest YAML file accepted (4 MiB: a 500-column mapping is about 50 KB)."""
MAX_DEPTH = 64
"""Deepest nesting accepted (a config needs fewer than 10 levels)."""
MAX_NODES = 200_000
"""Most nodes a document may hold once its aliases are expanded."""

Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

_STR = "tag:yaml.org,2002:str"
_MERGE = "tag:yaml.org,2002:merge"
# Tags the resolver gives a plain scalar that reads as something other than text.
_NOT_TEXT = {
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:null",
    "tag:yaml.org,2002:timestamp",
}


class YamlError(ValueError):
    """A YAML file that cannot be used; the message names the file (and line)."""


def load(path: Path) -> tuple[Any, yaml.Node | None]:
    """The data in the YAML file at `path` and its node tree (for line numbers in
    later errors). Raises YamlError for every way the file can be unusable."""
    try:
        with path.open("rb") as fh:
            raw = fh.read(MAX_BYTES + 1)
    except OSError as exc:
        raise YamlError(f"{path}: cannot read: {exc.strerror}") from None
    if len(raw) > MAX_BYTES:
        raise YamlError(f"{path}: larger than {MAX_BYTES >> 20} MiB; not a config file")
    return loads(raw, str(path))


def loads(raw: bytes, name: str) -> tuple[Any, yaml.Node | None]:
    """`load` for bytes already read; `name` is what errors call the file."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise YamlError(
            f"{name}:{line}: not UTF-8 (byte {exc.start} is 0x{raw[exc.start]:02x}); "
            "save the file as UTF-8"
        ) from None
    try:
        _check_shape(text, name)
        loader = Loader(text)
        try:
            root = loader.get_single_node()
            if root is None:
                return None, None
            _check_keys(root, name)
            return loader.construct_document(root), root
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        raise YamlError(_describe(exc, name)) from None


def _check_shape(text: str, name: str) -> None:
    """Depth and alias-expanded size, from the event stream (no recursion, no tree)."""
    depth = 0
    total = 0
    sizes: dict[str, int] = {}
    # Anchored collections still open: (anchor, nodes counted before it started).
    open_anchors: list[tuple[str | None, int]] = []
    for event in yaml.parse(text, Loader=Loader):
        if isinstance(event, yaml.AliasEvent):
            total += sizes.get(str(event.anchor), 1)
        elif isinstance(event, yaml.ScalarEvent):
            total += 1
            if event.anchor:
                sizes[event.anchor] = 1
        elif isinstance(event, yaml.CollectionStartEvent):
            total += 1
            depth += 1
            open_anchors.append((event.anchor, total - 1))
            if depth > MAX_DEPTH:
                raise YamlError(
                    f"{name}:{_line(event)}: nested deeper than {MAX_DEPTH} levels; "
                    "not a config file"
                )
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1
            anchor, before = open_anchors.pop()
            if anchor:
                sizes[anchor] = total - before
        else:
            continue
        if total > MAX_NODES:
            raise YamlError(
                f"{name}:{_line(event)}: expands to more than {MAX_NODES:,} values "
                "(aliases of aliases?); refused"
            )


def _check_keys(root: yaml.Node, name: str) -> None:
    """Duplicate keys are errors; plain keys YAML would not read as text stay text.
    Iterative, and each node once (aliases share nodes)."""
    seen: set[int] = set()
    todo = [root]
    while todo:
        node = todo.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.SequenceNode):
            todo.extend(node.value)
        elif isinstance(node, yaml.MappingNode):
            lines: dict[str, int] = {}
            for key, value in node.value:
                todo.append(value)
                if not isinstance(key, yaml.ScalarNode):
                    todo.append(key)
                    continue
                if key.tag == _MERGE:
                    continue
                if key.tag in _NOT_TEXT and not key.style:  # plain: None, or "" from libyaml
                    key.tag = _STR  # the source text, as written
                line = key.start_mark.line + 1
                if key.value in lines:
                    raise YamlError(
                        f"{name}:{line}: key {key.value!r} is given twice "
                        f"(lines {lines[key.value]} and {line}); keep one"
                    )
                lines[key.value] = line


def _line(event: yaml.Event) -> int:
    mark = event.start_mark
    return int(mark.line) + 1 if mark is not None else 0


def _describe(exc: yaml.YAMLError, name: str) -> str:
    mark = getattr(exc, "problem_mark", None)
    if mark is None and isinstance(exc, yaml.reader.ReaderError):
        return f"{name}: not valid YAML: {exc.reason} at character {exc.position}"
    where = f"{name}:{mark.line + 1}" if mark is not None else name
    return f"{where}: not valid YAML: {getattr(exc, 'problem', None) or exc}"
