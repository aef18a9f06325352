"""The `facebook.audiences:` part of leadsync.yaml: custom audiences kept in sync with
segments, and their lookalikes."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

MatchKey = Literal[
    "EMAIL", "PHONE", "FN", "LN", "CT", "ST", "ZIP", "COUNTRY", "DOBY", "DOBM", "DOBD", "GEN",
    "EXTERN_ID",
]  # fmt: skip


class LookalikeConfig(BaseModel):
    """A lookalike of the audience, created once its seed has 100 members (Meta's floor)."""

    model_config = ConfigDict(extra="forbid")

    countries: list[str] = Field(
        min_length=1, description="ISO country codes the lookalike covers (e.g. [MY])."
    )
    ratio: float = Field(
        0.01, ge=0.01, le=0.20, description="Share of the countries' people: 0.01 to 0.20."
    )

    @field_validator("ratio")
    @classmethod
    def _step(cls, value: float) -> float:
        if abs(round(value * 100) - value * 100) > 1e-9:
            raise ValueError("ratio goes in steps of 0.01")
        return value


class AudienceConfig(BaseModel):
    """One customer-file custom audience, defined by a segment."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(
        description="The audience's name in Ads Manager (created when no audience of the "
        "ad account has it)."
    )
    where: str = Field(
        description="The segment that defines its members (the language of `contacts "
        "list --where`: `status in (Qualified, Won)`). Test leads are always left out."
    )
    keys: list[MatchKey] = Field(
        default_factory=lambda: list[MatchKey](["EMAIL", "PHONE"]),
        min_length=1,
        description="Match keys sent, hashed (SHA-256 of the core's normalised value; "
        "EXTERN_ID as is). A contact with none of them is not sent.",
    )
    lookalike: LookalikeConfig | None = Field(
        None, description="A lookalike of this audience (seed: qualified and won people)."
    )
    exclusion: bool = Field(
        False,
        description="The audience is meant to be excluded from ad sets (disqualified "
        "people); shown by `audiences plan`, set on the ad sets in Ads Manager.",
    )

    @field_validator("keys")
    @classmethod
    def _distinct(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("a match key is listed twice")
        return value


class AudiencesConfig(BaseModel):
    """The ad account the audiences live in, and the audiences."""

    model_config = ConfigDict(extra="forbid")

    ad_account_id: str = Field(
        pattern=r"^(act_)?\d+$", description="The ad account (act_<digits> or the digits)."
    )
    push_every: float = Field(3600, gt=0, description="Seconds between audience pushes.")
    sets: list[AudienceConfig] = Field(
        default_factory=list, description="The audiences, each from a segment."
    )

    @property
    def account(self) -> str:
        return (
            self.ad_account_id
            if self.ad_account_id.startswith("act_")
            else (f"act_{self.ad_account_id}")
        )
