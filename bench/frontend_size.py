"""Gzip size of what the web client's first load fetches (the JS and CSS index.html names).

    .venv/bin/python bench/frontend_size.py            # sizes of fechatter_frontend/dist (build it first)
    .venv/bin/python bench/frontend_size.py --cold-load  # also: time to the first message list, real stack

The cold load starts a stack on free ports, fills a chat with 200 messages, then opens that chat in a fresh
chromium context (empty cache) and times navigation start -> the "Messages" list showing its last message.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DIST = ROOT / "fechatter_frontend" / "dist"
GOAL_JS_KB = 250


def first_load_assets(dist: Path) -> list[Path]:
    html = (dist / "index.html").read_text()
    refs = re.findall(r'(?:src|href)="(/assets/[^"]+\.(?:js|css))"', html)
    return [dist / ref.lstrip("/") for ref in dict.fromkeys(refs)]


def sizes(dist: Path) -> dict[str, tuple[int, int]]:
    out: dict[str, tuple[int, int]] = {}
    for kind in ("js", "css"):
        files = [p for p in first_load_assets(dist) if p.suffix == f".{kind}"]
        raw = sum(p.stat().st_size for p in files)
        zipped = sum(len(gzip.compress(p.read_bytes(), compresslevel=9)) for p in files)
        out[kind] = (raw, zipped)
    return out


async def cold_load(runs: int) -> list[float]:
    import httpx
    from playwright.async_api import async_playwright

    sys.path.insert(0, str(ROOT))
    from tests.stackutil import make_stack
    from tests.web.conftest import CHROMIUM, CHROMIUM_FLAGS

    with tempfile.TemporaryDirectory(prefix="fechatter-bench-") as tmp:
        stack = make_stack(Path(tmp) / "data")
        stack.start()
        try:
            async with httpx.AsyncClient(base_url=stack.url, timeout=30) as http:
                email = f"bench{int(time.time())}@bench.test"
                body = {
                    "email": email,
                    "password": "correct horse 1",
                    "fullname": "Bench",
                    "workspace_name": "Bench",
                }
                session = (await http.post("/api/signup", json=body)).json()["data"]
                auth = {"Authorization": f"Bearer {session['access_token']}"}
                chat_body = {"name": "bench", "chat_type": "PublicChannel", "members": []}
                chat = (await http.post("/api/workspace/chats", headers=auth, json=chat_body)).json()["data"]
                for i in range(200):
                    await http.post(
                        f"/api/chat/{chat['id']}/messages", headers=auth, json={"content": f"message {i}"}
                    )
            timings = []
            async with async_playwright() as pw:
                browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
                for _ in range(runs):
                    context = await browser.new_context(base_url=stack.url)
                    page = await context.new_page()
                    await page.goto("/signin")
                    await page.get_by_label("Email").fill(email)
                    await page.get_by_label("Password").fill("correct horse 1")
                    await page.get_by_role("button", name="Sign in").click()
                    await page.get_by_role("navigation", name="Workspace").wait_for()
                    fresh = await browser.new_context(
                        base_url=stack.url, storage_state=await context.storage_state()
                    )  # signed in, nothing cached
                    await context.close()
                    page = await fresh.new_page()
                    started = time.perf_counter()
                    await page.goto(f"/chat/{chat['id']}", wait_until="commit")
                    messages = page.get_by_role("list", name="Messages").get_by_role("listitem")
                    await messages.filter(has_text="message 199").wait_for()
                    timings.append((time.perf_counter() - started) * 1000)
                    await fresh.close()
                await browser.close()
            return timings
        finally:
            stack.stop()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dist", type=Path, default=DIST)
    parser.add_argument(
        "--cold-load", action="store_true", help="also time a cold load against a local stack"
    )
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    if not (args.dist / "index.html").exists():
        sys.exit(f"{args.dist}/index.html is missing: run `make frontend-build` first")
    result = sizes(args.dist)
    for kind, (raw, zipped) in result.items():
        print(f"first-load {kind.upper():3} {raw / 1024:8.1f} KB raw {zipped / 1024:8.1f} KB gzip")
    js_kb = result["js"][1] / 1024
    print(
        f"JS budget: {js_kb:.1f} KB of {GOAL_JS_KB} KB gzip ({'within' if js_kb <= GOAL_JS_KB else 'OVER'})"
    )
    if args.cold_load:
        timings = asyncio.run(cold_load(args.runs))
        median, low, high = statistics.median(timings), min(timings), max(timings)
        print(
            f"cold load to the message list (200 messages, {len(timings)} runs): "
            f"median {median:.0f} ms, min {low:.0f} ms, max {high:.0f} ms"
        )


if __name__ == "__main__":
    main()
