"""The `facebook:` section of leadsync.yaml."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from adapters.facebook.audience_config import AudiencesConfig
from adapters.facebook.conversions_config import ConversionsConfig


class PageConfig(BaseModel):
    """One Facebook Page whose lead forms are read."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(description="The Page id (digits).", pattern=r"^\d+$")
    access_token: SecretStr | None = Field(
        None,
        description="A Page access token (long-lived). Without it the section's "
        "system_user_token is used. Write `${ENV_NAME}` to read it from the environment.",
    )
    forms: list[str] | Literal["all"] = Field(
        "all", description="Form ids to read, or `all` (every ACTIVE form, found by discovery)."
    )
    mapping: Path | None = Field(
        None, description="Mapping file for this Page's forms (default: the section's mapping)."
    )
    form_mappings: dict[str, Path] = Field(
        default_factory=dict, description="Mapping file per form id, for forms that differ."
    )


class FacebookConfig(BaseModel):
    """Facebook Lead Ads: Pages, forms, tokens, polling and the leadgen webhook."""

    model_config = ConfigDict(extra="forbid")

    source: str = Field("facebook", description="Source name stored with every lead.")
    app_id: str | None = Field(None, description="The Meta app id.")
    app_secret: SecretStr = Field(
        description="The Meta app secret: signs every call (appsecret_proof) and verifies "
        "webhook signatures. Use `${ENV_NAME}` to keep it out of the file."
    )
    system_user_token: SecretStr | None = Field(
        None,
        description="A System User token that sees every Page of the business (does not "
        "expire: Meta's recommendation for servers). Page tokens override it per Page.",
    )
    verify_token: SecretStr | None = Field(
        None, description="The webhook verify token set in the app dashboard (GET handshake)."
    )
    api_version: str = Field("v26.0", pattern=r"^v\d+\.\d+$", description="Graph API version.")
    graph_url: str = Field(
        "https://graph.facebook.com",
        description="Graph API base URL; point it at `leadsync fake facebook` to try mappings.",
    )
    pages: list[PageConfig] = Field(description="The Pages to read.", min_length=1)
    mapping: Path | None = Field(
        None,
        description="Default mapping file (question key -> field). Without one, Meta's "
        "standard question keys map to contact fields and other questions become custom "
        "attributes of the same name.",
    )
    region: str | None = Field(
        None, pattern="^[A-Z]{2}$", description="Country for phone numbers without a code."
    )
    poll_every: float = Field(300, gt=0, description="Seconds between polls of each form.")
    lag: float = Field(
        900,
        ge=0,
        description="Each poll re-reads this many seconds before the last one's end: leads "
        "appear in the API a little after their created_time. Re-read leads cost nothing.",
    )
    first_poll_days: float = Field(
        90,
        gt=0,
        description="How far back the first poll of a new form reads (Meta keeps leads "
        "about 90 days).",
    )
    discover_every: float = Field(
        3600, gt=0, description="Seconds between form discoveries (new forms on a Page)."
    )
    page_size: int = Field(100, ge=1, le=500, description="Leads per Graph API page.")
    fetch_interests: bool = Field(
        True, description="Fetch each ad set's targeting interests once and keep them."
    )
    timeout: float = Field(30, gt=0, description="Seconds before a Graph API call times out.")
    app_usage_limit: float = Field(
        95,
        gt=0,
        le=100,
        description="Pause every Page of the app when any X-App-Usage metric reaches this "
        "percentage (Meta throttles the whole app at 100 with code 4).",
    )
    webhook_path: str = Field(
        "/webhooks/facebook", description="Path of the leadgen webhook on the daemon's server."
    )
    audiences: AudiencesConfig | None = Field(
        None,
        description="Custom audiences kept in sync with segments (needs system_user_token "
        "with ads_management on the ad account).",
    )
    conversions: ConversionsConfig | None = Field(
        None,
        description="Conversion Leads: every CRM stage of a contact from a Meta lead form "
        "sent to a dataset (needs system_user_token; see README: Conversion Leads).",
    )
