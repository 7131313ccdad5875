"""A property-based run of Schemathesis over /api/openapi.json of the running stack, as a signed-in user who
owns a chat with messages, bounded in examples and time. It must find no 5xx, and every answer must match
the document: status codes, content types and response schemas. Also: the document itself is complete."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import httpx
import pytest

from tests.conftest import create_chat, team
from tests.sse import send
from tests.stackutil import RunningStack

pytestmark = pytest.mark.e2e

ERROR_STATUSES = {"400", "401", "403", "404", "409", "413", "429"}
# Routes that end the fuzzing user's sessions would make every later case a 401: they have their own tests.
SESSION_ENDING = ("/api/logout-all", "/api/users/change-password", "/api/logout")


async def test_the_openapi_document_is_complete(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/api/openapi.json")).json()
    envelope = spec["components"]["schemas"]["ErrorEnvelope"]
    assert envelope["required"] == ["success", "error"]
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            if method not in {"get", "post", "put", "patch", "delete"}:
                continue
            where = f"{method.upper()} {path}"
            assert operation.get("summary"), f"{where} has no summary"
            assert set(operation["responses"]) >= ERROR_STATUSES, f"{where} lacks error responses"
            for status in ERROR_STATUSES:
                schema = operation["responses"][status]["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/ErrorEnvelope"}, where
            successes = [s for s in operation["responses"] if s.startswith("2")]
            assert successes, f"{where} documents no success"
            for status in successes:
                content = operation["responses"][status].get("content", {})
                if "*/*" in content:  # file downloads: bytes of the file's own type
                    assert content["*/*"]["schema"] == {"type": "string", "format": "binary"}, where
                    continue
                assert "application/json" in content and content["application/json"].get("schema"), where
            if method in {"post", "put", "patch"} and "requestBody" in operation:
                bodies = operation["requestBody"]["content"]
                body = bodies.get("application/json", bodies.get("multipart/form-data", {})).get("schema")
                assert body, f"{where} has an empty request schema"


async def test_schemathesis_finds_no_server_error_and_answers_match_the_document(
    stack: RunningStack, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    owner, member = await team(client)
    chat_id = (await create_chat(client, owner, [member]))["id"]
    first = (await send(client, owner, chat_id, "seed 0")).json()["data"]["id"]
    for i in range(1, 3):
        await send(client, owner, chat_id, f"seed {i}")
    config = tmp_path / "schemathesis.toml"
    # Path ids are the user's own chat and message, so cases get past the membership checks to the rules.
    config.write_text(f'[parameters]\n"path.chat_id" = {chat_id}\n"path.message_id" = {first}\n')
    command = [
        str(Path(sys.executable).parent / "st"),
        "--config-file",
        str(config),
        "--no-color",
        "run",
        f"{stack.url}/api/openapi.json",
        "--url",
        stack.url,
        "--header",
        f"Authorization: Bearer {owner.token}",
        "--checks",
        "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
        "--max-examples",
        "15",
        "--max-time",
        "90",
        "--request-timeout",
        "10",
        "--workers",
        "2",
        "--seed",
        "20261123",
        *(arg for path in SESSION_ENDING for arg in ("--exclude-path", path)),
    ]
    process = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=tmp_path
    )
    try:
        raw, _ = await asyncio.wait_for(process.communicate(), timeout=150)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    output = raw.decode(errors="replace")
    assert "Server error" not in output, output[-8000:]
    assert process.returncode == 0, output[-8000:]
    assert "Tested:" in output, output[-3000:]
