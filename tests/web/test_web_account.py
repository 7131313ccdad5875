"""The account in the profile dialog, in a real browser against the real stack: changing the password (the
other sessions end, this one goes on) and signing out everywhere."""

from __future__ import annotations

import json

import httpx
import pytest
from playwright.async_api import expect

from tests.conftest import create_chat, signup, unique_email
from tests.web import ui
from tests.web.conftest import NewPage

pytestmark = pytest.mark.e2e

NEW_PASSWORD = "battery staple 2"


async def test_change_password_then_sign_out_everywhere(new_page: NewPage, client: httpx.AsyncClient) -> None:
    email = unique_email("ann")
    ann = await signup(
        client, email=email, password=ui.PASSWORD, fullname="Ann Account", workspace_name="Acct"
    )
    other_device = await client.post("/api/signin", json={"email": email, "password": ui.PASSWORD})
    other_refresh = other_device.json()["data"]["refresh_token"]
    await create_chat(client, ann, [], name="notes", chat_type="PrivateChannel")

    page = await new_page()
    await ui.sign_in(page, email)
    await page.get_by_role("button", name="Ann Account").click()
    profile = page.get_by_role("dialog", name="Profile")

    # A mistyped repeat is caught before anything is sent; a wrong current password is refused.
    await profile.get_by_label("Current password").fill(ui.PASSWORD)
    await profile.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
    await profile.get_by_label("New password again").fill(NEW_PASSWORD + "x")
    await profile.get_by_role("button", name="Change password").click()
    await expect(profile.get_by_role("alert")).to_have_text("The two new passwords differ")
    await profile.get_by_label("Current password").fill("not my password")
    await profile.get_by_label("New password again").fill(NEW_PASSWORD)
    await profile.get_by_role("button", name="Change password").click()
    await expect(profile.get_by_role("alert")).to_have_text("The current password is incorrect")
    assert (
        await client.post("/api/signin", json={"email": email, "password": ui.PASSWORD})
    ).status_code == 200

    await profile.get_by_label("Current password").fill(ui.PASSWORD)
    await profile.get_by_role("button", name="Change password").click()
    await expect(profile.get_by_role("status")).to_have_text(
        "Password changed. Your other sessions have ended."
    )
    old = await client.post("/api/signin", json={"email": email, "password": ui.PASSWORD})
    assert old.status_code == 401
    revoked = await client.post("/api/refresh", json={"refresh_token": other_refresh})
    assert revoked.status_code == 401
    # This browser goes on: it keeps the session the change returned (the one it had before is revoked, so
    # its refresh token working proves it was replaced; the test renews it behind the browser's back).
    stored = json.loads(await page.evaluate("localStorage.getItem('fechatter.session')"))
    renewed = await client.post("/api/refresh", json={"refresh_token": stored["refresh_token"]})
    assert renewed.status_code == 200, renewed.text
    await profile.get_by_role("button", name="Done").click()
    await page.get_by_role("link", name="notes").click()
    await ui.send(page, "still here after the change")
    await ui.wait_sent(page)

    # Sign out everywhere: back to the sign-in page, and no session of the account renews any more.
    second = await client.post("/api/signin", json={"email": email, "password": NEW_PASSWORD})
    second_refresh = second.json()["data"]["refresh_token"]
    await page.get_by_role("button", name="Ann Account").click()
    page.once("dialog", lambda dialog: dialog.accept())
    await page.get_by_role("dialog", name="Profile").get_by_role("button", name="Sign out everywhere").click()
    await expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    assert (await client.post("/api/refresh", json={"refresh_token": second_refresh})).status_code == 401
    again = await client.post("/api/signin", json={"email": email, "password": NEW_PASSWORD})
    assert again.status_code == 200
