"""`facebook.conversions:`: the stage map and its checks."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from adapters.facebook.conversions_config import ConversionsConfig


def test_statuses_match_ignoring_case_and_unmapped_ones_send_nothing() -> None:
    config = ConversionsConfig.model_validate(
        {"dataset_id": "123", "stages": {"Qualified": "MQL", "won": "Converted"}}
    )
    assert config.stage_of("qualified") == "MQL" and config.stage_of("Won") == "Converted"
    assert config.stage_of("Reach") is None
    assert config.initial_stage == "Initial Lead from Facebook"
    assert config.lead_event_source == "leadsync" and config.test_event_code is None


@pytest.mark.parametrize(
    "bad",
    [
        {"dataset_id": "123", "stages": {"Won": "A", "WON": "B"}},  # listed twice
        {"dataset_id": "123", "stages": {"Won": " "}},  # an empty stage name
        {"dataset_id": "123", "stages": {}},  # nothing to send
        {"dataset_id": "pixel", "stages": {"Won": "A"}},  # not an id
        {"dataset_id": "123", "stages": {"Won": "A"}, "extra": 1},
    ],
)
def test_a_bad_section_is_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        ConversionsConfig.model_validate(bad)
