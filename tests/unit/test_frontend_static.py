"""The gateway's web-client handler: SPA fallback, cache headers, content types, the placeholder."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from litestar import Litestar

from fechatter_core.web import EXCEPTION_HANDLERS
from gateway.frontend import frontend_handlers


def client_for(dist: Path) -> httpx.AsyncClient:
    app = Litestar(route_handlers=frontend_handlers(str(dist)), exception_handlers=EXCEPTION_HANDLERS)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway")


@pytest.fixture
def dist(tmp_path: Path) -> Path:
    root = tmp_path / "dist"
    (root / "assets").mkdir(parents=True)
    (root / "index.html").write_text(
        '<!doctype html><script type="module" src="/assets/index-abc123.js"></script>'
    )
    (root / "assets" / "index-abc123.js").write_text("console.log('app')")
    (root / "assets" / "index-abc123.css").write_text("body{}")
    (root / "robots.txt").write_text("User-agent: *")
    (tmp_path / "secret.txt").write_text("outside the dist folder")
    return root


async def test_app_routes_fall_back_to_index_html_which_is_never_cached(dist: Path) -> None:
    async with client_for(dist) as http:
        for path in ("/", "/signin", "/chat/42", "/invite/abc-DEF_1"):
            response = await http.get(path)
            assert response.status_code == 200, path
            assert response.headers["content-type"].startswith("text/html"), path
            assert response.headers["cache-control"] == "no-cache", path
            assert "/assets/index-abc123.js" in response.text
        assert (await http.get("/index.html")).headers["cache-control"] == "no-cache"


async def test_hashed_assets_are_cached_for_a_year_with_their_content_type(dist: Path) -> None:
    async with client_for(dist) as http:
        js = await http.get("/assets/index-abc123.js")
        assert js.status_code == 200
        assert "javascript" in js.headers["content-type"]
        assert js.headers["cache-control"] == "public, max-age=31536000, immutable"
        css = await http.get("/assets/index-abc123.css")
        assert css.headers["content-type"].startswith("text/css")
        other = await http.get("/robots.txt")
        assert other.status_code == 200
        assert other.headers["cache-control"] == "no-cache"


async def test_missing_files_are_404_not_the_app(dist: Path) -> None:
    async with client_for(dist) as http:
        for path in ("/assets/index-old999.js", "/favicon.ico", "/assets/nothing"):
            response = await http.get(path)
            assert response.status_code == 404, path
            assert response.json()["error"]["code"] == "not_found"


async def test_paths_cannot_leave_the_dist_folder(dist: Path) -> None:
    async with client_for(dist) as http:
        for path in ("/../secret.txt", "/%2e%2e/secret.txt", "/assets/..%2f..%2fsecret.txt"):
            response = await http.get(path)
            assert "outside the dist folder" not in response.text, path


async def test_placeholder_until_the_client_is_built(tmp_path: Path) -> None:
    async with client_for(tmp_path / "missing") as http:
        response = await http.get("/chat/1")
        assert response.status_code == 200
        assert "Fechatter is running" in response.text
        assert "make frontend-build" in response.text
