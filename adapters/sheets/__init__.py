"""Google Sheets: the sales team's spreadsheet as a lead source whose Status column is
synced both ways. Today: `leadsync fake sheets`, a local emulator of the Sheets v4 values
API (adapters/sheets/fake.py). The reading job and the status sync are not built yet.
"""

from __future__ import annotations

from typing import Any

import typer


class SheetsPlugin:
    name = "sheets"
    config_key = "sheets"

    def register_cli(self, groups: dict[str, typer.Typer]) -> None:
        groups["fake"].command("sheets")(fake_sheets)


def fake_sheets(
    port: int = typer.Option(8790, help="Port to listen on."),
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
) -> None:
    """Run the local Google Sheets emulator (values get/batchGet/update/batchUpdate/append,
    render and input options, quotas, Google's errors) with a sample sales sheet."""
    from adapters.sheets.fake import serve

    serve(port, host=host)


plugin: Any = SheetsPlugin()

__all__ = ["SheetsPlugin", "plugin"]
