from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from tests.stackutil import RunningStack, make_stack

_emails = itertools.count(1)


@pytest.fixture(scope="session")
def stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    """One real stack (supervisor, PostgreSQL, NATS, Redis and the five services) for the session."""
    running = make_stack(tmp_path_factory.mktemp("stack") / "data")
    try:
        running.start()
        yield running
    finally:
        running.stop()
        reporter = request.config.pluginmanager.get_plugin("terminalreporter")
        if request.session.testsfailed and reporter is not None:
            reporter.write_line(f"\nErrors logged by the session stack:\n{running.log_problems()}")


@pytest.fixture
async def client(stack: RunningStack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=stack.url, timeout=15) as http:
        yield http


class User:
    def __init__(self, session: dict[str, Any]) -> None:
        self.session = session
        self.id: int = session["user"]["id"]
        self.workspace_id: int = session["workspace"]["id"]
        self.token: str = session["access_token"]
        self.refresh_token: str = session["refresh_token"]

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def unique_email(prefix: str = "user") -> str:
    return f"{prefix}{next(_emails)}-{id(_emails)}@example.test"


async def signup(client: httpx.AsyncClient, **fields: Any) -> User:
    body = {"email": unique_email(), "password": "correct horse 1", "fullname": "Test User", **fields}
    response = await client.post("/api/signup", json=body)
    assert response.status_code == 201, response.text
    return User(response.json()["data"])


async def invite(client: httpx.AsyncClient, owner: User) -> str:
    response = await client.post("/api/workspace/invites", headers=owner.auth, json={})
    assert response.status_code == 201, response.text
    return response.json()["data"]["code"]


async def team(client: httpx.AsyncClient, size: int = 2) -> list[User]:
    """An owner and ``size - 1`` invited members of one fresh workspace."""
    owner = await signup(client, workspace_name="Team")
    members = [owner]
    for _ in range(size - 1):
        members.append(await signup(client, invite_code=await invite(client, owner)))
    return members


async def create_chat(client: httpx.AsyncClient, owner: User, members: list[User], **fields: Any) -> dict:
    body = {"name": "room", "chat_type": "PrivateChannel", "members": [m.id for m in members], **fields}
    response = await client.post("/api/workspace/chats", headers=owner.auth, json=body)
    assert response.status_code in (200, 201), response.text
    return response.json()["data"]
