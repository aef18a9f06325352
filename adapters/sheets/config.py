"""The `sheets:` section of leadsync.yaml: the sales team's spreadsheets."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator


class WriteBack(BaseModel):
    """Columns leadsync writes into the sheet (header names; each optional)."""

    model_config = ConfigDict(extra="forbid")

    score: str | None = Field(None, description="Column that shows the contact's score.")
    owner: str | None = Field(None, description="Column that shows the contact's owner.")
    contact_id: str | None = Field(None, description="Column that shows the leadsync contact id.")
    error: str | None = Field(
        None,
        description="Column where leadsync tells the rep what is wrong with the row (a "
        "value it left out, and why); cleared once the row is fine.",
    )


class SheetConfig(BaseModel):
    """One worksheet of leads."""

    model_config = ConfigDict(extra="forbid")

    source: str = Field(description="Source name stored with this sheet's leads (unique).")
    spreadsheet_id: str = Field(
        description="The id in the sheet's URL: docs.google.com/spreadsheets/d/<id>/edit."
    )
    worksheet: str = Field("Sheet1", description="The tab's title.")
    header_row: int = Field(
        1, ge=1, description="The row holding the column names (rows above it are titles)."
    )
    mapping: Path | None = Field(
        None,
        description="Mapping file (the language of `import csv`: header -> field). Without "
        "one, the common headers are recognised as `import csv` does.",
    )
    key_column: str = Field(
        "leadsync id",
        description="Column that identifies a row. Rows move (sorting, deleting), so they "
        "are never identified by position; where a row has no key, leadsync writes one.",
    )
    status_column: str | None = Field(
        None, description="Column the reps keep the status in (synced both ways)."
    )
    statuses: dict[str, str] = Field(
        default_factory=dict,
        description="The status column's words -> leadsync statuses (`Baru: New`, "
        "`Zakwalifikowany: Qualified`); several words may name one status.",
    )
    write: dict[str, str] = Field(
        default_factory=dict,
        description="leadsync status -> the one word written back (default: the first "
        "word `statuses` maps to it, else the status's own name).",
    )
    write_back: WriteBack = Field(
        default_factory=WriteBack, description="Columns leadsync writes into the sheet."
    )
    region: str | None = Field(
        None, pattern="^[A-Z]{2}$", description="Country for phone numbers with no code."
    )
    poll_every: float = Field(60, gt=0, description="Seconds between reads of the worksheet.")

    @model_validator(mode="after")
    def _key_is_not_mapped_twice(self) -> SheetConfig:
        if self.status_column is not None and self.status_column == self.key_column:
            raise ValueError("status_column and key_column must be different columns")
        return self


class SheetsConfig(BaseModel):
    """Google Sheets: the service account and the sheets it reads."""

    model_config = ConfigDict(extra="forbid")

    credentials_file: Path | None = Field(
        None,
        description="The service account's JSON key file. Share each sheet with the "
        "account's email (client_email in the file), as an editor to allow write-back.",
    )
    credentials_json: SecretStr | None = Field(
        None, description="The same key as JSON text, e.g. `${GOOGLE_SERVICE_ACCOUNT_JSON}`."
    )
    api_url: str = Field(
        "https://sheets.googleapis.com",
        description="Sheets API base URL; point it at `leadsync fake sheets` to try it.",
    )
    token: SecretStr | None = Field(
        None,
        description="A bearer token used instead of a service account (the emulator's, or "
        "a short-lived OAuth token for a one-off run).",
    )
    sheets: list[SheetConfig] = Field(description="The worksheets to read.", min_length=1)

    @model_validator(mode="after")
    def _credentials(self) -> SheetsConfig:
        given = [self.credentials_file, self.credentials_json, self.token]
        if sum(x is not None for x in given) != 1:
            raise ValueError(
                "give exactly one of credentials_file, credentials_json and token "
                "(a service account key, or a bearer token for the emulator)"
            )
        names = [s.source for s in self.sheets]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"sheet source names must be unique: {twice}")
        return self
