"""`quarantine retry` loads and validates each mapping once per version of the file,
not once per record (2,000 records with a 500-column mapping took 7.5 minutes)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from adapters.csv import CsvPlugin
from adapters.csv.source import CsvSource
from connector import mapping as mapping_module
from connector.mapping import load_mapping
from connector.pipeline import Pipeline, retry_quarantine
from connector.store import Store


def test_retry_validates_the_mapping_once_and_again_after_an_edit(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mapping_path = tmp_path / "m.yaml"
    columns = "".join(f"  extra{i}: {{custom: extra{i}}}\n" for i in range(200))
    # A mapping mistake that leaves nothing to identify people by: every record is
    # quarantined whole (a bad status word alone would only be a field issue).
    mapping_path.write_text(
        "columns:\n  email: {custom: mail}\n  Status: {field: status}\n" + columns
    )
    header = "email,Status," + ",".join(f"extra{i}" for i in range(200))
    rows = "".join(f"p{i}@example.com,Wygrany," + "," * 199 + "\n" for i in range(40))
    path = tmp_path / "leads.csv"
    path.write_text(header + "\n" + rows)
    source = CsvSource(
        name="crm", paths=[path], mapping=load_mapping(mapping_path), mapping_path=mapping_path
    )
    assert Pipeline(store, workers=0).run(source).quarantined == 40  # nothing identifies

    loads: list[Path] = []
    real = mapping_module.validate_file

    def counted(p: Path, model: Any) -> Any:
        loads.append(p)
        return real(p, model)

    monkeypatch.setattr(mapping_module, "validate_file", counted)
    plugin = CsvPlugin()

    def remap(raw: dict[str, Any], context: dict[str, Any], ref: str) -> Any:
        return plugin.remap(raw, {**context, "catalogue": store.catalogue}, ref)

    again = retry_quarantine(store, remap)
    assert again.quarantined == 40 and len(loads) == 1

    mapping_path.write_text(
        "columns:\n  email: email\n  Status: {field: status, values: {Wygrany: Won}}\n" + columns
    )
    fixed = retry_quarantine(store, remap)
    assert fixed.created == 40 and len(loads) == 2  # the edited file, read once
