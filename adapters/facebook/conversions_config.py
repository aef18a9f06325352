"""The `facebook.conversions:` part of leadsync.yaml: Meta's Conversion Leads, every CRM
stage of a contact that came from a Meta lead form sent to a dataset (§C)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

DESTINATION = "meta-conversions"
"""The outbox destination (and `Destination.name`) of Conversion Leads events."""


class ConversionsConfig(BaseModel):
    """Where Conversion Leads events go and which statuses are which CRM stage."""

    model_config = ConfigDict(extra="forbid")

    dataset_id: str = Field(
        pattern=r"^\d+$",
        description="The dataset (pixel) id events are sent to (Events Manager); the "
        "section's system_user_token must be allowed to send to it.",
    )
    stages: dict[str, str] = Field(
        min_length=1,
        description="leadsync status -> the CRM stage name Meta is sent as `event_name` "
        '(e.g. Qualified: "Marketing Qualified Lead", Won: "Converted"). A status not '
        "listed sends nothing. Status names match the catalogue's, ignoring case.",
    )
    initial_stage: str = Field(
        "Initial Lead from Facebook",
        min_length=1,
        description="The stage sent when a contact is created from a Meta lead (Meta "
        "asks for every stage, the initial lead stage included, earlier stages first).",
    )
    lead_event_source: str = Field(
        "leadsync",
        min_length=1,
        description="The CRM's name, sent as `custom_data.lead_event_source`.",
    )
    test_event_code: str | None = Field(
        None,
        description="Send to Events Manager's Test Events tab under this code instead of "
        "the dataset's real events (for trying the setup; remove it afterwards).",
    )

    @field_validator("stages")
    @classmethod
    def _named(cls, value: dict[str, str]) -> dict[str, str]:
        folded = [k.casefold() for k in value]
        if len(set(folded)) != len(folded):
            raise ValueError("a status is listed twice (names ignore case)")
        if any(not v.strip() for v in value.values()):
            raise ValueError("a stage name is empty")
        return value

    def stage_of(self, status: str) -> str | None:
        """The stage a status is sent as, or None (not mapped: nothing is sent)."""
        wanted = status.casefold()
        return next((v for k, v in self.stages.items() if k.casefold() == wanted), None)
