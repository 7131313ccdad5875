"""The Meilisearch engine against a real local HTTP server answering with Meilisearch's recorded API.

A whole stack runs with ``search.engine: meilisearch`` pointed at ``tests/meili_stub.py``. What this
verifies: the index setup, the indexer (a durable JetStream consumer) turning sends, edits and deletes
into the documented document requests within a second, the translation of a query into a search request
(``q``, the filter expression, sorting, highlight tags), the answer's shape and escaping, membership
decided by PostgreSQL before Meilisearch is asked, a failing Meilisearch answered as 503, and the
``reindex`` command. Ranking and matching by a real Meilisearch are covered by tests/e2e/test_search.py
when ``MEILI_URL`` is set.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from fechatter_server.search.meili import INDEX_SETTINGS
from tests.conftest import create_chat, team
from tests.meili_stub import MeiliStub
from tests.sse import send
from tests.stackutil import REPO_ROOT, RunningStack, make_stack

pytestmark = pytest.mark.e2e

KEY = "meili-master-key-for-tests"


@pytest.fixture(scope="module")
def meili() -> Iterator[MeiliStub]:
    stub = MeiliStub(KEY).start()
    try:
        yield stub
    finally:
        stub.stop()


@pytest.fixture(scope="module")
def meili_stack(meili: MeiliStub, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    running = make_stack(
        tmp_path_factory.mktemp("meili") / "data",
        SEARCH_ENGINE="meilisearch",
        MEILI_URL=meili.url,
        MEILI_MASTER_KEY=KEY,
    )
    try:
        running.start()
        yield running
    finally:
        running.stop()


@pytest.fixture
async def mc(meili_stack: RunningStack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=meili_stack.url, timeout=15) as http:
        yield http


async def wait_for(stub: MeiliStub, method: str, path: str, predicate: Any, timeout: float = 1.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        for request in stub.received(method, path):
            if predicate(request):
                return request
        if time.monotonic() > deadline:
            raise AssertionError(f"Meilisearch got no matching {method} {path} within {timeout} s")
        await asyncio.sleep(0.02)


def documents_with(message_id: int) -> Any:
    def check(request: dict) -> bool:
        return any(doc.get("id") == message_id for doc in request["body"])

    return check


async def test_index_setup_and_indexer_follow_sends_edits_and_deletes(
    mc: httpx.AsyncClient, meili: MeiliStub
) -> None:
    created = await wait_for(meili, "POST", "/indexes", lambda r: True, timeout=10)
    assert created["body"] == {"uid": "messages", "primaryKey": "id"}
    assert created["headers"].get("Authorization") == f"Bearer {KEY}"
    settings = await wait_for(meili, "PATCH", "/indexes/messages/settings", lambda r: True, timeout=10)
    assert settings["body"] == INDEX_SETTINGS
    assert "chat_id" in settings["body"]["filterableAttributes"]

    alice, bob = await team(mc, 2)
    chat = await create_chat(mc, alice, [bob])
    sent = await send(mc, alice, chat["id"], "ship the <release> today")
    assert sent.status_code == 201
    message = sent.json()["data"]
    started = time.monotonic()
    request = await wait_for(meili, "POST", "/indexes/messages/documents", documents_with(message["id"]))
    assert time.monotonic() - started < 1.0
    assert request["query"] == "primaryKey=id"
    doc = next(d for d in request["body"] if d["id"] == message["id"])
    assert doc == {
        "id": message["id"],
        "chat_id": chat["id"],
        "workspace_id": alice.workspace_id,
        "sender_id": alice.id,
        "content": "ship the <release> today",
        "created_at": doc["created_at"],
        "has_file": False,
        "deleted": False,
    }
    assert abs(doc["created_at"] - time.time()) < 60

    edited = await mc.patch(
        f"/api/chat/{chat['id']}/messages/{message['id']}",
        headers=alice.auth,
        json={"content": "ship tomorrow"},
    )
    assert edited.status_code == 200
    await wait_for(
        meili,
        "POST",
        "/indexes/messages/documents",
        lambda r: any(d["id"] == message["id"] and d["content"] == "ship tomorrow" for d in r["body"]),
    )
    deleted = await mc.delete(f"/api/chat/{chat['id']}/messages/{message['id']}", headers=alice.auth)
    assert deleted.status_code == 200
    await wait_for(
        meili, "POST", "/indexes/messages/documents/delete-batch", lambda r: message["id"] in r["body"]
    )


async def test_query_translation_and_answer(mc: httpx.AsyncClient, meili: MeiliStub) -> None:
    alice, bob = await team(mc, 2)
    chat = await create_chat(mc, alice, [bob])
    other = await create_chat(mc, alice, [bob], name="other")
    first = (await send(mc, alice, chat["id"], 'rollout <b>plan</b> & "notes"')).json()["data"]
    second = (await send(mc, bob, chat["id"], "rollout later")).json()["data"]
    before = len(meili.received("POST", "/indexes/messages/search"))

    def hit(message: dict, formatted: str) -> dict:
        return {"id": message["id"], "content": message["content"], "_formatted": {"content": formatted}}

    async def search(q: str, **params: Any) -> httpx.Response:
        return await mc.get("/api/search/messages", headers=bob.auth, params={"q": q, **params})

    response = await search(f'rollout "the plan" from:{alice.id} after:2020-01-01 before:2999-01-01 has:file')
    assert response.status_code == 200, response.text
    requests = meili.received("POST", "/indexes/messages/search")[before:]
    assert len(requests) == 1
    body = requests[0]["body"]
    pre, post = body.pop("highlightPreTag"), body.pop("highlightPostTag")
    assert re.fullmatch(r"\[\[[0-9a-f]{12}\]\]", pre) and post == pre.replace("[[", "[[/")
    assert body == {
        "q": 'rollout "the plan"',
        "filter": (
            f"chat_id IN [{chat['id']}, {other['id']}] AND deleted = false AND sender_id IN [{alice.id}]"
            " AND created_at >= 1577923200 AND created_at < 32472144000 AND has_file = true"
        ),
        "sort": ["id:desc"],
        "offset": 0,
        "limit": 21,
        "attributesToRetrieve": ["id", "content"],
        "attributesToHighlight": ["content"],
        "attributesToCrop": ["content"],
        "cropLength": 26,
        "cropMarker": "…",
    }
    assert response.json()["data"] == []

    # A recorded answer with marks: returned best first as Meilisearch ordered them, escaped around <mark>.
    def answer(request: dict) -> list[dict]:
        open_, close = request["highlightPreTag"], request["highlightPostTag"]
        return [
            hit(second, f"{open_}rollout{close} later"),
            hit(first, f'{open_}rollout{close} <b>plan</b> & "notes"'),
            {"id": 10**15, "content": "gone", "_formatted": {"content": "gone"}},  # not in PostgreSQL
        ]

    meili.on_search = answer
    try:
        response = await search("rollout", chat_id=chat["id"], limit=5)
    finally:
        meili.on_search = None
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert [h["message"]["id"] for h in data] == [second["id"], first["id"]]
    assert data[0]["message"] == second
    assert data[1]["highlight"] == "<mark>rollout</mark> &lt;b&gt;plan&lt;/b&gt; &amp; &quot;notes&quot;"
    last = meili.received("POST", "/indexes/messages/search")[-1]["body"]
    assert last["filter"].startswith(f"chat_id IN [{chat['id']}] AND") and last["limit"] == 6


async def test_membership_is_decided_by_postgres_before_asking(
    mc: httpx.AsyncClient, meili: MeiliStub
) -> None:
    alice, bob, carol = await team(mc, 3)
    chat = await create_chat(mc, alice, [bob])
    before = len(meili.received("POST", "/indexes/messages/search"))
    response = await mc.get("/api/search/messages", headers=carol.auth, params={"q": "anything"})
    assert response.status_code == 200 and response.json()["data"] == []
    response = await mc.get("/api/search/messages", headers=carol.auth, params={"q": f"x in:{chat['id']}"})
    assert response.status_code == 200 and response.json()["data"] == []
    refused = await mc.get(
        "/api/search/messages", headers=carol.auth, params={"q": "x", "chat_id": chat["id"]}
    )
    assert refused.status_code == 403
    assert len(meili.received("POST", "/indexes/messages/search")) == before  # never asked


async def test_a_failing_meilisearch_is_a_503_not_a_500(mc: httpx.AsyncClient, meili: MeiliStub) -> None:
    alice, bob = await team(mc, 2)
    await create_chat(mc, alice, [bob])
    meili.failures = 1
    response = await mc.get("/api/search/messages", headers=bob.auth, params={"q": "hello"})
    assert response.status_code == 503, response.text
    assert response.json()["error"]["code"] == "unavailable"
    assert KEY not in response.text
    meili.failures = 0
    assert (await mc.get("/api/search/messages", headers=bob.auth, params={"q": "hello"})).status_code == 200


async def test_reindex_command_rebuilds_from_postgres(
    mc: httpx.AsyncClient, meili: MeiliStub, meili_stack: RunningStack
) -> None:
    alice, bob = await team(mc, 2)
    chat = await create_chat(mc, alice, [bob])
    kept = (await send(mc, alice, chat["id"], "kept")).json()["data"]
    gone = (await send(mc, alice, chat["id"], "gone")).json()["data"]
    deleted = await mc.delete(f"/api/chat/{chat['id']}/messages/{gone['id']}", headers=alice.auth)
    assert deleted.status_code == 200, deleted.text

    def removed_live() -> bool:
        return any(
            r["path"] == "/indexes/messages/documents/delete-batch" and gone["id"] in r["body"]
            for r in meili.requests
        )

    # The live indexer works from the event stream: let it finish with both messages first, so that what
    # follows is the reindex command's own work.
    deadline = time.monotonic() + 20
    while not removed_live():
        assert time.monotonic() < deadline, "the live indexer never removed the deleted message"
        await asyncio.sleep(0.05)
    before = len(meili.requests)
    env = {
        **os.environ,
        "DATABASE_URL": meili_stack.database_url(),
        "JWT_SECRET": "x" * 32,
        "MEILI_URL": meili.url,
        "MEILI_MASTER_KEY": KEY,
    }
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "fechatter_server.search", "reindex", "--batch", "2"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "messages indexed" in result.stdout
    new = meili.requests[before:]
    indexed = {d["id"] for r in new if r["path"] == "/indexes/messages/documents" for d in r["body"]}
    removed = {i for r in new if r["path"] == "/indexes/messages/documents/delete-batch" for i in r["body"]}
    assert kept["id"] in indexed and gone["id"] not in indexed and gone["id"] in removed
    assert any(r["path"].startswith("/tasks/") for r in new)  # waited for Meilisearch to finish
    assert all(r["headers"].get("Authorization") == f"Bearer {KEY}" for r in new)
