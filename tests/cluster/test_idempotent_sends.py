"""A send retried with its ``Idempotency-Key`` after its node died is not sent again by the
node that took the session over (issue 20, section 2), with real ``watui serve`` nodes."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from .cluster_helpers import (
    Cluster,
    running_cluster,
    signal_node,
    wait_until,
)
from .test_multinode import create, link

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

TO = "+14155550123"


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[Cluster]:
    with running_cluster(tmp_path, ("n1", "n2")) as c:
        yield c


def test_a_retry_on_the_node_that_took_over_answers_the_first_send(pair: Cluster) -> None:
    c = pair
    session_id = create(c, "n1", "shop")
    link(c, "n1", session_id)
    path = f"/v1/sessions/{session_id}/messages"
    with c.client("n1") as client:
        first = client.post(path, json={"to": TO, "text": "order 17"}, headers={"Idempotency-Key": "o-17"})
        assert first.status_code == 201, first.text
    signal_node(c.nodes["n1"], signal.SIGKILL)  # the caller never saw the answer, say
    wait_until(lambda: (s := c.session("n2", session_id))["node_id"] == "n2" and s["status"] == "connected",
               "n2 to run the session", timeout=40)
    with c.client("n2") as client:
        again = client.post(path, json={"to": TO, "text": "order 17"}, headers={"Idempotency-Key": "o-17"})
        assert again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true", again.text
        assert again.json()["id"] == first.json()["id"]
        fresh = client.post(path, json={"to": TO, "text": "order 18"}, headers={"Idempotency-Key": "o-18"})
        assert fresh.status_code == 201 and "Idempotent-Replayed" not in fresh.headers
        texts = [m["text"] for m in client.get(path).json()["messages"] if m["direction"] == "out"]
    assert sorted(texts) == ["order 17", "order 18"]
