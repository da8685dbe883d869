"""``GET /metrics`` parsed with prometheus-client's own parser, and ``/docs`` with no network."""

from __future__ import annotations

import re
from collections.abc import Callable

import httpx
from prometheus_client.parser import text_string_to_metric_families
from server_helpers import api_client
from test_server_resume import link

from watui.server import BackgroundServer


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def test_metrics_in_prometheus_text_format(start_server: Callable[..., BackgroundServer]) -> None:
    server = start_server(metrics_token="scrape-me")
    bob = server.create_key("bob")
    with api_client(server.base_url, server.admin_key) as admin, api_client(server.base_url, bob) as client:
        link(admin, "linked")
        client.post("/v1/sessions", json={"name": "idle", "start": False})
        with admin.stream("GET", "/v1/events") as stream:
            assert stream.status_code == 200
            text = admin.get("/metrics").text
        figures = samples(text)
        assert figures[("watui_sessions", (("owner", "admin"), ("status", "connected")))] == 1
        assert figures[("watui_sessions", (("owner", "bob"), ("status", "stopped")))] == 1
        assert figures[("watui_sse_clients", ())] == 1
        assert figures[("watui_events_written_total", (("type", "connected"),))] == 1
        assert figures[("watui_events_written_total", (("type", "qr"),))] >= 1
        assert figures[("watui_store_commit_seconds_count", ())] > 0
        assert ("watui_event_loop_lag_seconds_count", ()) in figures
        assert figures[("watui_webhook_backlog", ())] == 0
        assert ("watui_webhook_attempts_total", (("outcome", "delivered"),)) in figures
        assert figures[("watui_engine_host_restarts_total", ())] == 0
        assert ("watui_session_reconnects_total", ()) in figures
        # Who may read them.
        assert client.get("/metrics").status_code == 403
        with api_client(server.base_url) as anonymous:
            assert anonymous.get("/metrics").status_code == 401
        with api_client(server.base_url, "scrape-me") as scraper:
            scraped = scraper.get("/metrics")
            assert scraped.status_code == 200 and scraped.headers["content-type"].startswith("text/plain")


def test_docs_load_from_the_server_itself(server: BackgroundServer) -> None:
    with httpx.Client(base_url=server.base_url, timeout=15) as client:
        page = client.get("/docs")
        assert page.status_code == 200
        assets = re.findall(r"""(?:src|href)=["']([^"']+)["']""", page.text)
        assert assets, page.text
        for asset in assets:
            assert asset.startswith("/"), f"{asset} would need the network"
            loaded = client.get(asset)
            assert loaded.status_code == 200 and len(loaded.content) > 100, asset
        assert "SwaggerUIBundle" in client.get("/docs/assets/swagger-ui-bundle.js").text
        assert client.get("/openapi.json").json()["openapi"].startswith("3.1")
