"""Every link in the README and docs/ resolves in a clone: files exist, anchors exist."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).parents[2]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def anchors(text: str) -> set[str]:
    """GitHub's anchors for a document's headings."""
    found = set()
    for heading in re.findall(r"^#+ (.+)$", text, re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        found.add(slug)
    return found


def test_every_link_resolves() -> None:
    checked = 0
    for document in DOCUMENTS:
        text = document.read_text(encoding="utf-8")
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+://", target) or target.startswith("mailto:"):
                continue
            path, _, anchor = target.partition("#")
            resolved = (document.parent / path).resolve() if path else document
            assert resolved.exists(), f"{document.name}: {target} does not exist"
            assert resolved.is_relative_to(ROOT), f"{document.name}: {target} leaves the repo"
            if anchor:
                assert anchor in anchors(resolved.read_text(encoding="utf-8")), target
            checked += 1
    assert checked >= 5


def test_no_path_outside_the_repository_is_pointed_at() -> None:
    for document in DOCUMENTS:
        assert "../shared" not in document.read_text(encoding="utf-8"), document.name


def test_the_two_commands_stay_at_the_top() -> None:
    blocks = re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert ".venv/bin/leadsync demo" in blocks[0]
    assert ".venv/bin/python -m pytest -q" in blocks[1]
