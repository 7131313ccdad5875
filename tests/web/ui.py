"""What a person does in the web client, step by step, by accessible names."""

from __future__ import annotations

import itertools
import os

from playwright.async_api import Locator, Page, expect

PASSWORD = "correct horse 1"
_n = itertools.count(1)


def email(prefix: str) -> str:
    return f"{prefix}{next(_n)}-{os.getpid()}@web.example.test"


async def sign_up(
    page: Page, fullname: str, address: str, workspace: str | None = None, invite_link: str | None = None
) -> None:
    await page.goto(invite_link or "/signup")
    await page.get_by_label("Full name").fill(fullname)
    await page.get_by_label("Email").fill(address)
    await page.get_by_label("Password").fill(PASSWORD)
    if workspace is not None:
        await page.get_by_label("Workspace name").fill(workspace)
    await page.get_by_role("button", name="Sign up").click()
    await expect(page.get_by_role("navigation", name="Workspace")).to_be_visible()


async def sign_in(page: Page, address: str) -> None:
    await page.goto("/")
    await page.get_by_label("Email").fill(address)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("navigation", name="Workspace")).to_be_visible()


def messages(page: Page) -> Locator:
    return page.get_by_role("list", name="Messages").get_by_role("listitem")


async def send(page: Page, text: str) -> None:
    box = page.get_by_role("textbox", name="Message")
    await box.fill(text)
    await page.get_by_role("button", name="Send").click()


async def wait_sent(page: Page) -> None:
    """Every pending message of this page acknowledged by the server."""
    await expect(page.get_by_text("Sending…")).to_have_count(0)


def unread_badge(page: Page, chat_name: str) -> Locator:
    return page.get_by_label(f"unread messages in {chat_name}").or_(
        page.get_by_label(f"unread message in {chat_name}")
    )
