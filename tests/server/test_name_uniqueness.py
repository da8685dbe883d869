"""Session names are unique per owner after Unicode NFKC normalisation and case folding (issue
21, "Data lifecycle"), over real HTTP: creates and renames. The name is shown as given; the
OpenAPI document says what a name may be; and a database written before this rule, with
sessions whose names are now one name, still starts."""

from __future__ import annotations

import asyncio
import re
import unicodedata
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from server_helpers import api_client

from watui.models import NAME_PATTERN, Session, name_key, utcnow
from watui.server import BackgroundServer
from watui.stores.sqlite import Store

CAFE_NFC = unicodedata.normalize("NFC", "café")
CAFE_NFD = unicodedata.normalize("NFD", "café")
FULLWIDTH_SHOP = "ｓｈｏｐ"


def create(client: httpx.Client, name: str) -> httpx.Response:
    return client.post("/v1/sessions", json={"name": name, "start": False})


def assert_taken(response: httpx.Response, holder: str, shown: str) -> None:
    assert response.status_code == 409, response.text
    error = response.json()["error"]
    assert error["code"] == "CONFLICT"
    assert error["details"] == {"session_id": holder}
    assert error["message"] == f"A session named {shown!r} already exists"


def test_the_forms_of_one_name_are_compared_as_one(client: httpx.Client) -> None:
    assert CAFE_NFC != CAFE_NFD and name_key(CAFE_NFC) == name_key(CAFE_NFD)
    cafe = create(client, CAFE_NFC)
    assert cafe.status_code == 201
    cafe_id = cafe.json()["session_id"]
    assert_taken(create(client, CAFE_NFD), cafe_id, CAFE_NFC)
    assert_taken(create(client, "CAFÉ"), cafe_id, CAFE_NFC)

    shop = create(client, "shop")
    shop_id = shop.json()["session_id"]
    assert_taken(create(client, FULLWIDTH_SHOP), shop_id, "shop")
    assert_taken(create(client, "Shop"), shop_id, "shop")
    assert_taken(create(client, "  SHOP "), shop_id, "shop")

    # Each name is kept and shown as it was given.
    fullwidth = create(client, "ｓｈｏｐ２")
    assert fullwidth.status_code == 201
    listed = {s["id"]: s["name"] for s in client.get("/v1/sessions").json()["sessions"]}
    assert listed[cafe_id] == CAFE_NFC and listed[shop_id] == "shop"
    assert listed[fullwidth.json()["session_id"]] == "ｓｈｏｐ２"
    assert_taken(create(client, "shop2"), fullwidth.json()["session_id"], "ｓｈｏｐ２")


def test_renames_are_compared_the_same_way(client: httpx.Client) -> None:
    shop_id = create(client, "shop").json()["session_id"]
    other_id = create(client, "other").json()["session_id"]

    for taken in ("Shop", FULLWIDTH_SHOP, "SHOP"):
        assert_taken(client.patch(f"/v1/sessions/{other_id}", json={"name": taken}), shop_id, "shop")
    assert client.get(f"/v1/sessions/{other_id}").json()["name"] == "other"

    # A session may change the form of its own name; it keeps holding the name.
    renamed = client.patch(f"/v1/sessions/{shop_id}", json={"name": "Shop"})
    assert renamed.status_code == 200 and renamed.json()["name"] == "Shop"
    assert_taken(create(client, "shop"), shop_id, "Shop")
    assert_taken(client.patch(f"/v1/sessions/{other_id}", json={"name": FULLWIDTH_SHOP}), shop_id, "Shop")

    # Renamed away, the name is free, in every form.
    assert client.patch(f"/v1/sessions/{shop_id}", json={"name": CAFE_NFD}).status_code == 200
    moved = client.patch(f"/v1/sessions/{other_id}", json={"name": FULLWIDTH_SHOP})
    assert moved.status_code == 200 and moved.json()["name"] == FULLWIDTH_SHOP
    assert_taken(create(client, CAFE_NFC), shop_id, CAFE_NFD)

    # Deleted, too.
    assert client.delete(f"/v1/sessions/{other_id}").status_code == 204
    assert create(client, "shop").status_code == 201


def test_names_are_unique_per_owner_only(server: BackgroundServer, client: httpx.Client) -> None:
    create(client, "shop")
    assert server.manager is not None
    store = server.manager.store
    _, key = server.call(lambda: store.create_api_key("bob"))
    with api_client(server.base_url, key) as bob:
        assert create(bob, "SHOP").status_code == 201
        assert create(bob, "shop").status_code == 409


NOT_PRINTABLE = ["shop\u200b", "a\x07b", "tab\tinside", "line\u2028sep", "\u00ad", "x\ue000", "   ",
                 "shop\U000e0001"]


def test_a_name_that_is_not_printable_is_422(client: httpx.Client) -> None:
    target = create(client, "target").json()["session_id"]
    for name in NOT_PRINTABLE:
        for response in (create(client, name), client.patch(f"/v1/sessions/{target}", json={"name": name})):
            assert response.status_code == 422, (name, response.text)
            error = response.json()["error"]
            assert error["code"] == "VALIDATION_ERROR"
            assert "printable" in error["message"], error
    assert [s["name"] for s in client.get("/v1/sessions").json()["sessions"]] == ["target"]


def test_openapi_says_what_a_name_may_be(client: httpx.Client) -> None:
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    for model in ("SessionCreate", "SessionUpdate"):
        name = schemas[model]["properties"]["name"]
        assert name["pattern"] == NAME_PATTERN
        assert "Printable" in name["description"] and "NFKC" in name["description"]
        assert "409 CONFLICT" in name["description"]
    pattern = re.compile(NAME_PATTERN)
    # The pattern refuses what the server refuses (in the Basic Multilingual Plane) and passes
    # what it accepts, surrounding white space included (the server trims it).
    for bad in [*NOT_PRINTABLE[:-1], ""]:  # (the last is outside the Basic Multilingual Plane)
        assert not pattern.search(bad), bad
    for good in ("shop", CAFE_NFC, CAFE_NFD, FULLWIDTH_SHOP, "two words", " \tpadded\u00a0", "日本語"):
        assert pattern.search(good), good


def test_every_character_the_pattern_refuses_is_refused_by_the_server() -> None:
    """So a client that checks names with the documented pattern never refuses one the server
    takes (the server may still refuse a few the pattern passes: see NAME_PATTERN)."""
    refused = re.compile(NAME_PATTERN)
    for cp in range(0x10000):
        c = chr(cp)
        if not refused.search(f"a{c}b"):
            assert not f"a{c}b".isprintable(), hex(cp)


def test_an_old_database_with_names_now_the_same_still_starts(
    start_server: Callable[..., BackgroundServer], tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    """Written before names were compared this way: three of alice's sessions have one name.
    The server starts; each keeps its name; the first holds it; the name passes on when the
    holder goes, and is free once none has it."""
    data_dir = tmp_path / "old"
    data_dir.mkdir(mode=0o700)

    async def write_old_database() -> str:
        store = await Store.open(data_dir / "watui.db", synchronous="NORMAL")
        try:
            _, key = await store.create_api_key("alice")
            now = utcnow()
            sessions = [Session(id=f"ses_old{i}", name=name, owner="alice", created_at=now, updated_at=now)
                        for i, name in enumerate(["shop", "Shop", FULLWIDTH_SHOP, CAFE_NFC, CAFE_NFD])]
            await store.write(sessions=sessions)
            return key
        finally:
            await store.close()

    key = asyncio.run(write_old_database())
    with caplog.at_level("WARNING", logger="watui.manager.registry"):
        server = start_server(data_dir=data_dir)
    warnings = [r.getMessage() for r in caplog.records if r.name == "watui.manager.registry"]
    assert len(warnings) == 2 and all("keep them" in w for w in warnings)
    with api_client(server.base_url, key) as alice:
        listed: dict[str, Any] = {s["id"]: s["name"] for s in alice.get("/v1/sessions").json()["sessions"]}
        assert listed == {"ses_old0": "shop", "ses_old1": "Shop", "ses_old2": FULLWIDTH_SHOP,
                          "ses_old3": CAFE_NFC, "ses_old4": CAFE_NFD}
        assert_taken(create(alice, "SHOP"), "ses_old0", "shop")
        # The others keep working: a change that leaves the name alone, or renames it away.
        assert alice.patch("/v1/sessions/ses_old1", json={"description": "kept"}).status_code == 200
        assert_taken(alice.patch("/v1/sessions/ses_old1", json={"name": "SHOP"}), "ses_old0", "shop")
        # The holder goes: the next one holds the name.
        assert alice.delete("/v1/sessions/ses_old0").status_code == 204
        assert_taken(create(alice, "shop"), "ses_old1", "Shop")
        assert alice.patch("/v1/sessions/ses_old1", json={"name": "shop one"}).status_code == 200
        assert_taken(create(alice, "shop"), "ses_old2", FULLWIDTH_SHOP)
        assert alice.delete("/v1/sessions/ses_old2").status_code == 204
        assert create(alice, "shop").status_code == 201
        assert_taken(create(alice, CAFE_NFD), "ses_old3", CAFE_NFC)
