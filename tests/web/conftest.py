"""Browser fixtures: Debian's chromium driven by Playwright against the real stack, which serves the built
web client. On failure every open page is saved as a screenshot under test-artifacts/."""

from __future__ import annotations

import contextlib
import re
import shutil
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, BrowserContext, Page, async_playwright

from tests.stackutil import REPO_ROOT, RunningStack

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
FRONTEND = REPO_ROOT / "fechatter_frontend"
ARTIFACTS = REPO_ROOT / "test-artifacts"

NewPage = Callable[..., Awaitable[Page]]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    setattr(item, f"report_{report.when}", report)


@pytest.fixture(scope="session")
def web_dist() -> Path:
    """The built client, built once for the session when it is missing or older than its sources."""
    index = FRONTEND / "dist" / "index.html"
    if shutil.which("npm") is None and not index.exists():
        pytest.skip("Node.js (npm) is needed to build the web client")
    subprocess.run([str(FRONTEND / "scripts" / "ensure-built.sh")], check=True, timeout=900)
    assert index.exists()
    return index.parent


@pytest.fixture(scope="session")
async def browser(web_dist: Path) -> AsyncIterator[Browser]:
    if not CHROMIUM.exists():
        pytest.skip("chromium is not installed (apt-get install -y chromium; .ci/run does it)")
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
async def new_page(
    browser: Browser, stack: RunningStack, request: pytest.FixtureRequest
) -> AsyncIterator[NewPage]:
    """Open pages, each in its own browser context (its own storage: another person)."""
    contexts: list[BrowserContext] = []

    async def open_page(width: int = 1200, height: int = 800, **options: Any) -> Page:
        """``options`` go to the browser context (e.g. ``has_touch``, ``is_mobile`` for a phone)."""
        context = await browser.new_context(
            base_url=stack.url, viewport={"width": width, "height": height}, **options
        )
        context.set_default_timeout(10_000)
        contexts.append(context)
        return await context.new_page()

    try:
        yield open_page
    finally:
        report = getattr(request.node, "report_call", None)
        if report is not None and report.failed:
            ARTIFACTS.mkdir(exist_ok=True)
            name = re.sub(r"[^\w.-]+", "_", request.node.name)
            for i, context in enumerate(contexts):
                for j, page in enumerate(context.pages):
                    # A page that cannot be captured must not hide the test's own failure.
                    with contextlib.suppress(Exception):
                        await page.screenshot(path=str(ARTIFACTS / f"{name}-{i}-{j}.png"), full_page=True)
        for context in contexts:
            await context.close()
