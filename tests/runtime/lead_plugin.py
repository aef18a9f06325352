"""A plugin for the fan-out reload test, loadable in a subprocess through
LEADSYNC_EXTRA_PLUGINS="tests.runtime.lead_plugin:plugin": POST /webhooks/lead/<email>
ingests a lead in the daemon process itself, so the contact it creates fans out through
the daemon's own change-feed wiring (a CLI process would connect its own)."""

from __future__ import annotations

from collections.abc import Sequence

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from connector.model import Lead
from connector.pipeline import Pipeline
from connector.ports import Runtime

SOURCE = "leadhook"


class LeadPlugin:
    name = "leadhook"

    def routes(self, runtime: Runtime) -> Sequence[BaseRoute]:
        def lead(request: Request) -> Response:
            email = str(request.path_params["email"])
            found = Lead(SOURCE, f"hook {email}", {"email": email}, source_id=email)
            stats = Pipeline(runtime.store, workers=0).ingest(SOURCE, [found])
            return PlainTextResponse(str(stats.created))

        return [Route("/webhooks/lead/{email}", lead, methods=["POST"])]


plugin = LeadPlugin()
