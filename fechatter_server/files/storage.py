"""Content-addressed blob storage on the local disk.

A blob lives at ``<root>/<h[0:2]>/<h[2:4]>/<h>`` where ``h`` is the SHA-256 of its bytes. It is written to
``<root>/tmp/`` first, flushed to disk, then renamed into place, so a reader never sees half a file and a
crash leaves only a temp file behind. Equal content is stored once: when the target already exists the
new copy is simply dropped. Blobs are never served from a static path; the files routes check access first.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import uuid
from pathlib import Path

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


# How much of an upload is kept in memory before it is written out: big enough that the thread hop per write
# costs little, small enough that many concurrent uploads stay cheap.
FLUSH_BYTES = 1 << 20


class PendingBlob:
    """A blob being written: bytes go to a temp file and into the hash as they arrive.

    ``write`` blocks (for threads); an upload on the event loop ``add``s chunks instead and, when ``add`` says
    so, runs ``flush`` in a thread, so disk writes and hashing never stall other requests."""

    def __init__(self, store: BlobStore) -> None:
        self.store = store
        self.path = store.tmp_dir / f"{uuid.uuid4().hex}.part"
        self._file = open(self.path, "wb")  # noqa: SIM115 - closed by finish() or discard()
        self._hash = hashlib.sha256()
        self._buffer = bytearray()
        self.size = 0

    def write(self, chunk: bytes) -> None:
        self.size += len(chunk)
        self._write_out(chunk)

    def add(self, chunk: bytes) -> bool:
        """Keep ``chunk`` in memory; True once enough is kept that it should be flushed."""
        self._buffer += chunk
        self.size += len(chunk)
        return len(self._buffer) >= FLUSH_BYTES

    def flush(self) -> None:
        """Write out what ``add`` kept (blocking)."""
        if self._buffer:
            data = bytes(self._buffer)
            self._buffer.clear()
            self._write_out(data)

    def _write_out(self, data: bytes) -> None:
        self._file.write(data)
        self._hash.update(data)

    def finish(self) -> str:
        """Flush and close the temp file; returns the content hash. The blob is not stored yet."""
        self.flush()
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        return self._hash.hexdigest()

    def discard(self) -> None:
        if not self._file.closed:
            self._file.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


class BlobStore:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()
        self.tmp_dir = self.root / "tmp"

    def ensure(self) -> None:
        self.tmp_dir.mkdir(parents=True, exist_ok=True)

    def path_for(self, sha256: str) -> Path:
        if not _SHA256.match(sha256):
            raise ValueError("not a SHA-256 hex digest")
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def exists(self, sha256: str) -> bool:
        return self.path_for(sha256).is_file()

    def begin(self) -> PendingBlob:
        return PendingBlob(self)

    def commit(self, temp: Path, sha256: str) -> Path:
        """Move a finished temp file into place under its hash (or drop it when that content is stored)."""
        target = self.path_for(sha256)
        if target.is_file():
            temp.unlink(missing_ok=True)
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(temp, target)  # atomic on one filesystem; a concurrent equal upload lands the same bytes
        return target

    def put_bytes(self, data: bytes) -> str:
        """Store small content held in memory (thumbnails); returns its hash."""
        pending = self.begin()
        try:
            pending.write(data)
            sha256 = pending.finish()
            self.commit(pending.path, sha256)
        except BaseException:
            pending.discard()
            raise
        return sha256
