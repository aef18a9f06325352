"""The CSV adapter's case for the contract suite (tests/contract/): a file of six rows
that grows on demand, and a missing file as the broken source."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from adapters.csv.source import CsvSource
from connector.sdk import LeadSource, Mapping, Store


class CsvCase:
    """A CSV file with a header and six people (see `connector.sdk.SourceCase`)."""

    config_model: type[BaseModel] = Mapping  # a CSV source is configured by its mapping file
    lag_records = 0  # the cursor is an exact row number: nothing is read twice

    def __init__(self, workdir: Path) -> None:
        self.path = workdir / "leads.csv"
        self.rows = ["Email,Phone,Name"]
        self.add(6)
        self.mapping = Mapping.model_validate(
            {"columns": {"Email": "email", "Phone": "phone", "Name": "full_name"}}
        )

    def _source(self, paths: list[Path]) -> CsvSource:
        return CsvSource("contract-csv", paths, self.mapping, None)

    def add(self, n: int) -> None:
        start = len(self.rows)
        self.rows += [
            f"p{i}@example.com,+4860070{i:04d},Person {i}" for i in range(start, start + n)
        ]
        self.path.write_text("\n".join(self.rows) + "\n", encoding="utf-8")

    def source(self, store: Store) -> LeadSource:
        return self._source([self.path])

    def broken(self, store: Store) -> tuple[LeadSource, str]:
        return self._source([self.path.with_name("missing.csv")]), "no such file"

    def order(self, cursor: Any) -> Any:
        return cursor["row"]

    def throttle(self) -> Callable[[], int] | None:
        return None  # a file has no API to throttle it

    def lift(self) -> None:
        """Nothing to lift: `throttle` set nothing."""

    def close(self) -> None:
        """Nothing was started."""
