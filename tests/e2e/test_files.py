"""File upload, download, thumbnails and files in messages, through the gateway against the real stack."""

from __future__ import annotations

import hashlib
import io
import os
import struct
import zlib
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from tests.conftest import User, create_chat, signup, team
from tests.sse import open_sse, send
from tests.stackutil import RunningStack

pytestmark = pytest.mark.e2e

MiB = 1024 * 1024
UPLOAD_LIMIT = 10 * MiB  # the default of fixtures/fechatter.yml, which the test stack keeps


def multipart(
    filename: str, content: bytes, *, field: str = "file", content_type: str = "application/octet-stream"
) -> tuple[bytes, dict[str, str]]:
    """A multipart body built by hand, so the filename reaches the server exactly as written."""
    boundary = "fechatter-test-boundary"
    head = (
        f"--{boundary}\r\n"
        f'Content-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
        f"Content-Type: {content_type}\r\n\r\n"
    ).encode()
    body = head + content + f"\r\n--{boundary}--\r\n".encode()
    return body, {"content-type": f"multipart/form-data; boundary={boundary}"}


async def upload_raw(
    client: httpx.AsyncClient, user: User, filename: str, content: bytes, **kwargs: Any
) -> httpx.Response:
    body, headers = multipart(filename, content, **kwargs)
    return await client.post("/api/files", content=body, headers={**user.auth, **headers})


async def uploaded(
    client: httpx.AsyncClient, user: User, filename: str, content: bytes, **kwargs: Any
) -> dict:
    response = await upload_raw(client, user, filename, content, **kwargs)
    assert response.status_code == 201, response.text
    return response.json()["data"]


def png(width: int, height: int, color: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), color).save(out, format="PNG")
    return out.getvalue()


def png_bomb(width: int, height: int) -> bytes:
    """A valid PNG header announcing width x height pixels, with almost no data: tiny on the wire,
    gigabytes once decoded."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 1024))
        + chunk(b"IEND", b"")
    )


def assert_error(response: httpx.Response, status: int, code: str, field: str | None = None) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["success"] is False and body["error"]["code"] == code, body
    if field is not None:
        assert body["error"].get("field") == field, body


def blobs(stack: RunningStack) -> dict[str, Path]:
    """Every stored blob (content and thumbnails) by its name, which is its SHA-256."""
    root = stack.data_dir / "files"
    return {p.name: p for p in root.glob("*/*/*") if p.is_file()}


def temp_files(stack: RunningStack) -> list[Path]:
    return list((stack.data_dir / "files" / "tmp").glob("*"))


async def chat_last_seq(client: httpx.AsyncClient, user: User, chat_id: int) -> int:
    response = await client.get(f"/api/chat/{chat_id}", headers=user.auth)
    assert response.status_code == 200, response.text
    return response.json()["data"]["last_seq"]


async def test_upload_and_download_round_trip(client: httpx.AsyncClient, stack: RunningStack) -> None:
    (alice,) = await team(client, 1)
    content = os.urandom(300_000)
    data = await uploaded(client, alice, "report 2026 ✓.bin", content, content_type="image/png")
    assert set(data) == {"id", "filename", "size", "mime_type", "url"}  # no image fields for non-images
    assert data["filename"] == "report 2026 ✓.bin"
    assert data["size"] == len(content)
    assert data["mime_type"] == "application/octet-stream"  # from the content, not the client's claim
    assert data["url"] == f"/api/files/{data['id']}"

    response = await client.get(data["url"], headers=alice.auth)
    assert response.status_code == 200
    assert response.content == content
    assert response.headers["content-type"] == "application/octet-stream"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["cache-control"].startswith("private")
    assert response.headers["etag"] == f'"{hashlib.sha256(content).hexdigest()}"'
    disposition = response.headers["content-disposition"]
    assert disposition.startswith("attachment;")
    assert "filename*=UTF-8''report%202026%20%E2%9C%93.bin" in disposition
    assert 'filename="report 2026 _.bin"' in disposition

    # A text file keeps its bytes and is served as text, still as an attachment.
    text = await uploaded(client, alice, "notes.txt", b"hello, world\n")
    assert text["mime_type"] == "text/plain"
    response = await client.get(text["url"], headers=alice.auth)
    assert response.content == b"hello, world\n"
    assert response.headers["content-disposition"].startswith("attachment;")
    assert not temp_files(stack)


async def test_a_file_of_several_mebibytes_is_stored_whole(
    client: httpx.AsyncClient, stack: RunningStack
) -> None:
    """Uploads are written out in pieces of about 1 MiB; every piece lands, in order, under the right hash."""
    alice, _ = await team(client)
    content = os.urandom(3 * MiB + 12_345)
    item = await uploaded(client, alice, "big.bin", content)
    assert item["size"] == len(content)
    stored = blobs(stack)[hashlib.sha256(content).hexdigest()]
    assert stored.read_bytes() == content
    response = await client.get(item["url"], headers=alice.auth)
    assert response.status_code == 200 and response.content == content
    assert not temp_files(stack)


async def test_equal_content_is_stored_once_with_one_row_per_upload(
    client: httpx.AsyncClient, stack: RunningStack
) -> None:
    alice, bob = await team(client)
    content = os.urandom(50_000)
    sha = hashlib.sha256(content).hexdigest()
    first = await uploaded(client, alice, "a.bin", content)
    second = await uploaded(client, bob, "b.bin", content)
    assert first["id"] != second["id"]
    assert (first["filename"], second["filename"]) == ("a.bin", "b.bin")
    stored = blobs(stack)
    assert sha in stored and stored[sha].read_bytes() == content
    assert sum(1 for p in stored.values() if p.stat().st_size == len(content) and p.name == sha) == 1
    for user, item in ((alice, first), (bob, second)):
        response = await client.get(item["url"], headers=user.auth)
        assert response.status_code == 200 and response.content == content
    assert not temp_files(stack)


async def test_size_limit_is_exact_and_enforced_on_the_stream(
    client: httpx.AsyncClient, stack: RunningStack
) -> None:
    (alice,) = await team(client, 1)
    at_limit = os.urandom(UPLOAD_LIMIT)
    data = await uploaded(client, alice, "exact.bin", at_limit)
    assert data["size"] == UPLOAD_LIMIT
    before = set(blobs(stack))

    over = at_limit + b"x"
    assert_error(await upload_raw(client, alice, "over.bin", over), 413, "payload_too_large")
    # Far over the limit: refused once the limit is passed, not after reading it all into memory.
    assert_error(
        await upload_raw(client, alice, "huge.bin", os.urandom(3 * UPLOAD_LIMIT)), 413, "payload_too_large"
    )
    assert set(blobs(stack)) == before
    assert hashlib.sha256(over).hexdigest() not in blobs(stack)
    assert not temp_files(stack)

    # JSON routes keep their own, smaller limit.
    chat = await create_chat(client, alice, [])
    big_json = {"content": "x" * (2 * MiB)}
    response = await client.post(f"/api/chat/{chat['id']}/messages", headers=alice.auth, json=big_json)
    assert_error(response, 413, "payload_too_large")


async def test_bad_uploads_are_refused_in_the_envelope(
    client: httpx.AsyncClient, stack: RunningStack
) -> None:
    (alice,) = await team(client, 1)
    before = set(blobs(stack))
    # No "file" field.
    assert_error(
        await upload_raw(client, alice, "a.txt", b"hello", field="document"), 400, "validation_error", "file"
    )
    # An empty file.
    assert_error(await upload_raw(client, alice, "empty.txt", b""), 400, "validation_error", "file")
    # Not multipart at all.
    response = await client.post("/api/files", headers=alice.auth, json={"file": "aGVsbG8="})
    assert_error(response, 415, "unsupported_media_type")
    response = await client.post("/api/files", headers=alice.auth, content=b"")
    assert_error(response, 415, "unsupported_media_type")
    # Multipart that breaks off in the middle, and one without a boundary.
    body, headers = multipart("cut.txt", b"hello")
    response = await client.post("/api/files", headers={**alice.auth, **headers}, content=body[:-20])
    assert_error(response, 400, "bad_request")
    response = await client.post(
        "/api/files", headers={**alice.auth, "content-type": "multipart/form-data"}, content=body
    )
    assert_error(response, 400, "bad_request")
    # Two files in one upload.
    boundary = "b0und"
    two = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="1.txt"\r\n\r\none\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="2.txt"\r\n\r\ntwo\r\n'
        f"--{boundary}--\r\n"
    ).encode()
    response = await client.post(
        "/api/files",
        headers={**alice.auth, "content-type": f"multipart/form-data; boundary={boundary}"},
        content=two,
    )
    assert_error(response, 400, "validation_error", "file")
    # No token.
    body, headers = multipart("a.txt", b"hello")
    assert_error(await client.post("/api/files", headers=headers, content=body), 401, "unauthorized")
    assert set(blobs(stack)) == before
    assert not temp_files(stack)


async def test_types_come_from_the_content_and_dangerous_ones_are_refused(client: httpx.AsyncClient) -> None:
    (alice,) = await team(client, 1)
    page = b"<!DOCTYPE html><html><script>alert(document.cookie)</script></html>"
    for name, content in [
        ("photo.png", page),  # a page dressed up as an image
        ("pic.svg", b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"><script/></svg>'),
        ("tool.exe", b"MZ\x90\x00" + os.urandom(200)),
        ("prog", b"\x7fELF\x02\x01\x01" + os.urandom(200)),
    ]:
        response = await upload_raw(client, alice, name, content, content_type="image/png")
        assert_error(response, 400, "validation_error", "file")

    # A PNG declared as text is a PNG; a PDF declared as an image is a PDF (and downloads as one).
    image = await uploaded(client, alice, "shot.txt", png(20, 10), content_type="text/plain")
    assert image["mime_type"] == "image/png"
    pdf = await uploaded(client, alice, "doc.pdf", b"%PDF-1.7\n" + os.urandom(100), content_type="image/gif")
    assert pdf["mime_type"] == "application/pdf"
    response = await client.get(pdf["url"], headers=alice.auth)
    assert response.headers["content-type"] == "application/pdf"
    assert response.headers["content-disposition"].startswith("attachment;")


async def test_filenames_are_sanitised(client: httpx.AsyncClient) -> None:
    (alice,) = await team(client, 1)
    cases = {
        "../../etc/passwd": "passwd",
        "C:\\Users\\ada\\report.pdf": "report.pdf",
        "evil\x01name\x7f.txt": "evilname.txt",
        "invoice\u202efdp.exe.txt": "invoicefdp.exe.txt",  # a right-to-left override hides the extension
        "..": "file",
        ("a" * 300) + ".txt": ("a" * 251) + ".txt",
    }
    for raw, expected in cases.items():
        data = await uploaded(client, alice, raw, b"some text\n")
        assert data["filename"] == expected, (raw, data["filename"])
        assert len(data["filename"]) <= 255


async def test_image_gets_size_and_a_bounded_thumbnail(
    client: httpx.AsyncClient, stack: RunningStack
) -> None:
    (alice,) = await team(client, 1)
    content = png(1000, 500)
    data = await uploaded(client, alice, "wide.png", content)
    assert data["mime_type"] == "image/png"
    assert (data["width"], data["height"]) == (1000, 500)
    assert data["thumbnail_url"] == f"/api/files/{data['id']}/thumbnail"

    response = await client.get(data["url"], headers=alice.auth)
    assert response.status_code == 200 and response.content == content
    assert response.headers["content-type"] == "image/png"
    assert response.headers["content-disposition"].startswith("inline;")

    response = await client.get(data["thumbnail_url"], headers=alice.auth)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/webp"
    assert response.headers["x-content-type-options"] == "nosniff"
    thumb = Image.open(io.BytesIO(response.content))
    assert thumb.size == (320, 160)
    # The thumbnail is stored under its own hash.
    assert hashlib.sha256(response.content).hexdigest() in blobs(stack)

    # A small JPEG and a GIF get thumbnails too (never enlarged); a non-image has none.
    small = io.BytesIO()
    Image.new("RGB", (100, 40), (0, 90, 200)).save(small, format="JPEG")
    jpeg = await uploaded(client, alice, "small.jpg", small.getvalue())
    assert jpeg["mime_type"] == "image/jpeg" and (jpeg["width"], jpeg["height"]) == (100, 40)
    response = await client.get(jpeg["thumbnail_url"], headers=alice.auth)
    assert Image.open(io.BytesIO(response.content)).size == (100, 40)
    gif = io.BytesIO()
    Image.new("P", (600, 600)).save(gif, format="GIF")
    gif_data = await uploaded(client, alice, "a.gif", gif.getvalue())
    assert gif_data["mime_type"] == "image/gif" and "thumbnail_url" in gif_data
    plain = await uploaded(client, alice, "plain.bin", os.urandom(100))
    assert_error(await client.get(f"{plain['url']}/thumbnail", headers=alice.auth), 404, "not_found")

    # Broken image data with an image signature is kept as a file, without a thumbnail.
    broken = await uploaded(client, alice, "broken.png", content[:60])
    assert broken["mime_type"] == "image/png" and "thumbnail_url" not in broken


async def test_decompression_bomb_is_refused(client: httpx.AsyncClient, stack: RunningStack) -> None:
    (alice,) = await team(client, 1)
    before = set(blobs(stack))
    for width, height in ((20_000, 20_000), (60_000, 60_000)):  # over the limit, and over twice the limit
        bomb = png_bomb(width, height)
        assert len(bomb) < 2000
        response = await upload_raw(client, alice, "bomb.png", bomb)
        assert_error(response, 400, "validation_error", "file")
        assert "pixels" in response.json()["error"]["message"]
    assert set(blobs(stack)) == before
    # The service is unharmed.
    assert (await client.get("/api/health")).status_code == 200


async def test_download_permissions(client: httpx.AsyncClient) -> None:
    alice, bob, carol = await team(client, 3)
    outsider = await signup(client)
    chat = await create_chat(client, alice, [bob])
    data = await uploaded(client, alice, "secret.txt", b"for bob only\n")
    url = data["url"]

    assert (await client.get(url, headers=alice.auth)).status_code == 200
    # Not sent anywhere yet: only the uploader sees it; to others it does not exist.
    for user in (bob, carol, outsider):
        assert_error(await client.get(url, headers=user.auth), 404, "not_found")
    assert_error(await client.get(url), 401, "unauthorized")
    assert_error(await client.get("/api/files/987654321", headers=alice.auth), 404, "not_found")

    message = (await send(client, alice, chat["id"], "", files=[data["id"]])).json()["data"]
    response = await client.get(url, headers=bob.auth)
    assert response.status_code == 200 and response.content == b"for bob only\n"
    for user in (carol, outsider):
        assert_error(await client.get(url, headers=user.auth), 404, "not_found")

    # A member who leaves loses access; the uploader keeps it.
    dave = await signup(
        client,
        invite_code=(await client.post("/api/workspace/invites", headers=alice.auth, json={})).json()["data"][
            "code"
        ],
    )
    response = await client.post(
        f"/api/chat/{chat['id']}/members", headers=alice.auth, json={"user_ids": [dave.id]}
    )
    assert response.status_code == 200, response.text
    assert (await client.get(url, headers=dave.auth)).status_code == 200
    response = await client.delete(f"/api/chat/{chat['id']}/members/{dave.id}", headers=dave.auth)
    assert response.status_code == 200, response.text
    assert_error(await client.get(url, headers=dave.auth), 404, "not_found")

    # Deleting the message takes the file out of it: members lose access, the bytes stay for the uploader.
    response = await client.delete(f"/api/chat/{chat['id']}/messages/{message['id']}", headers=alice.auth)
    assert response.status_code == 200 and response.json()["data"]["files"] == []
    assert_error(await client.get(url, headers=bob.auth), 404, "not_found")
    assert (await client.get(url, headers=alice.auth)).content == b"for bob only\n"


async def test_files_in_messages_keep_their_order_everywhere(
    client: httpx.AsyncClient, stack: RunningStack
) -> None:
    alice, bob = await team(client)
    chat = await create_chat(client, alice, [bob])
    first = await uploaded(client, alice, "one.txt", b"one\n")
    second = await uploaded(client, alice, "two.png", png(40, 40))
    third = await uploaded(client, alice, "three.txt", b"three\n")
    order = [third["id"], first["id"], second["id"]]

    http, stream = await open_sse(stack, bob)
    try:
        await stream.next("connected")
        response = await send(client, alice, chat["id"], "", files=order)
        assert response.status_code == 201, response.text
        message = response.json()["data"]
        assert message["content"] == ""
        assert [f["id"] for f in message["files"]] == order
        assert message["files"] == [third, first, second]  # the same shape as the upload answered
        _, live = await stream.next("new_message")
        assert live["files"] == message["files"]
    finally:
        await stream.close()
        await http.aclose()

    listed = (await client.get(f"/api/chat/{chat['id']}/messages", headers=bob.auth)).json()["data"]
    assert [f["id"] for f in listed[-1]["files"]] == order
    chats = (await client.get("/api/workspace/chats", headers=bob.auth)).json()["data"]
    last = next(c for c in chats if c["id"] == chat["id"])["last_message"]
    assert last["files"] == message["files"]
    detail = (await client.get(f"/api/chat/{chat['id']}", headers=bob.auth)).json()["data"]
    assert detail["last_message"]["files"] == message["files"]

    reply = await send(client, bob, chat["id"], "nice", reply_to=message["id"])
    assert reply.status_code == 201 and reply.json()["data"]["files"] == []
    replies = await client.get(f"/api/chat/{chat['id']}/messages/{message['id']}/replies", headers=alice.auth)
    assert replies.json()["data"][0]["files"] == []
    bob_file = await uploaded(client, bob, "bob.txt", b"bob\n")
    threaded = await send(client, bob, chat["id"], "see", reply_to=message["id"], files=[bob_file["id"]])
    assert threaded.status_code == 201, threaded.text
    replies = await client.get(f"/api/chat/{chat['id']}/messages/{message['id']}/replies", headers=alice.auth)
    assert [r["files"] for r in replies.json()["data"]] == [[], [bob_file]]

    # An edit keeps the files.
    edited = await client.patch(
        f"/api/chat/{chat['id']}/messages/{message['id']}", headers=alice.auth, json={"content": "pics"}
    )
    assert edited.json()["data"]["files"] == message["files"]


async def test_message_files_must_be_the_senders_own_and_few(client: httpx.AsyncClient) -> None:
    alice, bob = await team(client)
    outsider = await signup(client)
    chat = await create_chat(client, alice, [bob])
    mine = [await uploaded(client, alice, f"{i}.txt", f"file {i}\n".encode()) for i in range(11)]
    bobs = await uploaded(client, bob, "bob.txt", b"bob\n")
    foreign = await uploaded(client, outsider, "x.txt", b"x\n")
    seq = await chat_last_seq(client, alice, chat["id"])

    for files in (
        [bobs["id"]],  # someone else's upload
        [mine[0]["id"], foreign["id"]],  # another workspace's upload
        [987654321],  # no such file
        [f["id"] for f in mine],  # 11 > 10
        [mine[0]["id"], mine[0]["id"]],  # the same file twice
    ):
        response = await send(client, alice, chat["id"], "with files", files=files)
        assert_error(response, 400, "validation_error", "files")
    # Without files, empty content is still refused.
    assert_error(await send(client, alice, chat["id"], "  "), 400, "validation_error", "content")
    assert await chat_last_seq(client, alice, chat["id"]) == seq  # nothing was sent
    for user in (bob,):
        assert_error(await client.get(mine[0]["url"], headers=user.auth), 404, "not_found")

    ten = [f["id"] for f in mine[:10]]
    response = await send(client, alice, chat["id"], "ten", files=ten)
    assert response.status_code == 201, response.text
    assert [f["id"] for f in response.json()["data"]["files"]] == ten


async def test_idempotent_retry_compares_files(client: httpx.AsyncClient) -> None:
    alice, bob = await team(client)
    chat = await create_chat(client, alice, [bob])
    a = await uploaded(client, alice, "a.txt", b"a\n")
    b = await uploaded(client, alice, "b.txt", b"b\n")
    first = await send(client, alice, chat["id"], "hi", files=[a["id"], b["id"]], idempotency_key="files-1")
    assert first.status_code == 201, first.text
    again = await send(client, alice, chat["id"], "hi", files=[a["id"], b["id"]], idempotency_key="files-1")
    assert again.status_code == 200 and again.json()["data"] == first.json()["data"]
    for files in ([b["id"], a["id"]], [a["id"]], []):
        response = await send(client, alice, chat["id"], "hi", files=files, idempotency_key="files-1")
        assert_error(response, 409, "idempotency_conflict")


async def test_etag_answers_304(client: httpx.AsyncClient) -> None:
    (alice,) = await team(client, 1)
    data = await uploaded(client, alice, "pic.png", png(400, 400))
    for url in (data["url"], data["thumbnail_url"]):
        response = await client.get(url, headers=alice.auth)
        etag = response.headers["etag"]
        cached = await client.get(url, headers={**alice.auth, "If-None-Match": etag})
        assert cached.status_code == 304 and cached.content == b""
        assert cached.headers["etag"] == etag
        listed = await client.get(url, headers={**alice.auth, "If-None-Match": f'"other", W/{etag}'})
        assert listed.status_code == 304
        stale = await client.get(url, headers={**alice.auth, "If-None-Match": '"0000"'})
        assert stale.status_code == 200 and stale.content == response.content


async def test_access_token_in_the_query_works_and_is_never_logged(
    client: httpx.AsyncClient, stack: RunningStack
) -> None:
    (alice,) = await team(client, 1)
    other = await signup(client)
    data = await uploaded(client, alice, "pic.png", png(50, 50))
    token = alice.token
    response = await client.get(data["url"], params={"access_token": token})
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    response = await client.get(data["thumbnail_url"], params={"access_token": token})
    assert response.status_code == 200 and response.headers["content-type"] == "image/webp"
    # The query token is checked like the header: someone else's token sees nothing, a bad one is 401.
    assert_error(await client.get(data["url"], params={"access_token": other.token}), 404, "not_found")
    assert_error(await client.get(data["url"], params={"access_token": "nope"}), 401, "unauthorized")
    # Only downloads accept it: other routes still need the header.
    assert_error(await client.get("/api/users/me", params={"access_token": token}), 401, "unauthorized")
    body, headers = multipart("a.txt", b"a\n")
    response = await client.post("/api/files", params={"access_token": token}, headers=headers, content=body)
    assert_error(response, 401, "unauthorized")

    logs = list((stack.data_dir / "logs").rglob("*"))
    assert logs
    signature = token.rsplit(".", 1)[-1]
    for path in logs:
        if path.is_file():
            text = path.read_text(errors="replace")
            assert token not in text and signature not in text, path
    # The access log did record the requests, with the token redacted.
    gateway_log = "".join(p.read_text(errors="replace") for p in logs if p.is_file() and "gateway" in p.name)
    assert f"/api/files/{data['id']}?access_token=[redacted]" in gateway_log
