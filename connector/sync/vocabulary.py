"""A two-way system's words for statuses, both ways (the hub-and-spokes map).

Each two-way adapter embeds a `Vocabulary` in its config section:

```yaml
statuses:          # external value -> leadsync status name; several may map to one
  NEW: New
  OPEN: New
  CONNECTED: Qualified
write:             # leadsync status -> the ONE external value written
  New: NEW         # default: the first key mapped to the status
```

Status names are checked against the deployment's catalogue when the engine uses the
map (the catalogue is not known when the YAML is read), case- and accent-insensitively
like everywhere else.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from connector.statuses import Catalogue, UnknownStatusError, _fold


class Vocabulary(BaseModel):
    """How one two-way system names leadsync's statuses."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    statuses: dict[str, str] = Field(
        default_factory=dict,
        description="The system's value -> the leadsync status it means. Several values "
        "may map to one status. A value not listed is a field issue naming it, never a "
        "crash, and changes nothing.",
    )
    write: dict[str, str] = Field(
        default_factory=dict,
        description="leadsync status -> the one value written to the system for it. "
        "Default: the first value `statuses` maps to that status. A status with no "
        "value either way is not written to this system.",
    )

    @model_validator(mode="after")
    def _writes_known_values(self) -> Vocabulary:
        # A written value the map cannot read back would be taken for a person's edit
        # (and fought over) on the next pull.
        for status, value in self.write.items():
            if value not in self.statuses:
                raise ValueError(
                    f"write: {status}: {value!r} is not one of the values under `statuses`"
                )
        return self

    def to_status(self, value: str | None) -> str | None:
        """The leadsync status name `value` means; None when unmapped (or cleared)."""
        if value is None:
            return None
        found = self.statuses.get(value)
        if found is None:
            # Systems are not consistent about case ("open" in a webhook, "OPEN" in a
            # search result): an exact match first, then a folded one.
            folded = _fold(value)
            found = next((s for v, s in self.statuses.items() if _fold(v) == folded), None)
        return found

    def to_external(self, status: str) -> str | None:
        """The one value to write for `status` (a name); None: this system has no word
        for it, so nothing is written."""
        key = _fold(status)
        for name, value in self.write.items():
            if _fold(name) == key:
                return value
        return next((v for v, s in self.statuses.items() if _fold(s) == key), None)

    def check(self, catalogue: Catalogue) -> list[str]:
        """Status names this map uses that `catalogue` does not know (for `leadsync
        check` and the engine's field issues)."""
        unknown: list[str] = []
        for name in [*self.statuses.values(), *self.write]:
            try:
                catalogue.resolve(name)
            except UnknownStatusError:
                if name not in unknown:
                    unknown.append(name)
        return unknown
