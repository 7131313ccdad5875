"""A real local HTTP server that answers like Meilisearch, from recorded request/response pairs.

No Meilisearch binary can run here, so the search engine's client and indexer are tested against this
server: it answers each documented route with the recorded response (``tests/integration/
meili_recorded.json``), numbering tasks, and keeps every request it received for the test to inspect.
A test may queue the hits of the next search answers, or make the next answers fail as Meilisearch does.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

RECORDED = json.loads((Path(__file__).parent / "integration" / "meili_recorded.json").read_text())


def _route(method: str, path: str) -> str:
    if method == "GET" and re.fullmatch(r"/tasks/\d+", path):
        return "GET /tasks/{uid}"
    return f"{method} {path}"


class MeiliStub:
    def __init__(self, key: str = "") -> None:
        self.key = key
        self.requests: list[dict[str, Any]] = []
        self.search_hits: deque[list[dict[str, Any]]] = deque()
        self.failures = 0  # answer this many next requests with the recorded 503
        # When set, computes the hits of a search answer from its request body.
        self.on_search: Any = None
        self._pairs = {_route(p["request"]["method"], p["request"]["path"]): p for p in RECORDED["pairs"]}
        self._task = 0
        self._lock = threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                return None

            def _answer(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b""
                path, _, query = self.path.partition("?")
                status, body = stub.answer(self.command, path, query, raw, dict(self.headers))
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _answer

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> MeiliStub:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def answer(
        self, method: str, path: str, query: str, raw: bytes, headers: dict[str, str]
    ) -> tuple[int, Any]:
        body = json.loads(raw) if raw else None
        with self._lock:
            self.requests.append(
                {
                    "method": method,
                    "path": path,
                    "query": query,
                    "body": body,
                    "headers": headers,
                    "at": time.time(),
                }
            )
            if self.failures > 0:
                self.failures -= 1
                pair = self._pairs["ANY unavailable"]
                return pair["response"]["status"], pair["response"]["body"]
            pair = self._pairs.get(_route(method, path))
            if pair is None:
                pair = self._pairs["ANY unknown"]
                return pair["response"]["status"], pair["response"]["body"]
            answer = json.loads(json.dumps(pair["response"]["body"]))
            if "taskUid" in answer:
                self._task += 1
                answer["taskUid"] = self._task
            if path.startswith("/tasks/"):
                answer["uid"] = int(path.rsplit("/", 1)[1])
            if path.endswith("/search"):
                if self.on_search is not None:
                    answer["hits"] = self.on_search(body)
                else:
                    answer["hits"] = self.search_hits.popleft() if self.search_hits else []
                answer["query"] = body.get("q", "")
                answer["limit"] = body.get("limit", 20)
                answer["offset"] = body.get("offset", 0)
                answer["estimatedTotalHits"] = len(answer["hits"])
            return pair["response"]["status"], answer

    def received(self, method: str, path: str) -> list[dict[str, Any]]:
        with self._lock:
            return [r for r in self.requests if r["method"] == method and r["path"] == path]

    def wait_for(self, method: str, path: str, predicate: Any = None, timeout: float = 5.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for request in self.received(method, path):
                if predicate is None or predicate(request):
                    return request
            time.sleep(0.02)
        raise AssertionError(f"no {method} {path} matching within {timeout} s; got {self.requests[-5:]}")
