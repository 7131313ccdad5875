"""One account in several workspaces, in a real browser against the real stack: following an invite link
while signed in (or signing in from it), switching between workspaces, and creating one."""

from __future__ import annotations

import httpx
import pytest
from playwright.async_api import Locator, Page, expect

from tests.conftest import create_chat, invite, signup, unique_email
from tests.web import ui
from tests.web.conftest import NewPage

pytestmark = pytest.mark.e2e


def workspace_home(page: Page, name: str) -> Locator:
    return page.get_by_role("link", name=f"{name} home")


async def test_join_by_invite_switch_and_create_workspaces(
    new_page: NewPage, client: httpx.AsyncClient
) -> None:
    ann = await signup(client, fullname="Ann Owner", workspace_name="Acme")
    dan_email = unique_email("dan")
    dan = await signup(
        client, email=dan_email, password=ui.PASSWORD, fullname="Dan", workspace_name="Dan Home"
    )
    await create_chat(client, dan, [], name="dan-notes", chat_type="PrivateChannel")

    # Dan, signed in to his own workspace, follows Ann's invite link and joins with his account.
    page = await new_page()
    await ui.sign_in(page, dan_email)
    await expect(workspace_home(page, "Dan Home")).to_be_visible()
    await page.goto(f"/invite/{await invite(client, ann)}")
    await expect(page.get_by_role("heading", name="Join a workspace")).to_be_visible()
    await page.get_by_role("button", name="Join the workspace").click()
    await expect(workspace_home(page, "Acme")).to_be_visible()
    await expect(page.get_by_role("link", name="dan-notes")).to_have_count(0)
    await expect(page.get_by_role("img", name="Connected")).to_be_visible()

    # Live in the new workspace: Ann adds him to a group and it appears.
    await create_chat(client, ann, [dan], name="launch", chat_type="Group")
    await expect(page.get_by_role("link", name="launch")).to_be_visible()

    # Back to his own workspace, and its chats only.
    await page.get_by_role("button", name="Workspaces").click()
    dialog = page.get_by_role("dialog", name="Workspaces")
    await expect(dialog.get_by_role("list", name="Your workspaces").get_by_role("listitem")).to_have_count(2)
    await dialog.get_by_role("button", name="Switch to Dan Home").click()
    await expect(workspace_home(page, "Dan Home")).to_be_visible()
    await expect(page.get_by_role("link", name="dan-notes")).to_be_visible()
    await expect(page.get_by_role("link", name="launch")).to_have_count(0)
    # The session is the new workspace's on a reload too.
    await page.reload()
    await expect(workspace_home(page, "Dan Home")).to_be_visible()

    # A new workspace of his own, empty.
    await page.get_by_role("button", name="Workspaces").click()
    dialog = page.get_by_role("dialog", name="Workspaces")
    await dialog.get_by_label("Create a workspace").fill("Side Project")
    await dialog.get_by_role("button", name="Create").click()
    await expect(workspace_home(page, "Side Project")).to_be_visible()
    await expect(page.get_by_role("link", name="dan-notes")).to_have_count(0)
    mine = await client.get("/api/workspaces", headers=dan.auth)
    assert sorted(w["name"] for w in mine.json()["data"]) == ["Acme", "Dan Home", "Side Project"]


async def test_an_invite_link_signs_in_and_joins(new_page: NewPage, client: httpx.AsyncClient) -> None:
    """Someone with an account who is not signed in follows an invite link: "I have an account" signs them
    in straight into the invite's workspace."""
    ann = await signup(client, fullname="Ann Owner", workspace_name="Beta Team")
    eve_email = unique_email("eve")
    await signup(client, email=eve_email, password=ui.PASSWORD, fullname="Eve", workspace_name="Eve Home")

    page = await new_page()
    await page.goto(f"/invite/{await invite(client, ann)}")
    await page.get_by_role("link", name="I have an account").click()
    await page.get_by_label("Email").fill(eve_email)
    await page.get_by_label("Password").fill(ui.PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await expect(workspace_home(page, "Beta Team")).to_be_visible()
    await expect(page.get_by_role("img", name="Connected")).to_be_visible()


async def test_open_invites_are_listed_and_can_be_revoked(
    new_page: NewPage, client: httpx.AsyncClient
) -> None:
    email = unique_email("ann")
    await signup(client, email=email, password=ui.PASSWORD, fullname="Ann Owner", workspace_name="Gamma")
    page = await new_page()
    await ui.sign_in(page, email)
    await page.get_by_role("button", name="Invite people").click()
    dialog = page.get_by_role("dialog", name="Invite people")
    first = await dialog.get_by_label("Invite code").input_value()
    await dialog.get_by_role("button", name="New link").click()
    await expect(dialog.get_by_label("Invite code")).not_to_have_value(first)
    second = await dialog.get_by_label("Invite code").input_value()
    listed = dialog.get_by_role("list", name="Open invites").get_by_role("listitem")
    await expect(listed).to_have_count(2)

    await dialog.get_by_role("button", name=f"Revoke the invite {first[:8]}").click()
    await expect(listed).to_have_count(1)
    await expect(listed).to_contain_text(second[:8])
    body = {"password": ui.PASSWORD, "fullname": "Late Comer"}
    refused = await client.post(
        "/api/signup", json={**body, "email": unique_email("late"), "invite_code": first}
    )
    assert refused.status_code != 201, refused.text
    welcome = await client.post(
        "/api/signup", json={**body, "email": unique_email("ok"), "invite_code": second}
    )
    assert welcome.status_code == 201, welcome.text
    await page.get_by_role("button", name="Close").click()
    # Opening the dialog again shows the open invite rather than making another; it lists its use.
    await page.get_by_role("button", name="Invite people").click()
    await expect(dialog.get_by_label("Invite code")).to_have_value(second)
    await expect(listed).to_have_count(1)
    await expect(listed).to_contain_text("used 1")


async def test_people_directory_roles_and_a_direct_message(
    new_page: NewPage, client: httpx.AsyncClient
) -> None:
    email = unique_email("ann")
    ann = await signup(
        client, email=email, password=ui.PASSWORD, fullname="Ann Owner", workspace_name="Delta"
    )
    ben = await signup(client, fullname="Ben Member", invite_code=await invite(client, ann))
    page = await new_page()
    await ui.sign_in(page, email)
    await page.get_by_role("button", name="People", exact=True).click()
    dialog = page.get_by_role("dialog", name="People")
    people = dialog.get_by_role("list", name="People of this workspace").get_by_role("listitem")
    await expect(people.filter(has_text="Ann Owner")).to_contain_text("owner")
    await expect(dialog.get_by_role("button", name="Make Ben Member an admin")).to_be_visible()

    # The owner makes Ben an admin, who may then invite people; and back.
    await dialog.get_by_role("button", name="Make Ben Member an admin").click()
    await expect(dialog.get_by_role("button", name="Make Ben Member a member")).to_be_visible()
    assert (await client.post("/api/workspace/invites", headers=ben.auth, json={})).status_code == 201
    await dialog.get_by_role("button", name="Make Ben Member a member").click()
    await expect(dialog.get_by_role("button", name="Make Ben Member an admin")).to_be_visible()
    assert (await client.post("/api/workspace/invites", headers=ben.auth, json={})).status_code == 403
    await expect(dialog.get_by_role("button", name="Make Ann Owner an admin")).to_have_count(0)

    # A direct message from the directory.
    await dialog.get_by_label("Find someone").fill("ben")
    await expect(people).to_have_count(1)
    await dialog.get_by_role("button", name="Message Ben Member").click()
    await expect(page.get_by_role("heading", name="Ben Member")).to_be_visible()


async def test_removing_someone_and_leaving_a_workspace(new_page: NewPage, client: httpx.AsyncClient) -> None:
    ann_email, ben_email, cat_email = unique_email("ann"), unique_email("ben"), unique_email("cat")
    ann = await signup(
        client, email=ann_email, password=ui.PASSWORD, fullname="Ann Owner", workspace_name="Epsilon"
    )
    fields = {"password": ui.PASSWORD}
    ben = await signup(
        client, email=ben_email, fullname="Ben Member", invite_code=await invite(client, ann), **fields
    )
    await signup(
        client, email=cat_email, fullname="Cat Member", invite_code=await invite(client, ann), **fields
    )
    general = await create_chat(client, ann, [ben], name="general", chat_type="PublicChannel")
    sent = await client.post(
        f"/api/chat/{general['id']}/messages", headers=ben.auth, json={"content": "hi from ben"}
    )
    assert sent.status_code == 201, sent.text

    ben_page = await new_page()
    await ui.sign_in(ben_page, ben_email)
    await expect(ben_page.get_by_role("img", name="Connected")).to_be_visible()
    page = await new_page()
    await ui.sign_in(page, ann_email)

    # The owner removes Ben from the People directory.
    await page.get_by_role("button", name="People", exact=True).click()
    dialog = page.get_by_role("dialog", name="People")
    people = dialog.get_by_role("list", name="People of this workspace").get_by_role("listitem")
    await expect(people.filter(has_text="Ben Member")).to_have_count(1)
    await expect(dialog.get_by_role("button", name="Remove Ann Owner from the workspace")).to_have_count(0)
    page.once("dialog", lambda confirm: confirm.accept())
    await dialog.get_by_role("button", name="Remove Ben Member from the workspace").click()
    await expect(people.filter(has_text="Ben Member")).to_have_count(0)
    await dialog.get_by_role("button", name="Close").click()

    # Ben's open tab is signed out at once, and told why.
    await expect(ben_page.get_by_role("status")).to_have_text("You were removed from Epsilon.")
    await expect(ben_page.get_by_role("heading", name="Sign in to Fechatter")).to_be_visible()
    # His message stays, under his name.
    await page.get_by_role("link", name="general").click()
    await expect(ui.messages(page).filter(has_text="hi from ben")).to_contain_text("Ben Member (left)")

    # Cat leaves by herself.
    cat_page = await new_page()
    await ui.sign_in(cat_page, cat_email)
    await cat_page.get_by_role("button", name="Workspaces").click()
    cat_dialog = cat_page.get_by_role("dialog", name="Workspaces")
    cat_page.once("dialog", lambda confirm: confirm.accept())
    await cat_dialog.get_by_role("button", name="Leave Epsilon").click()
    await expect(cat_page.get_by_role("status")).to_have_text("You left Epsilon.")
    # With no workspace left, signing in says so.
    await cat_page.get_by_label("Email").fill(cat_email)
    await cat_page.get_by_label("Password").fill(ui.PASSWORD)
    await cat_page.get_by_role("button", name="Sign in").click()
    await expect(cat_page.get_by_role("alert")).to_contain_text("no longer belongs to any workspace")
    roles = {u["fullname"] for u in (await client.get("/api/users", headers=ann.auth)).json()["data"]}
    assert "Cat Member" not in roles and "Ben Member" not in roles
