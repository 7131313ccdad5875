"""Process logging: one line per record, the request id when there is one, and secrets redacted."""

from __future__ import annotations

import asyncio
import contextvars
import logging
import re
import sys
import time
from typing import TextIO

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")

# Tokens can reach a log line through a URL (?access_token=), a header dump or an exception message.
_SECRET_PATTERNS = [
    (re.compile(r"(?i)((?:access|refresh)_token=)[^&\s\"']+"), r"\1[redacted]"),
    (re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+"), r"\1[redacted]"),
    (
        re.compile(r"(?i)(\"(?:access_token|refresh_token|password|jwt_secret|api_key)\"\s*:\s*\")[^\"]*"),
        r"\1[redacted]",
    ),
    # user:password@ in a URL; the user may be empty (redis://:password@host), the password holds no "/".
    (re.compile(r"(?i)(://[^:/@\s]*:)[^@/\s]+@"), r"\1[redacted]@"),
]


def redact(text: str) -> str:
    # Each pattern needs one of these; most lines (an access-log line) have none and skip the regexes.
    lowered = text.lower()
    if "token=" not in lowered and "bearer" not in lowered and '"' not in text and "://" not in text:
        return text
    for pattern, replacement in _SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class _RedactingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        record.request_id = request_id_var.get()
        return redact(super().format(record))


class _TurnBatchingHandler(logging.StreamHandler[TextIO]):
    """One line per record, the lines of one event-loop turn written together.

    A busy service finishes several requests in one turn of its event loop, and an access-log line written
    on its own is a system call each. Records below WARNING logged from the loop wait for the end of the
    turn (they reach the file before the loop next waits for sockets, so no reader sees them late);
    warnings and errors, and records from other threads or outside a loop, are written at once, after
    whatever waits, so the order holds."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__(stream)
        self._pending: list[str] = []
        self._last: logging.LogRecord | None = None

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + self.terminator
        except Exception:
            self.handleError(record)
            return
        self._queue(line, record.levelno, record)

    def emit_info_line(self, line: str) -> None:
        """A line already formatted (see ``info_line``), at INFO."""
        self._queue(line + self.terminator, logging.INFO, None)

    def _queue(self, line: str, levelno: int, record: logging.LogRecord | None) -> None:
        loop = None
        if levelno < logging.WARNING:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                loop = None
        with self.lock:  # type: ignore[union-attr]
            first = not self._pending
            self._pending.append(line)
            self._last = record
        if loop is None:
            self._write_pending()
        elif first:
            loop.call_soon(self._write_pending)

    def _write_pending(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            lines, self._pending = self._pending, []
            if not lines:
                return
            try:
                self.stream.write("".join(lines))
                self.stream.flush()
            except Exception:
                # Lines written by info_line have no record of their own: report against a stand-in.
                self.handleError(self._last or logging.makeLogRecord({"msg": lines[-1].rstrip("\n")}))

    def flush(self) -> None:
        self._write_pending()
        super().flush()


# The handler configure_logging installed, its formatter and the service it names, for info_line.
_installed: tuple[_TurnBatchingHandler, logging.Formatter, str] | None = None
_DATE_FORMAT = "%Y-%m-%dT%H:%M:%S"
# The formatted time of the current second: a busy service logs many lines within one.
_stamp: tuple[int, str] = (-1, "")


def _timestamp() -> str:
    global _stamp
    now = int(time.time())
    if _stamp[0] != now:
        _stamp = (now, time.strftime(_DATE_FORMAT, time.localtime(now)))
    return _stamp[1]


def info_line(logger: logging.Logger, message: str) -> None:
    """``logger.info(message)`` for a line written on every request (the gateway's access log): the same
    line, redacted alike, without building a LogRecord and running the formatter, which took about a fifth
    of the gateway's CPU per proxied request. Whenever anything else would see the record (another
    handler, a filter: a test capturing logs), it goes the ordinary way."""
    if not logger.isEnabledFor(logging.INFO):
        return
    installed = _installed
    root = logging.root
    if (
        installed is None
        or logger.handlers
        or logger.filters
        or not logger.propagate
        or logger.parent is not root
        or len(root.handlers) != 1
        or root.handlers[0] is not installed[0]
        or root.filters
        or installed[0].filters
        or installed[0].level > logging.INFO
        or installed[0].formatter is not installed[1]
    ):
        logger.info("%s", message)
        return
    handler, _, service = installed
    line = f"{_timestamp()} INFO {service} [{request_id_var.get()}] {logger.name}: {message}"
    handler.emit_info_line(redact(line))


def configure_logging(service: str, level: str = "info", stream: TextIO | None = None) -> None:
    global _installed
    handler = _TurnBatchingHandler(stream if stream is not None else sys.stderr)
    formatter = _RedactingFormatter(
        f"%(asctime)s %(levelname)s {service} [%(request_id)s] %(name)s: %(message)s",
        datefmt=_DATE_FORMAT,
    )
    handler.setFormatter(formatter)
    _installed = (handler, formatter, service)
    # The format names no source line, thread or process: skip collecting them for every record (the
    # "Optimization" advice of the logging HOWTO).
    logging._srcfile = None  # type: ignore[attr-defined]
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Library chatter at info level drowns the service's own lines.
    for noisy in ("nats", "httpx", "httpcore", "sqlalchemy.engine", "chdb"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
