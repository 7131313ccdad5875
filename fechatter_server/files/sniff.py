"""What a file is, judged from its first bytes: the client's Content-Type is never trusted.

Binary formats are recognised by their signatures. A ZIP container (docx, xlsx, epub, ...) may take the
more precise type the filename suggests, as long as that type is itself a ZIP-based format. Text is told
apart from binary by decoding it as UTF-8; markup a browser would render as a page (HTML, SVG) is named as
such, so the type rules can refuse it.
"""

from __future__ import annotations

import mimetypes
import re

SNIFF_BYTES = 8192

# (offset, signature, type); the first match wins.
_SIGNATURES: list[tuple[int, bytes, str]] = [
    (0, b"\x89PNG\r\n\x1a\n", "image/png"),
    (0, b"\xff\xd8\xff", "image/jpeg"),
    (0, b"GIF87a", "image/gif"),
    (0, b"GIF89a", "image/gif"),
    (0, b"BM", "image/bmp"),
    (0, b"II*\x00", "image/tiff"),
    (0, b"MM\x00*", "image/tiff"),
    (0, b"\x00\x00\x01\x00", "image/vnd.microsoft.icon"),
    (0, b"%PDF-", "application/pdf"),
    (0, b"PK\x03\x04", "application/zip"),
    (0, b"PK\x05\x06", "application/zip"),
    (0, b"\x1f\x8b", "application/gzip"),
    (0, b"BZh", "application/x-bzip2"),
    (0, b"\xfd7zXZ\x00", "application/x-xz"),
    (0, b"7z\xbc\xaf\x27\x1c", "application/x-7z-compressed"),
    (0, b"Rar!\x1a\x07", "application/vnd.rar"),
    (0, b"ID3", "audio/mpeg"),
    (0, b"fLaC", "audio/flac"),
    (0, b"OggS", "audio/ogg"),
    (0, b"\x1aE\xdf\xa3", "video/webm"),
    (0, b"\x7fELF", "application/x-executable"),
    (0, b"MZ", "application/x-msdownload"),
    (0, b"\xcf\xfa\xed\xfe", "application/x-mach-binary"),
    (0, b"\xce\xfa\xed\xfe", "application/x-mach-binary"),
    (0, b"\xca\xfe\xba\xbe", "application/x-mach-binary"),
    (0, b"\x00asm", "application/wasm"),
    (0, b"SQLite format 3\x00", "application/vnd.sqlite3"),
]

# ZIP-based formats a filename may name precisely.
_ZIP_FAMILY = {
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    "application/vnd.oasis.opendocument.text",
    "application/vnd.oasis.opendocument.spreadsheet",
    "application/vnd.oasis.opendocument.presentation",
    "application/epub+zip",
    "application/java-archive",
}
# Text types a filename may name precisely; anything else that decodes as text is text/plain.
_TEXT_FAMILY = {"text/csv", "text/markdown", "application/json", "text/x-python", "text/css", "text/xml"}

_HTML_START = re.compile(rb"^\s*<(?:!doctype\s+html|html|head|body|script|iframe)\b", re.IGNORECASE)
_SVG = re.compile(rb"<svg[\s>]", re.IGNORECASE)

# Extensions mimetypes does not know everywhere.
mimetypes.add_type("text/markdown", ".md")
mimetypes.add_type("application/epub+zip", ".epub")


def _riff(head: bytes) -> str | None:
    if head[:4] != b"RIFF" or len(head) < 12:
        return None
    return {b"WEBP": "image/webp", b"WAVE": "audio/wav", b"AVI ": "video/x-msvideo"}.get(head[8:12])


def _iso_media(head: bytes) -> str | None:
    # ISO base media (mp4, mov, heic, avif): a box size, then "ftyp" and a brand.
    if head[4:8] != b"ftyp":
        return None
    brand = head[8:12]
    if brand in (b"heic", b"heix", b"mif1"):
        return "image/heic"
    if brand in (b"avif", b"avis"):
        return "image/avif"
    if brand == b"qt  ":
        return "video/quicktime"
    if brand.startswith(b"M4A"):
        return "audio/mp4"
    return "video/mp4"


def _is_text(head: bytes, complete: bool) -> bool:
    if b"\x00" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        # The sample may end inside a multi-byte character.
        if complete or exc.start < len(head) - 3:
            return False
    return True


def detect(head: bytes, filename: str, *, complete: bool) -> str:
    """The MIME type of a file starting with ``head`` (``complete``: head is the whole file)."""
    for offset, signature, mime in _SIGNATURES:
        if head[offset : offset + len(signature)] == signature:
            if mime == "application/zip":
                guessed = mimetypes.guess_type(filename, strict=False)[0]
                return guessed if guessed in _ZIP_FAMILY else mime
            return mime
    found = _riff(head) or _iso_media(head)
    if found:
        return found
    if _is_text(head, complete):
        text = head.removeprefix(b"\xef\xbb\xbf")
        if _HTML_START.match(text):
            return "text/html"
        if _SVG.search(text[:2048]):
            return "image/svg+xml"
        guessed = mimetypes.guess_type(filename, strict=False)[0]
        return guessed if guessed in _TEXT_FAMILY else "text/plain"
    return "application/octet-stream"


def type_allowed(mime: str, allowed: list[str], denied: list[str]) -> bool:
    def matches(patterns: list[str]) -> bool:
        family = mime.split("/", 1)[0] + "/*"
        return any(p in (mime, family, "*/*") for p in patterns)

    if matches(denied):
        return False
    return not allowed or matches(allowed)
