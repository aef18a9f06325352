"""The emulator's control routes (/_fake/...): no token, for `serve`, benchmarks and
tests in another process to shape the world and read what happened."""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from adapters.facebook.fake.server import FakeGraph


def handle_control(graph: FakeGraph, method: str, parts: list[str], body: dict[str, Any]) -> Any:
    route = parts[0] if parts else ""
    if method == "GET" and route == "stats":
        return graph.stats()
    if method == "GET" and route == "world":
        return graph.world()
    if method == "POST" and route == "generate":
        ids = graph.generate_leads(
            body["form_id"],
            int(body["n"]),
            start=float(body["start"]),
            end=float(body["end"]),
            notify=bool(body.get("notify")),
            dup_rate=float(body.get("dup_rate", 0.2)),
            bad_rate=float(body.get("bad_rate", 0.03)),
            ads=body.get("ads"),
        )
        return {"count": len(ids), "ids": ids}
    if method == "POST" and route == "lead":
        return {"id": graph.add_lead(body.pop("form_id"), body.pop("field_data"), **body)}
    if method == "POST" and route == "faults":
        graph.set_faults(**body)
        return asdict(graph.faults)
    if method == "GET" and route == "faults":
        return asdict(graph.faults)
    if method == "POST" and route == "throttle":
        graph.throttle(
            body["scope_id"],
            float(body["seconds"]),
            code=int(body.get("code", 80005)),
            regain_minutes=int(body.get("regain_minutes", 1)),
        )
        return {"success": True}
    if method == "POST" and route == "budget":
        graph.set_budget(body["scope_id"], int(body["calls_per_hour"]))
        return {"success": True}
    if method == "POST" and route == "expire_token":
        graph.expire_token(body["token"], int(body.get("subcode", 463)))
        return {"success": True}
    if method == "POST" and route == "subscribe":
        graph.subscribe_webhook(body["url"], verify_token=body.get("verify_token", "verify-me"))
        for page_id in body.get("install", []):
            graph.install_app(page_id)
        return {"success": True}
    if method == "POST" and route == "flush":
        graph.flush_webhooks(float(body.get("timeout", 10)))
        return {"success": True}
    if method == "POST" and route == "reset_calls":
        graph.reset_calls()
        return {"success": True}
    raise KeyError(route)
