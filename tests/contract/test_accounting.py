"""Accounting: every row read has exactly one outcome, so an import's summary adds up:
rows = created + updated + merged + unchanged + folded + quarantined + skipped."""

from __future__ import annotations

import csv
import itertools
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.csv.source import CsvSource
from connector.mapping import load_mapping
from connector.pipeline import IngestStats, Pipeline
from connector.store import Store

SAMPLES = Path(__file__).resolve().parents[2] / "adapters" / "csv" / "samples"
HEADER = [
    "First name",
    "Last name",
    "E-mail",
    "Telefon",
    "Miasto / City",
    "Kraj / Country",
    "Status",
    "Budżet",
    "Zgoda marketingowa",
    "Deal value (USD)",
]
_files = itertools.count()


def import_file(store: Store, path: Path, batch_size: int = 2000) -> IngestStats:
    mapping = SAMPLES / "leads.yaml"
    source = CsvSource(
        name="customers-csv",
        paths=[path],
        mapping=load_mapping(mapping),
        mapping_path=mapping,
        catalogue=store.catalogue,
    )
    source.check()
    return Pipeline(store, workers=0, batch_size=batch_size).run(source)


def assert_adds_up(stats: IngestStats, rows: int) -> None:
    assert stats.rows == rows
    assert stats.outcomes() == stats.rows, stats.as_dict()


def test_the_bundled_sample_adds_up(store: Store) -> None:
    path = SAMPLES / "leads.csv"
    data_rows = path.read_text(encoding="utf-8").count("\n") - 1
    first = import_file(store, path)
    assert_adds_up(first, data_rows)
    assert first.skipped == 1 and first.folded > 0  # rows the old summary counted nowhere
    copy = Path(tempfile.mkdtemp()) / "copy.csv"
    copy.write_bytes(path.read_bytes())
    assert_adds_up(import_file(store, copy), data_rows)


names = st.sampled_from(
    [
        ("Anna", "Nowak"),
        ("Jan", "Kowalski"),
        ("Małgorzata", "Wójcik"),
        ("MALGORZATA", "WOJCIK"),
        ("", ""),
        ("Siti", ""),
        ("", "Tan"),
    ]
)
row = st.one_of(
    st.just([""] * len(HEADER)),  # blank: skipped
    st.builds(
        lambda name, email, phone, city, status, budget, deal: [
            *name,
            email,
            phone,
            city,
            "PL",
            status,
            budget,
            "tak",
            deal,
        ],
        names,
        st.sampled_from(["", "a@x.pl", "b@x.pl", "A@X.PL", "c@x.pl", "not-an-email"]),
        st.sampled_from(["", "600 700 800", "+48 600 700 800", "22 628 12 34", "12345"]),
        st.sampled_from(["", "Kraków", "Gdańsk"]),
        st.sampled_from(["Nowy", "Wygrany", "Przegrany", "Zakwalifikowany", "Nieznany"]),
        st.sampled_from(["", "3 200", "a lot"]),
        st.sampled_from(["", "12,000", "1,500.00", "1.5.5"]),
    ),
)


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(rows=st.lists(row, min_size=1, max_size=30), batch_size=st.integers(1, 8))
def test_a_fuzzed_file_adds_up(store: Store, rows: list[list[str]], batch_size: int) -> None:
    # The store keeps what earlier examples wrote: the sum must hold whatever it holds.
    path = Path(tempfile.mkdtemp()) / f"fuzz{next(_files)}.csv"
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(HEADER)
        writer.writerows(rows)
    assert_adds_up(import_file(store, path, batch_size), len(rows))
