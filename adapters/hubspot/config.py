"""The `hubspot:` section of leadsync.yaml."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from connector.sdk import Vocabulary

# HubSpot's default hs_lead_status options (§G) in leadsync's canonical statuses.
LEAD_STATUS_WORDS = Vocabulary(
    statuses={
        "NEW": "New",
        "OPEN": "New",
        "ATTEMPTED_TO_CONTACT": "Reach",
        "IN_PROGRESS": "Reach",
        "CONNECTED": "Qualified",
        "OPEN_DEAL": "Negotiating",
        "UNQUALIFIED": "Disqualified",
        "BAD_TIMING": "Disqualified",
    },
)
# HubSpot's default lifecycle stages (§G); `other` means nothing here: unmapped.
LIFECYCLE_WORDS = Vocabulary(
    statuses={
        "subscriber": "New",
        "lead": "New",
        "marketingqualifiedlead": "Reach",
        "salesqualifiedlead": "Qualified",
        "opportunity": "Negotiating",
        "customer": "Won",
        "evangelist": "Won",
    },
    write={"New": "lead"},
)


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
    vocabulary: Vocabulary = Field(
        default_factory=lambda: LEAD_STATUS_WORDS,
        description="HubSpot's values of the status property <-> leadsync statuses "
        "(`statuses`: value -> status, several may map to one; `write`: status -> the one "
        "value written). Default: HubSpot's default hs_lead_status options, or its "
        "default lifecycle stages when status_property is lifecyclestage.",
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

    @model_validator(mode="before")
    @classmethod
    def _default_words(cls, data: Any) -> Any:
        # The default vocabulary follows the property: lifecycle stages are not lead
        # statuses, and a map of the wrong property's words would match nothing.
        if isinstance(data, dict) and data.get("vocabulary") is None:
            data = {k: v for k, v in data.items() if k != "vocabulary"}
            if data.get("status_property") == "lifecyclestage":
                data["vocabulary"] = LIFECYCLE_WORDS
        return data
