"""Property-based: schemathesis drives every documented operation against a live server, with
valid and invalid input, and checks each answer: no 5xx, a documented status, a body that
matches the documented schema. The SSE routes are tested elsewhere (they never end)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from server_helpers import api_client, fast_engine, keep_webhooks_offline, make_settings

from watui.server import BackgroundServer
from watui.server.openapi import NAME_FORMAT

# A session name: printable and not blank (what the document's custom format says).
schemathesis.openapi.format(
    NAME_FORMAT,
    st.text(min_size=1, max_size=64).filter(lambda s: bool(s.strip()) and s.strip().isprintable()),
)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    data_dir: Path = tmp_path_factory.mktemp("schemathesis")
    server = BackgroundServer(make_settings(data_dir), engine_factory=fast_engine).start()
    keep_webhooks_offline(server)
    with api_client(server.base_url, server.admin_key) as client:
        # A real session for the operations on /sessions/{session_id} to work on.
        target = client.post("/v1/sessions", json={"name": "target"}).json()["session_id"]
    yield {"server": server, "target": target, "headers": {"Authorization": f"Bearer {server.admin_key}"}}
    server.stop()


@pytest.fixture(scope="module")
def api_schema(live: dict[str, Any]) -> Any:
    # The key goes through the document's own security scheme, so schemathesis knows which
    # requests carry it (and can still send negative cases without it).
    config = schemathesis.Config.from_dict({
        "auth": {"openapi": {"ApiKey": {"bearer": live["server"].admin_key}}},
        # A negative case can be a body past the server's cap (a list past maxItems of long
        # ids): 413 PAYLOAD_TOO_LARGE refuses it as rightly as a 422 would.
        "checks": {"negative_data_rejection": {"expected-statuses": [
            "400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428", "429", "5xx"]}},
    })
    return schemathesis.openapi.from_url(f"{live['server'].base_url}/openapi.json", config=config)


schema = schemathesis.pytest.from_fixture("api_schema").exclude(path_regex=r"/(stream|events)$")


@schema.parametrize()
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_operation_conforms(case: Any, live: dict[str, Any]) -> None:
    positive = case._meta is None or case._meta.generation.mode is schemathesis.GenerationMode.POSITIVE
    if positive and case.path_parameters and "session_id" in case.path_parameters and case.method != "DELETE":
        # Aim valid requests at a session that exists; random ids only reach the 404s.
        case.path_parameters["session_id"] = live["target"]
    case.call_and_validate()


def test_openapi_documents_every_route_and_error_codes(live: dict[str, Any]) -> None:
    with api_client(live["server"].base_url) as client:
        document = client.get("/openapi.json").json()
        assert client.get("/docs").status_code == 200
    paths = document["paths"]
    expected = {
        ("post", "/v1/sessions"), ("get", "/v1/sessions"), ("get", "/v1/sessions/{session_id}"),
        ("patch", "/v1/sessions/{session_id}"), ("delete", "/v1/sessions/{session_id}"),
        ("post", "/v1/sessions/{session_id}/start"), ("post", "/v1/sessions/{session_id}/stop"),
        ("post", "/v1/sessions/{session_id}/restart"), ("post", "/v1/sessions/{session_id}/logout"),
        ("get", "/v1/sessions/{session_id}/qr"), ("post", "/v1/sessions/{session_id}/pair-code"),
        ("get", "/v1/sessions/{session_id}/stream"), ("get", "/v1/events"),
        ("post", "/v1/sessions/{session_id}/messages"), ("get", "/v1/sessions/{session_id}/messages"),
        ("post", "/v1/sessions/{session_id}/simulate"), ("get", "/v1/health"),
        ("get", "/v1/sessions/{session_id}/webhooks/deliveries"),
    }
    documented = {(method, path) for path, ops in paths.items() for method in ops}
    assert expected <= documented
    text = str(document)
    for code in ("UNAUTHORIZED", "SESSION_NOT_FOUND", "INVALID_TRANSITION", "SESSION_NOT_CONNECTED",
                 "QR_NOT_AVAILABLE", "SESSION_LIMIT_REACHED", "VALIDATION_ERROR", "PAYLOAD_TOO_LARGE"):
        assert code in text, code
    qr = paths["/v1/sessions/{session_id}/qr"]["get"]["responses"]
    assert "image/png" in qr["200"]["content"] and "409" in qr
