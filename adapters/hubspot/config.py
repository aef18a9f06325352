"""The `hubspot:` section of leadsync.yaml."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator


class HubSpotConfig(BaseModel):
    """HubSpot CRM: the private-app token, the status property and its vocabulary, the
    webhook secret, and the account's API limits."""

    model_config = ConfigDict(extra="forbid")

    token: SecretStr = Field(
        description="A private-app access token (Bearer) with crm.objects.contacts read "
        "and write scopes. Use `${ENV_NAME}` to keep it out of the file."
    )
    portal_id: int = Field(description="The HubSpot account (portal) id, as in the app's URLs.")
    api_url: str = Field(
        "https://api.hubapi.com",
        description="API base URL; point it at `leadsync fake hubspot` to try the sync.",
    )
    status_property: Literal["hs_lead_status", "lifecyclestage"] = Field(
        "hs_lead_status", description="The contact property that holds the lead's status."
    )
    vocabulary: dict[str, list[str]] = Field(
        default_factory=lambda: {
            "New": ["NEW"],
            "Contacted": ["ATTEMPTED_TO_CONTACT", "CONNECTED", "OPEN", "IN_PROGRESS"],
            "Qualified": ["OPEN_DEAL"],
            "Unqualified": ["UNQUALIFIED", "BAD_TIMING"],
        },
        description="Our status -> the HubSpot values that mean it. Read: each value maps "
        "to its status; written back: the first value of the list.",
    )
    webhook_secret: SecretStr | None = Field(
        None,
        description="The app's client secret: what X-HubSpot-Signature-v3 on webhook "
        "deliveries is verified with (adapters/hubspot/signature.py).",
    )
    webhook_path: str = Field(
        "/webhooks/hubspot",
        pattern=r"^/",
        description="Path of the daemon's route for the app's contact.propertyChange "
        "webhooks (subscribe the status property).",
    )
    webhook_url: str | None = Field(
        None,
        description="The webhook's public URL exactly as registered in the HubSpot app "
        "(https://host/webhooks/hubspot): HubSpot signs it, so behind a proxy or TLS "
        "terminator set it; unset, the URL the daemon received is used.",
    )
    poll_every: float = Field(
        60.0, gt=0, description="Seconds between searches for contacts modified in HubSpot."
    )
    lag: float = Field(
        120.0,
        ge=0,
        description="Seconds re-read before the pull's cursor: HubSpot's search index lags "
        "behind writes, so a contact modified just before a search may appear later.",
    )
    context_properties: dict[str, str] = Field(
        default_factory=dict,
        description="Lead context field (source, campaign, form...) -> HubSpot contact "
        "property it is written to on upsert; the property must exist in the portal.",
    )
    daily_limit: int = Field(
        250_000,
        gt=0,
        description="Calls per day of the account (Free/Starter 250,000; Pro 650,000; "
        "Enterprise 1,000,000), used until the API's headers say otherwise.",
    )
    search_rate: int = Field(
        5, gt=0, le=5, description="Searches per second per account (HubSpot's limit: 5)."
    )
    timeout: float = Field(30, gt=0, description="Seconds before an API call times out.")

    def to_hubspot(self, status: str) -> str | None:
        """The value written for our `status` (None: the status is not mapped)."""
        values = self.vocabulary.get(status)
        return values[0] if values else None

    def from_hubspot(self, value: str) -> str | None:
        """Our status for a HubSpot value (None: unmapped, a field issue for the caller)."""
        for status, values in self.vocabulary.items():
            if value in values:
                return status
        return None

    @model_validator(mode="after")
    def _one_status_per_value(self) -> HubSpotConfig:
        seen: dict[str, str] = {}
        for status, values in self.vocabulary.items():
            if not values:
                raise ValueError(f"vocabulary: {status} names no HubSpot value")
            for value in values:
                if value in seen:
                    raise ValueError(
                        f"vocabulary: {value!r} maps to both {seen[value]} and {status}"
                    )
                seen[value] = status
        return self
