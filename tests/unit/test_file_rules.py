"""The pure rules of file uploads: type detection, type lists, filenames, storage and thumbnails."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from fechatter_server.files import images
from fechatter_server.files.service import clean_filename
from fechatter_server.files.sniff import detect, type_allowed
from fechatter_server.files.storage import BlobStore


@pytest.mark.parametrize(
    ("head", "filename", "expected"),
    [
        (b"\x89PNG\r\n\x1a\n....", "x.txt", "image/png"),
        (b"\xff\xd8\xff\xe0", "x.png", "image/jpeg"),
        (b"GIF89a", "x", "image/gif"),
        (b"RIFF\x00\x00\x00\x00WEBPVP8 ", "x", "image/webp"),
        (b"%PDF-1.4", "x.png", "application/pdf"),
        (
            b"PK\x03\x04rest",
            "report.docx",
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        ),
        (b"PK\x03\x04rest", "page.html", "application/zip"),  # a zip named like a page is still a zip
        (b"MZ\x90\x00", "a.txt", "application/x-msdownload"),
        (b"  <!doctype HTML><p>", "a.txt", "text/html"),
        (b"\xef\xbb\xbf<html>", "a.txt", "text/html"),
        (b'<?xml version="1.0"?>\n<svg xmlns="x">', "a.png", "image/svg+xml"),
        (b"name,age\n", "people.csv", "text/csv"),
        (b"plain words", "page.html", "text/plain"),  # the name cannot make text into HTML
        (b"\x00\x01\x02binary", "a.txt", "application/octet-stream"),
        ("caf\u00e9".encode()[:-1], "a.txt", "text/plain"),  # a sample cut inside a character
    ],
)
def test_detect_uses_the_content(head: bytes, filename: str, expected: str) -> None:
    assert detect(head, filename, complete=False) == expected


def test_type_lists() -> None:
    denied = ["text/html", "application/x-msdownload"]
    assert type_allowed("image/png", [], denied)
    assert not type_allowed("text/html", [], denied)
    assert type_allowed("image/gif", ["image/*", "application/pdf"], denied)
    assert not type_allowed("text/plain", ["image/*", "application/pdf"], denied)
    assert not type_allowed("text/html", ["*/*"], denied)  # the deny list wins


@given(st.text(max_size=400))
def test_clean_filename_never_keeps_a_path_or_control_character(raw: str) -> None:
    name = clean_filename(raw, 255)
    assert 1 <= len(name) <= 255
    assert "/" not in name and "\\" not in name
    assert not any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in name)
    assert name not in (".", "..")


def test_blob_store_writes_atomically_and_once(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    store.ensure()
    first = store.put_bytes(b"same")
    second = store.put_bytes(b"same")
    assert first == second == hashlib.sha256(b"same").hexdigest()
    assert store.path_for(first).read_bytes() == b"same"
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == [store.path_for(first)]
    with pytest.raises(ValueError):
        store.path_for("../../etc/passwd")


def test_thumbnail_follows_exif_orientation(tmp_path: Path) -> None:
    path = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees when displayed
    Image.new("RGB", (800, 400)).save(path, format="JPEG", exif=exif)
    info = images.probe(path, max_pixels=10**8, thumbnail_px=320)
    assert info is not None and (info.width, info.height) == (400, 800)
    assert info.thumbnail is not None
    assert Image.open(io.BytesIO(info.thumbnail)).size == (160, 320)
    with pytest.raises(images.ImageTooLarge):
        images.probe(path, max_pixels=1000, thumbnail_px=320)
