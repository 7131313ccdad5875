"""Stopping the stack frees every port; starting it again on the same data dir brings the data back."""

from __future__ import annotations

import signal
import socket
from pathlib import Path

import httpx
import psutil
import pytest

from tests.conftest import create_chat, invite, signup
from tests.stackutil import PORT_VARS, make_stack

pytestmark = pytest.mark.e2e

PASSWORD = "correct horse 1"


def open_ports(ports: dict[str, int]) -> dict[str, int]:
    """The stack ports that something still listens on or accepts connections at."""
    listening = {
        conn.laddr.port
        for conn in psutil.net_connections(kind="tcp")
        if conn.status == psutil.CONN_LISTEN and conn.laddr
    }
    found = {}
    for var, port in ports.items():
        if port in listening:
            found[var] = port
            continue
        with socket.socket() as probe:
            probe.settimeout(0.5)
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                found[var] = port
    return found


async def test_data_survives_a_stop_and_start(tmp_path: Path) -> None:
    stack = make_stack(tmp_path / "data")
    ports = {var: stack.port(var) for var in PORT_VARS}
    try:
        first = stack.start()
        print(f"\nfirst start (new data dir): {first:.1f}s")
        assert open_ports(ports) == ports  # the check below is meaningful: everything was listening
        async with httpx.AsyncClient(base_url=stack.url, timeout=15) as http:
            owner = await signup(http, email="keeper@example.test", password=PASSWORD, workspace_name="Kept")
            member = await signup(http, invite_code=await invite(http, owner))
            chat = await create_chat(http, owner, [member], name="archive")
            sent = await http.post(
                f"/api/chat/{chat['id']}/messages",
                headers=owner.auth,
                json={"content": "still here after restart"},
            )
            assert sent.status_code == 201, sent.text
            message = sent.json()["data"]

        stack.stop(sig=signal.SIGINT)  # what Ctrl-C in the terminal of `make run` sends
        assert open_ports(ports) == {}
        assert not (stack.data_dir / "stack.json").exists()

        second = stack.start()
        print(f"second start (same data dir): {second:.1f}s")
        assert {var: stack.port(var) for var in PORT_VARS} == ports
        async with httpx.AsyncClient(base_url=stack.url, timeout=15) as http:
            signin = await http.post(
                "/api/signin", json={"email": "keeper@example.test", "password": PASSWORD}
            )
            assert signin.status_code == 200, signin.text
            session = signin.json()["data"]
            assert session["user"]["id"] == owner.id
            auth = {"Authorization": f"Bearer {session['access_token']}"}

            chats = await http.get("/api/workspace/chats", headers=auth)
            assert chats.status_code == 200, chats.text
            assert [c["id"] for c in chats.json()["data"]] == [chat["id"]]

            page = await http.get(f"/api/chat/{chat['id']}/messages", headers=auth)
            assert page.status_code == 200, page.text
            assert page.json()["data"] == [message]

            # The old refresh token survived too, and new writes continue the chat's sequence.
            refreshed = await http.post("/api/refresh", json={"refresh_token": owner.refresh_token})
            assert refreshed.status_code == 200, refreshed.text
            reply = await http.post(
                f"/api/chat/{chat['id']}/messages",
                headers={"Authorization": f"Bearer {member.token}"},
                json={"content": "welcome back"},
            )
            assert reply.status_code == 201, reply.text
            assert reply.json()["data"]["seq"] == message["seq"] + 1
    finally:
        stack.stop()
    assert open_ports(ports) == {}
