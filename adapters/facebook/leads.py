"""From a Graph lead object to a `Lead`: flatten the answers, map them, keep the context.

The default mapping covers Meta's standard question keys; any other question becomes a
custom attribute of the same name, so nothing a form asks is lost before an admin has
written a mapping. Consent checkboxes (`custom_disclaimer_responses`) are kept in the
lead's context and, as `consent:<checkbox_key>`, can be mapped like any answer.
Leads from Meta's testing tool are recognised by their dummy answers, ingested and
marked `is_test`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from connector.sdk import Catalogue, FieldMap, Lead, Mapping, Problem, mark_test_lead

# The Graph lead fields the source asks for: the answers plus the ad context.
LEAD_FIELDS = (
    "id,created_time,field_data,form_id,ad_id,ad_name,adset_id,adset_name,"
    "campaign_id,campaign_name,is_organic,platform,custom_disclaimer_responses"
)
_AD_CONTEXT = (
    "form_id",
    "ad_id",
    "ad_name",
    "adset_id",
    "adset_name",
    "campaign_id",
    "campaign_name",
    "platform",
    "is_organic",
)

# Meta's standard Instant Form question keys and where they go.
STANDARD_QUESTIONS = {
    "email": "email",
    "work_email": "email",
    "phone_number": "phone",
    "work_phone_number": "phone",
    "full_name": "full_name",
    "first_name": "first_name",
    "last_name": "last_name",
    "company_name": "company",
    "city": "city",
    "state": "state",
    "province": "state",
    "zip_code": "zip",
    "post_code": "zip",
    "country": "country",
    "date_of_birth": "date_of_birth",
    "gender": "gender",
}

DEFAULT_MAPPING = Mapping(
    columns={key: FieldMap(field=target) for key, target in STANDARD_QUESTIONS.items()},
    unmapped="custom",
)


def answers(raw: dict[str, Any]) -> tuple[dict[str, Any], list[Problem]]:
    """The lead's answers by question key (a list for several answers) and its consents."""
    row: dict[str, Any] = {}
    problems: list[Problem] = []
    field_data = raw.get("field_data")
    if not isinstance(field_data, list):
        return row, [Problem("field_data", "missing or not a list of answers")]
    for item in field_data:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            problems.append(Problem("field_data", "an answer without a question key"))
            continue
        values = item.get("values")
        if not isinstance(values, list):
            problems.append(
                Problem(item["name"], "answer values are not a list", str(values), "field")
            )
            continue
        values = [str(v) for v in values if v is not None]
        row[item["name"]] = values[0] if len(values) == 1 else values
    for consent in raw.get("custom_disclaimer_responses") or []:
        if isinstance(consent, dict) and consent.get("checkbox_key"):
            row[f"consent:{consent['checkbox_key']}"] = _checked(consent.get("is_checked"))
    return row, problems


def _checked(value: Any) -> bool:
    return value is True or str(value).strip().lower() in ("1", "true", "yes")


def created_at(raw: dict[str, Any]) -> datetime | None:
    """`created_time` as Graph writes it (`2024-01-01T00:00:00+0000`), or a unix int
    (webhook payloads)."""
    value = raw.get("created_time")
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(value, UTC)
    if isinstance(value, str):
        try:
            return datetime.strptime(value, "%Y-%m-%dT%H:%M:%S%z").astimezone(UTC)
        except ValueError:
            return None
    return None


def to_lead(
    raw: dict[str, Any],
    *,
    source: str,
    mapping: Mapping,
    catalogue: Catalogue,
    region: str | None,
    form_name: str | None = None,
    page_id: str | None = None,
    interests: list[str] | None = None,
) -> Lead:
    """Map one Graph lead object; what cannot be read becomes a Problem naming the field."""
    lead_id = str(raw.get("id") or "")
    row, problems = answers(raw)
    lead = mapping.apply(
        row, source=source, ref=f"lead {lead_id or '?'}", catalogue=catalogue, region=region
    )
    lead.problems[:0] = problems
    if lead.custom.get("is_test"):
        # Meta's testing tool answers test@fb.com for every test lead, or the admin's
        # own address: only the lead id tells test leads apart (§A).
        mark_test_lead(lead, lead_id)
    if not lead_id.isdigit():
        lead.problems.append(Problem("id", "not a Graph lead id", lead_id))
    lead.source_id = lead_id or None
    lead.raw = raw
    lead.occurred_at = created_at(raw)
    if lead.occurred_at is None:
        lead.problems.append(Problem("created_time", "unreadable", str(raw.get("created_time"))))
    context: dict[str, Any] = {k: raw[k] for k in _AD_CONTEXT if raw.get(k) is not None}
    if "is_organic" not in context:
        # No ad ids: an organic lead, an Ad Preview lead, or a token without
        # advertiser rights on the ad account (reference/external-apis.md §A).
        context["is_organic"] = not raw.get("ad_id")
    if form_name:
        context["form_name"] = form_name
    if page_id:
        context["page_id"] = page_id
    if lead.occurred_at is not None:
        context["created_time"] = lead.occurred_at.isoformat()
    if interests:
        context["interests"] = interests
    consents = {k[len("consent:") :]: v for k, v in row.items() if k.startswith("consent:")}
    if consents:
        context["consents"] = consents
    lead.context.update(context)
    return lead
