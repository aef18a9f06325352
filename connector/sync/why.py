"""`leadsync contacts why ID`: a contact's current status explained from its history."""

from __future__ import annotations

from typing import Any

from connector.store import Store
from connector.store import contacts as contact_store


def reason(entry: dict[str, Any]) -> str:
    """One history entry in words: who proposed what, and the rule that decided."""
    rule, origin = entry.get("rule"), entry["origin"]
    to, before = entry["to"], entry["from"] or "nothing"
    said = f" (as {entry['value']!r})" if entry.get("value") and entry["value"] != to else ""
    if origin.startswith("source:"):
        who = f"source {origin.removeprefix('source:')}"
    elif origin == "person":
        who = "a person in leadsync"
    else:
        who = origin
    if entry.get("actor"):
        who += f" ({entry['actor']})"
    why = {
        "newest": "the newest change, by the system's own clock",
        "person": "a person may move a contact anywhere",
        "authoritative": f"{origin} is authoritative for {to}",
        "older": "it was not newer than the contact's last status change",
        "rank": "automation never lowers the rank",
        "terminal": f"{before} is terminal: only a person or an explicit rule leaves it",
        "status-deleted": f"{before} was deleted from the catalogue",
    }
    if rule and rule.startswith("authoritative:"):
        text = f"{rule.removeprefix('authoritative:')} is authoritative for it"
    elif rule:
        text = why.get(rule, rule)
    elif entry["from"] is None:
        text = "the contact was created with it"
    else:
        text = "the source moved it (automation never lowers the rank)"
    if (
        rule in ("rank", "terminal")
        and origin not in ("person",)
        and not origin.startswith("source:")
    ):
        # Only automation is held by these rules: say why a change made by hand in the
        # system may count as automation here (HubSpot's pull cannot tell who changed a
        # value; its webhooks can: README "HubSpot").
        text += (
            f" (counted as automation: {origin} did not report a person making this "
            "change; a value a system's pull reads without saying who set it never does)"
        )
    verb = "set" if entry.get("accepted", True) else "refused"
    return f"{entry['at']}: {who} {verb} {to}{said} over {before}: {text}"


def explain(store: Store, contact_id: int) -> dict[str, Any]:
    """The contact's status, the accepted change that set it, the proposals refused
    since, and every entry in words (`lines`)."""
    contact = contact_store.show_contact(store, contact_id)
    history = contact["status_history"]
    accepted = [h for h in history if h.get("accepted", True)]
    current = contact["status_name"]
    setter = next((h for h in reversed(accepted) if h["to"] == current), None)
    after = history.index(setter) + 1 if setter is not None else 0
    refused = [h for h in history[after:] if not h.get("accepted", True)]
    lines = [f"contact {contact['id']} is {current}"]
    if contact.get("merged_from"):
        lines[0] += f" (contact {contact['merged_from']} was merged into it)"
    if setter is not None:
        lines.append("because " + reason(setter))
    else:
        lines.append("no history entry set it (the contact predates status history)")
    if refused:
        lines.append("refused since:")
        lines += ["  " + reason(h) for h in refused]
    if len(history) > 1:
        lines.append("history:")
        lines += ["  " + reason(h) for h in history]
    return {
        "id": contact["id"],
        "status": current,
        "set_by": setter,
        "refused_since": refused,
        "history": history,
        "lines": lines,
    }
