"""Process logging: one line per record, the request id when there is one, and secrets redacted."""

from __future__ import annotations

import contextvars
import logging
import re
import sys

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
    for pattern, replacement in _SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class _RedactingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        record.request_id = request_id_var.get()
        return redact(super().format(record))


def configure_logging(service: str, level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        _RedactingFormatter(
            f"%(asctime)s %(levelname)s {service} [%(request_id)s] %(name)s: %(message)s",
            datefmt="%Y-%m-%dT%H:%M:%S",
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Library chatter at info level drowns the service's own lines.
    for noisy in ("nats", "httpx", "httpcore", "sqlalchemy.engine", "chdb"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
