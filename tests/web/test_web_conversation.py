"""Conversation features in a real browser against the real stack: what one person does (edit, delete, reply,
react, type) the other sees live; theme, search filters, presence and the phone layout."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
from dataclasses import dataclass

import httpx
import pytest
from playwright.async_api import Locator, Page, expect

from tests.conftest import User, create_chat, invite, signup, unique_email
from tests.web import ui
from tests.web.conftest import NewPage

pytestmark = pytest.mark.e2e

ANN, BEN = "Ann Author", "Ben Reader"


@dataclass
class Pair:
    ann: Page
    ben: Page
    ann_user: User
    ben_user: User
    chat: dict
    emails: dict[int, str]


async def two_people(client: httpx.AsyncClient) -> tuple[User, User, dict[int, str]]:
    """Ann owns a fresh workspace and Ben joined it by invite; their email addresses by user id."""
    ann_email, ben_email = unique_email("ann"), unique_email("ben")
    ann = await signup(client, email=ann_email, fullname=ANN, workspace_name="Conversation")
    ben = await signup(client, email=ben_email, fullname=BEN, invite_code=await invite(client, ann))
    return ann, ben, {ann.id: ann_email, ben.id: ben_email}


async def pair_in_chat(new_page: NewPage, client: httpx.AsyncClient, name: str) -> Pair:
    """Ann and Ben, each in their own browser, both looking at the group chat ``name``."""
    ann_user, ben_user, emails = await two_people(client)
    chat = await create_chat(client, ann_user, [ben_user], name=name, chat_type="Group")
    ann, ben = await new_page(), await new_page()
    for page, user in ((ann, ann_user), (ben, ben_user)):
        await ui.sign_in(page, emails[user.id])
        await page.get_by_role("link", name=name).click()
        await expect(page.get_by_role("heading", name=name)).to_be_visible()
        # Live from here on: the stream is open before anything is said.
        await expect(page.get_by_role("img", name="Connected")).to_be_visible()
    return Pair(ann, ben, ann_user, ben_user, chat, emails)


def message(page: Page, text: str) -> Locator:
    return ui.messages(page).filter(has_text=text)


async def use_tool(page: Page, text: str, tool: str) -> None:
    """Point at a message (its tools show on hover) and press one of them."""
    item = message(page, text)
    await item.hover()
    await item.get_by_role("button", name=tool, exact=True).click()


async def test_an_edit_reaches_the_other_person_live(new_page: NewPage, client: httpx.AsyncClient) -> None:
    p = await pair_in_chat(new_page, client, "edits")
    await ui.send(p.ann, "first draft")
    await expect(message(p.ben, "first draft")).to_have_count(1)

    await use_tool(p.ann, "first draft", "Edit")
    editor = p.ann.get_by_role("textbox", name="Edit message")
    await expect(editor).to_have_value("first draft")
    await editor.fill("final wording")
    await editor.press("Enter")

    await expect(message(p.ben, "final wording")).to_have_count(1)
    await expect(message(p.ben, "final wording")).to_contain_text("(edited)")
    await expect(message(p.ben, "first draft")).to_have_count(0)
    # Only the sender may edit: Ben's tools on Ann's message have no Edit.
    await message(p.ben, "final wording").hover()
    await expect(
        message(p.ben, "final wording").get_by_role("button", name="Reply", exact=True)
    ).to_be_visible()
    await expect(
        message(p.ben, "final wording").get_by_role("button", name="Edit", exact=True)
    ).to_have_count(0)
    # The server has it too.
    await p.ben.reload()
    await expect(message(p.ben, "final wording")).to_contain_text("(edited)")


async def test_arrow_up_in_an_empty_box_edits_ones_last_message(
    new_page: NewPage, client: httpx.AsyncClient
) -> None:
    p = await pair_in_chat(new_page, client, "quick edits")
    await ui.send(p.ann, "first thought")
    await ui.send(p.ann, "teh plan")
    await ui.send(p.ben, "what plan?")  # the last message of the chat is not Ann's
    await expect(message(p.ann, "what plan?")).to_have_count(1)
    await ui.wait_sent(p.ann)

    box = p.ann.get_by_role("textbox", name="Message")
    await box.press("ArrowUp")
    editor = p.ann.get_by_role("textbox", name="Edit message")
    await expect(editor).to_be_focused()
    await expect(editor).to_have_value("teh plan")
    await editor.fill("the plan")
    await editor.press("Enter")
    await expect(message(p.ben, "the plan")).to_contain_text("(edited)")
    await expect(box).to_be_focused()
    # Escape leaves the editor unchanged; with text in the box, ↑ is only a cursor key.
    await box.press("ArrowUp")
    await expect(editor).to_be_focused()
    await editor.press("Escape")
    await expect(editor).to_have_count(0)
    await box.fill("draft")
    await box.press("ArrowUp")
    await expect(editor).to_have_count(0)
    await expect(message(p.ann, "first thought")).not_to_contain_text("(edited)")


async def test_a_delete_removes_the_message_for_the_other_person(
    new_page: NewPage, client: httpx.AsyncClient
) -> None:
    p = await pair_in_chat(new_page, client, "deletes")
    await ui.send(p.ann, "keep this one")
    await ui.send(p.ann, "oops, wrong chat")
    await expect(message(p.ben, "oops, wrong chat")).to_have_count(1)

    # Cancelling the confirmation keeps the message.
    p.ann.once("dialog", lambda dialog: dialog.dismiss())
    await use_tool(p.ann, "oops, wrong chat", "Delete")
    await expect(message(p.ann, "oops, wrong chat")).to_have_count(1)

    p.ann.once("dialog", lambda dialog: dialog.accept())
    await use_tool(p.ann, "oops, wrong chat", "Delete")
    for page in (p.ann, p.ben):
        await expect(message(page, "oops, wrong chat")).to_have_count(0)
        await expect(message(page, "This message was deleted")).to_have_count(1)
        await expect(message(page, "keep this one")).to_have_count(1)
    await p.ben.reload()
    await expect(message(p.ben, "This message was deleted")).to_have_count(1)
    await expect(message(p.ben, "oops, wrong chat")).to_have_count(0)


async def test_a_reply_shows_what_it_replies_to(new_page: NewPage, client: httpx.AsyncClient) -> None:
    p = await pair_in_chat(new_page, client, "replies")
    await ui.send(p.ann, "lunch at noon?")
    await ui.send(p.ann, "or at one")
    await expect(message(p.ben, "or at one")).to_have_count(1)

    await use_tool(p.ben, "lunch at noon?", "Reply")
    await expect(p.ben.get_by_text(f"Replying to {ANN}")).to_be_visible()
    await ui.send(p.ben, "noon works")
    await expect(p.ben.get_by_text(f"Replying to {ANN}")).to_have_count(0)

    for page in (p.ann, p.ben):
        reply = message(page, "noon works")
        await expect(reply).to_have_count(1)
        await expect(reply).to_contain_text("reply to")
        await expect(reply).to_contain_text(ANN)
        await expect(reply).to_contain_text("lunch at noon?")
        await expect(reply).not_to_contain_text("or at one")
    response = await client.get(f"/api/chat/{p.chat['id']}/messages", headers=p.ann_user.auth)
    by_content = {m["content"]: m for m in response.json()["data"]}
    assert by_content["noon works"]["reply_to"] == by_content["lunch at noon?"]["id"]


async def test_a_thread_opens_beside_the_chat_and_counts_its_replies_live(
    new_page: NewPage, client: httpx.AsyncClient
) -> None:
    p = await pair_in_chat(new_page, client, "threads")
    await ui.send(p.ann, "lunch at noon?")
    await ui.send(p.ann, "or at one")
    await expect(message(p.ben, "or at one")).to_have_count(1)

    def thread(page: Page) -> Locator:
        return page.get_by_role("complementary", name="Thread")

    def original(page: Page) -> Locator:
        # The question itself, not the replies that quote it.
        return ui.messages(page).filter(has_text="lunch at noon?").first

    await use_tool(p.ben, "lunch at noon?", "Reply in thread")
    await expect(thread(p.ben).get_by_role("list", name="Original message")).to_contain_text("lunch at noon?")
    await expect(thread(p.ben).get_by_role("status")).to_have_text("No replies yet")
    box = thread(p.ben).get_by_role("textbox", name="Reply in thread")
    await expect(box).to_be_focused()
    await box.fill("noon works")
    await box.press("Enter")
    await expect(thread(p.ben).get_by_role("list", name="Replies")).to_contain_text("noon works")
    await expect(thread(p.ben).get_by_role("status")).to_have_text("1 reply")

    # Ann sees the count under her message live, and opens the thread from it.
    await original(p.ann).get_by_role("button", name="1 reply").click()
    await expect(thread(p.ann).get_by_role("list", name="Replies")).to_contain_text("noon works")
    await thread(p.ann).get_by_role("textbox", name="Reply in thread").fill("see you there")
    await thread(p.ann).get_by_role("button", name="Send").click()
    for page in (p.ann, p.ben):
        replies_shown = thread(page).get_by_role("list", name="Replies").get_by_role("listitem")
        await expect(replies_shown).to_have_count(2)
        await expect(thread(page).get_by_role("status")).to_have_text("2 replies")
        await expect(original(page).get_by_role("button", name="2 replies")).to_be_visible()
    # The replies are in the chat as well, quoting what they answer; "or at one" is in no thread.
    await expect(message(p.ann, "see you there")).to_contain_text("reply to")
    count_link = re.compile(r"\d+ repl")
    await expect(message(p.ann, "or at one").get_by_role("button", name=count_link)).to_have_count(0)

    # A deleted reply stays in the thread as deleted and no longer counts, for both.
    p.ben.once("dialog", lambda dialog: dialog.accept())
    ben_reply = thread(p.ben).get_by_role("listitem").filter(has_text="noon works")
    await ben_reply.hover()
    await ben_reply.get_by_role("button", name="Delete", exact=True).click()
    for page in (p.ann, p.ben):
        await expect(thread(page).get_by_role("status")).to_have_text("1 reply")
        await expect(original(page).get_by_role("button", name="1 reply")).to_be_visible()
        await expect(thread(page)).to_contain_text("This message was deleted")

    # Escape and the close button put the thread away; the quote of a reply opens it again.
    await thread(p.ben).get_by_role("textbox", name="Reply in thread").press("Escape")
    await expect(thread(p.ben)).to_have_count(0)
    # The keyboard is back by the message (its tools, where the thread was opened, hide without a pointer).
    await expect(original(p.ben).get_by_role("button", name="1 reply")).to_be_focused()
    await thread(p.ann).get_by_role("button", name="Close thread").click()
    await expect(thread(p.ann)).to_have_count(0)
    await message(p.ann, "see you there").get_by_role("button", name="reply to").click()
    await expect(thread(p.ann).get_by_role("list", name="Original message")).to_contain_text("lunch at noon?")

    # The server holds the thread as shown.
    parent_id = next(
        m["id"]
        for m in (await client.get(f"/api/chat/{p.chat['id']}/messages", headers=p.ann_user.auth)).json()[
            "data"
        ]
        if m["content"] == "lunch at noon?"
    )
    replies = await client.get(
        f"/api/chat/{p.chat['id']}/messages/{parent_id}/replies", headers=p.ben_user.auth
    )
    assert [(m["content"], m["deleted"]) for m in replies.json()["data"]] == [
        ("", True),
        ("see you there", False),
    ]


async def test_joining_a_channel_from_its_page_shows_its_history(
    new_page: NewPage, client: httpx.AsyncClient
) -> None:
    ann_user, ben_user, emails = await two_people(client)
    channel = await create_chat(client, ann_user, [], name="town-square", chat_type="PublicChannel")
    said = await client.post(
        f"/api/chat/{channel['id']}/messages", headers=ann_user.auth, json={"content": "welcome, all"}
    )
    assert said.status_code == 201, said.text
    ben = await new_page()
    await ui.sign_in(ben, emails[ben_user.id])
    # A link to the channel, opened by someone not in it yet.
    await ben.goto(f"/chat/{channel['id']}")
    await expect(ben.get_by_role("heading", name="town-square")).to_be_visible()
    join = ben.get_by_role("button", name="Join town-square")
    await expect(join).to_be_visible()
    # Its history is for members only.
    await expect(ben.get_by_role("alert")).to_contain_text("not a member")
    await expect(message(ben, "welcome, all")).to_have_count(0)
    await join.click()
    await expect(message(ben, "welcome, all")).to_have_count(1)
    await expect(ben.get_by_role("alert")).to_have_count(0)
    await ui.send(ben, "glad to be here")
    await expect(message(ben, "glad to be here")).to_have_count(1)
    await ui.wait_sent(ben)


async def test_a_chat_opens_at_what_is_new_and_offers_the_way_back_down(
    new_page: NewPage, client: httpx.AsyncClient
) -> None:
    ann_user, ben_user, emails = await two_people(client)
    chat = await create_chat(client, ann_user, [ben_user], name="catch-up", chat_type="Group")
    url = f"/api/chat/{chat['id']}/messages"

    async def say(content: str) -> None:
        said = await client.post(url, headers=ann_user.auth, json={"content": content})
        assert said.status_code == 201, said.text

    for i in range(3):
        await say(f"seen {i}")
    read = await client.post(f"/api/chat/{chat['id']}/read", headers=ben_user.auth, json={"seq": 3})
    assert read.status_code == 200, read.text
    for i in range(25):
        await say(f"fresh {i}\nsecond line\nthird line")  # three lines each: more than a screen of news

    ben = await new_page()
    await ui.sign_in(ben, emails[ben_user.id])
    await ben.get_by_role("link", name="catch-up").click()
    divider = ben.get_by_role("separator", name="New messages")
    await expect(divider).to_be_in_viewport()
    # The divider stands between the last message read and the first one not read.
    items = ben.get_by_role("list", name="Messages")
    await expect(items.locator("li").filter(has=ben.get_by_text("New messages", exact=True))).to_have_count(1)
    order = await items.locator(":scope > li").all_inner_texts()
    at = next(i for i, text in enumerate(order) if text.strip() == "New messages")
    assert "seen 2" in order[at - 1] and "fresh 0" in order[at + 1]

    # Far from the newest messages, a button leads back down.
    latest = ben.get_by_role("button", name="Jump to latest")
    await expect(latest).to_be_visible()
    await latest.click()
    await expect(message(ben, "fresh 24")).to_be_in_viewport()
    await expect(latest).to_have_count(0)
    # Opened again, everything is read: no divider.
    await ben.reload()
    await expect(message(ben, "fresh 24")).to_be_visible()
    await expect(divider).to_have_count(0)

    # Straight to the chat by its address, before the list of chats is loaded: the news still gets its line.
    await ben.goto("/")
    await expect(ben.get_by_role("link", name="catch-up")).to_be_visible()
    await say("later 0")
    await say("later 1")
    await expect(ui.unread_badge(ben, "catch-up")).to_be_visible()
    await ben.goto(f"/chat/{chat['id']}")
    await expect(divider).to_be_in_viewport()
    order = await items.locator(":scope > li").all_inner_texts()
    at = next(i for i, text in enumerate(order) if text.strip() == "New messages")
    assert "fresh 24" in order[at - 1] and "later 0" in order[at + 1]


async def test_writing_on_one_device_reads_the_chat_on_the_others(
    new_page: NewPage, client: httpx.AsyncClient
) -> None:
    ann_user, ben_user, emails = await two_people(client)
    chat = await create_chat(client, ann_user, [ben_user], name="two devices", chat_type="Group")
    laptop, phone = await new_page(), await new_page()
    for page in (laptop, phone):
        await ui.sign_in(page, emails[ben_user.id])
        await expect(page.get_by_role("img", name="Connected")).to_be_visible()
    said = await client.post(
        f"/api/chat/{chat['id']}/messages", headers=ann_user.auth, json={"content": "anyone there?"}
    )
    assert said.status_code == 201, said.text
    for page in (laptop, phone):
        await expect(ui.unread_badge(page, "two devices")).to_have_text("1")
    # Ben answers from his phone without opening the chat on the laptop: having written there, he has read it.
    answered = await client.post(
        f"/api/chat/{chat['id']}/messages", headers=ben_user.auth, json={"content": "here"}
    )
    assert answered.status_code == 201, answered.text
    await expect(ui.unread_badge(laptop, "two devices")).to_have_count(0)
    await expect(ui.unread_badge(phone, "two devices")).to_have_count(0)


async def test_a_deleted_message_no_longer_counts_as_unread(
    new_page: NewPage, client: httpx.AsyncClient
) -> None:
    ann_user, ben_user, emails = await two_people(client)
    chat = await create_chat(client, ann_user, [ben_user], name="second thoughts", chat_type="Group")
    ben = await new_page()
    await ui.sign_in(ben, emails[ben_user.id])
    await expect(ben.get_by_role("img", name="Connected")).to_be_visible()
    url = f"/api/chat/{chat['id']}/messages"
    sent = [
        (await client.post(url, headers=ann_user.auth, json={"content": c})).json()["data"]
        for c in ("a", "b")
    ]
    await expect(ui.unread_badge(ben, "second thoughts")).to_have_text("2")
    gone = await client.delete(f"{url}/{sent[1]['id']}", headers=ann_user.auth)
    assert gone.status_code == 200, gone.text
    await expect(ui.unread_badge(ben, "second thoughts")).to_have_text("1")


async def test_reactions_are_counted_live_and_toggle(new_page: NewPage, client: httpx.AsyncClient) -> None:
    p = await pair_in_chat(new_page, client, "reactions")
    await ui.send(p.ben, "ship it?")
    await expect(message(p.ann, "ship it?")).to_have_count(1)

    # Ann reacts with the picker; Ben sees the count live.
    await use_tool(p.ann, "ship it?", "React")
    await message(p.ann, "ship it?").get_by_role("button", name="React with 👍").click()
    mine = message(p.ann, "ship it?").get_by_role("button", name="👍 1")
    await expect(mine).to_have_attribute("aria-pressed", "true")
    theirs = message(p.ben, "ship it?").get_by_role("button", name="👍 1")
    await expect(theirs).to_be_visible()
    await expect(theirs).to_have_attribute("aria-pressed", "false")

    # Ben adds his by clicking the reaction itself: two, for both.
    await theirs.click()
    for page in (p.ann, p.ben):
        await expect(message(page, "ship it?").get_by_role("button", name="👍 2")).to_have_attribute(
            "aria-pressed", "true"
        )

    # Ann takes hers back: one left, Ben's.
    await message(p.ann, "ship it?").get_by_role("button", name="👍 2").click()
    await expect(message(p.ben, "ship it?").get_by_role("button", name="👍 1")).to_have_attribute(
        "aria-pressed", "true"
    )
    await expect(message(p.ann, "ship it?").get_by_role("button", name="👍 1")).to_have_attribute(
        "aria-pressed", "false"
    )
    # What the server keeps is what both see.
    await p.ann.reload()
    await expect(message(p.ann, "ship it?").get_by_role("button", name="👍 1")).to_be_visible()
    response = await client.get(f"/api/chat/{p.chat['id']}/messages", headers=p.ann_user.auth)
    (shipped,) = [m for m in response.json()["data"] if m["content"] == "ship it?"]
    assert shipped["reactions"] == [{"emoji": "👍", "count": 1, "user_ids": [p.ben_user.id]}]


async def test_the_reaction_picker_closes_on_a_click_elsewhere(
    new_page: NewPage, client: httpx.AsyncClient
) -> None:
    p = await pair_in_chat(new_page, client, "picker")
    await ui.send(p.ann, "pick something")
    await use_tool(p.ann, "pick something", "React")
    picker = p.ann.get_by_role("group", name="Pick a reaction")
    await expect(picker).to_be_visible()
    await p.ann.get_by_role("heading", name="picker").click()
    await expect(picker).to_have_count(0)
    # Nothing was picked on the way out.
    await expect(message(p.ann, "pick something").get_by_role("group", name="Reactions")).to_have_count(0)


async def test_a_pin_shows_for_both_and_leads_to_the_message(
    new_page: NewPage, client: httpx.AsyncClient
) -> None:
    p = await pair_in_chat(new_page, client, "pins")
    await ui.send(p.ann, "the release checklist is in the wiki")
    await ui.send(p.ann, "something else")
    await expect(message(p.ben, "something else")).to_have_count(1)

    await use_tool(p.ben, "the release checklist", "Pin")
    for page in (p.ann, p.ben):
        await expect(message(page, "the release checklist")).to_contain_text("Pinned")
        await expect(message(page, "something else")).not_to_contain_text("Pinned")
        await expect(page.get_by_role("button", name="📌 1 pinned")).to_be_visible()

    # The pinned list names the message; choosing it goes to the message.
    await p.ann.get_by_role("button", name="📌 1 pinned").click()
    pinned = p.ann.get_by_role("region", name="Pinned messages")
    await expect(pinned).to_contain_text("the release checklist is in the wiki")
    await pinned.get_by_role("button", name="the release checklist").click()
    await expect(message(p.ann, "the release checklist")).to_be_in_viewport()

    response = await client.get(f"/api/chat/{p.chat['id']}/pins", headers=p.ann_user.auth)
    assert [pin["message"]["content"] for pin in response.json()["data"]] == [
        "the release checklist is in the wiki"
    ]

    # Unpinned from the list by Ann: gone for Ben too, and after a reload.
    await pinned.get_by_role("button", name=f"Unpin the message of {ANN}").click()
    for page in (p.ann, p.ben):
        await expect(page.get_by_role("button", name="📌 1 pinned")).to_have_count(0)
        await expect(message(page, "the release checklist")).not_to_contain_text("Pinned")
    await p.ben.reload()
    await expect(message(p.ben, "the release checklist")).to_have_count(1)
    await expect(message(p.ben, "the release checklist")).not_to_contain_text("Pinned")


async def test_the_other_person_sees_who_is_typing(new_page: NewPage, client: httpx.AsyncClient) -> None:
    p = await pair_in_chat(new_page, client, "typing")
    # A message first: typing events come after events that carry ids, and must not pass for replays of them.
    await ui.send(p.ben, "done yet?")
    await expect(message(p.ann, "done yet?")).to_have_count(1)
    indicator = p.ben.get_by_text(f"{ANN} is typing…")
    await expect(indicator).to_have_count(0)
    await p.ann.get_by_role("textbox", name="Message").press_sequentially("almost done", delay=40)
    await expect(indicator).to_be_visible()
    # Ann never sees herself typing.
    await expect(p.ann.get_by_text("is typing")).to_have_count(0)
    # Sending ends it at once (well before the indicator would lapse by itself).
    await p.ann.get_by_role("button", name="Send").click()
    await expect(message(p.ben, "almost done")).to_have_count(1)
    await expect(indicator).to_have_count(0, timeout=3_000)


async def background(page: Page) -> str:
    return await page.evaluate("getComputedStyle(document.body).backgroundColor")


async def test_theme_toggle_persists_over_reload(new_page: NewPage, client: httpx.AsyncClient) -> None:
    ann, _, emails = await two_people(client)
    page = await new_page()
    await page.emulate_media(color_scheme="light")
    await ui.sign_in(page, emails[ann.id])
    light = await background(page)
    assert light == "rgb(255, 255, 255)"

    await page.get_by_role("button", name="Switch to dark theme").click()
    await expect(page.locator("html")).to_have_attribute("data-theme", "dark")
    dark = await background(page)
    assert dark != light
    await page.reload()
    await expect(page.get_by_role("button", name="Switch to light theme")).to_be_visible()
    assert await background(page) == dark
    # The profile's theme choice agrees.
    await page.get_by_role("button", name=ANN).click()
    await expect(page.get_by_role("radio", name="Dark")).to_be_checked()
    await page.get_by_role("button", name="Done").click()

    await page.get_by_role("button", name="Switch to light theme").click()
    await page.reload()
    await expect(page.get_by_role("button", name="Switch to dark theme")).to_be_visible()
    await expect(page.locator("html")).to_have_attribute("data-theme", "light")
    assert await background(page) == light


async def test_search_filters_compose_the_query(new_page: NewPage, client: httpx.AsyncClient) -> None:
    ann, ben, emails = await two_people(client)
    room = await create_chat(client, ann, [ben], name="search-room", chat_type="Group")
    other = await create_chat(client, ann, [ben], name="other-room", chat_type="Group")
    word = f"quartzite{int(dt.datetime.now().timestamp())}"
    for user, chat in ((ann, room), (ben, room), (ben, other)):
        response = await client.post(
            f"/api/chat/{chat['id']}/messages", headers=user.auth, json={"content": f"{word} from {user.id}"}
        )
        assert response.status_code == 201, response.text
    page = await new_page()
    await ui.sign_in(page, emails[ann.id])
    await asyncio.sleep(1.0)  # API.md: findable within one second of the send returning
    await page.get_by_label("Search messages").fill(word)
    await page.get_by_label("Search messages").press("Enter")
    results = page.get_by_role("list", name="Search results").get_by_role("listitem")
    composed = page.get_by_test_id("search-composed")
    await expect(results).to_have_count(3)

    await page.get_by_label("From").select_option(label=BEN)
    await expect(composed).to_have_text(f"{word} from:{ben.id}")
    await expect(results).to_have_count(2)
    await expect(results.filter(has_text=f"from {ann.id}")).to_have_count(0)

    await page.get_by_label("In", exact=True).select_option(label="other-room")
    await expect(composed).to_have_text(f"{word} from:{ben.id} in:{other['id']}")
    await expect(results).to_have_count(1)
    await expect(results.first).to_contain_text("other-room")

    await page.get_by_label("Has a file").check()
    await expect(composed).to_have_text(f"{word} from:{ben.id} in:{other['id']} has:file")
    await expect(results.filter(has_text="No messages found.")).to_have_count(1)
    await page.get_by_label("Has a file").uncheck()
    await expect(results.filter(has_text=word)).to_have_count(1)

    today = dt.datetime.now(dt.UTC).date()
    long_ago = (today - dt.timedelta(days=3)).isoformat()
    await page.get_by_label("Before").fill(long_ago)
    await expect(composed).to_have_text(f"{word} from:{ben.id} in:{other['id']} before:{long_ago}")
    await expect(results.filter(has_text="No messages found.")).to_have_count(1)
    await page.get_by_label("Before").fill("")
    await page.get_by_label("After").fill(long_ago)
    await expect(composed).to_have_text(f"{word} from:{ben.id} in:{other['id']} after:{long_ago}")
    await expect(results.filter(has_text=word)).to_have_count(1)

    await page.get_by_role("button", name="Clear filters").click()
    await expect(composed).to_have_text(word)
    await expect(results).to_have_count(3)


async def test_phone_width_direct_message_with_presence(new_page: NewPage, client: httpx.AsyncClient) -> None:
    ann, ben, emails = await two_people(client)
    await create_chat(client, ann, [ben], name="dm", chat_type="Single")
    desk = await new_page()
    await ui.sign_in(desk, emails[ben.id])
    phone = await new_page(width=390, height=844, has_touch=True, is_mobile=True)
    await ui.sign_in(phone, emails[ann.id])

    async def fits() -> None:
        width = await phone.evaluate("document.scrollingElement.scrollWidth")
        assert width <= 390, f"the page scrolls sideways: {width}px"

    # The list of chats fills the phone, with Ben's presence beside his direct message.
    nav = phone.get_by_role("navigation", name="Workspace")
    await expect(nav).to_be_visible()
    await expect(phone.get_by_role("img", name=f"{BEN} is online")).to_be_visible()
    box = await nav.bounding_box()
    assert box is not None and box["width"] >= 380
    await fits()

    # The chat takes the whole screen; Ben's message arrives live and Ann reacts and replies by touch.
    await phone.get_by_role("link", name=BEN).tap()
    await expect(phone.get_by_role("heading", name=BEN)).to_be_visible()
    await expect(nav).to_be_hidden()
    await expect(phone.get_by_text("Online", exact=True)).to_be_visible()
    await desk.get_by_role("link", name=ANN).click()
    await ui.send(desk, "are you on the train?")
    await expect(message(phone, "are you on the train?")).to_have_count(1)
    item = message(phone, "are you on the train?")
    await item.get_by_role("button", name="React", exact=True).tap()
    pick = item.get_by_role("button", name="React with 🎉")
    picked = await pick.bounding_box()
    assert picked is not None and picked["x"] + picked["width"] <= 390
    await pick.tap()
    await expect(message(desk, "are you on the train?").get_by_role("button", name="🎉 1")).to_be_visible()
    await item.get_by_role("button", name="Reply", exact=True).tap()
    await ui.send(phone, "yes, 5 minutes")
    await expect(message(desk, "yes, 5 minutes")).to_contain_text("are you on the train?")
    composer = await phone.get_by_role("textbox", name="Message").bounding_box()
    send = await phone.get_by_role("button", name="Send").bounding_box()
    assert composer is not None and send is not None
    assert send["x"] + send["width"] <= 390 and composer["y"] + composer["height"] <= 844
    await fits()

    # Back to the list; search opens in a dialog that fits the screen.
    await phone.get_by_role("link", name="Back to chats").tap()
    await expect(nav).to_be_visible()
    await phone.get_by_label("Search messages").fill("train")
    await phone.get_by_label("Search messages").press("Enter")
    dialog = phone.get_by_role("dialog", name="Search messages")
    await expect(dialog).to_be_visible()
    frame = await dialog.bounding_box()
    assert frame is not None and frame["x"] >= 0 and frame["x"] + frame["width"] <= 390
    await phone.get_by_role("button", name="Close").tap()

    # Starting a direct message shows who is around too.
    await desk.get_by_role("button", name="New direct message").click()
    starting = desk.get_by_role("dialog", name="New direct message")
    await expect(starting.get_by_role("img", name=f"{ANN} is online")).to_be_visible()
    await desk.keyboard.press("Escape")
    await expect(starting).to_have_count(0)

    # Ben leaves: his dot turns to offline.
    await desk.goto("about:blank")
    await expect(phone.get_by_role("img", name=f"{BEN} is offline")).to_be_visible(timeout=20_000)


async def test_chat_details_rename_add_leave_remove_and_archive(
    new_page: NewPage, client: httpx.AsyncClient
) -> None:
    """The header's member count opens the chat's details: its owner renames and describes it, adds someone,
    removes someone and archives it; a member leaves. Each change shows for the other person live."""
    p = await pair_in_chat(new_page, client, "planning")
    cat = await signup(
        client,
        fullname="Cat Newcomer",
        invite_code=await invite(client, p.ann_user),
        email=unique_email("cat"),
    )
    chat_id = p.chat["id"]

    async def details(page: Page, title: str) -> Locator:
        await page.get_by_role("button", name="members").click()
        dialog = page.get_by_role("dialog", name=f"About {title}")
        await expect(dialog).to_be_visible()
        return dialog

    # Rename and describe: Ben's heading and sidebar follow.
    about = await details(p.ann, "planning")
    await expect(about.get_by_role("list", name="Members").get_by_role("listitem")).to_have_count(2)
    await about.get_by_label("Name").fill("roadmap")
    await about.get_by_label("Description").fill("What ships next")
    await about.get_by_role("button", name="Save").click()
    await expect(p.ann.get_by_role("heading", name="roadmap", exact=True)).to_be_visible()
    await expect(p.ben.get_by_role("heading", name="roadmap")).to_be_visible()
    await expect(p.ben.get_by_text("What ships next")).to_be_visible()
    await expect(p.ben.get_by_role("link", name="roadmap")).to_be_visible()

    # Add Cat: three members, on both sides.
    about = p.ann.get_by_role("dialog", name="About roadmap")
    await about.get_by_label("Cat Newcomer").check()
    await about.get_by_role("button", name="Add 1").click()
    await expect(about.get_by_role("list", name="Members")).to_contain_text("Cat Newcomer")
    await expect(p.ben.get_by_role("button", name="3 members")).to_be_visible()

    # Archive: Ben's composer gives way to a note, live, and his tools shrink to what still works; the
    # composer comes back on unarchive.
    await ui.send(p.ben, "before the archive")
    await about.get_by_role("button", name="Archive").click()
    note = "This chat is archived: it can be read, not written to."
    await expect(p.ben.get_by_text(note)).to_be_visible()
    await expect(p.ben.get_by_role("textbox", name="Message", exact=True)).to_have_count(0)
    await message(p.ben, "before the archive").hover()
    own_tools = message(p.ben, "before the archive")
    await expect(own_tools.get_by_role("button", name="Delete")).to_be_visible()
    await expect(own_tools.get_by_role("button", name="Reply", exact=True)).to_have_count(0)
    await expect(own_tools.get_by_role("button", name="Edit", exact=True)).to_have_count(0)
    await about.get_by_role("button", name="Unarchive").click()
    await expect(p.ben.get_by_role("textbox", name="Message", exact=True)).to_be_visible()
    await about.get_by_role("button", name="Close").click()

    # Ben (a plain member) can see the members but not rename, and may leave.
    ben_about = await details(p.ben, "roadmap")
    await expect(ben_about.get_by_role("list", name="Members")).to_contain_text("Ann Author")
    await expect(ben_about.get_by_label("Name")).to_have_count(0)
    await expect(ben_about.get_by_role("button", name="Remove Ann Author")).to_have_count(0)

    # Ann makes Ben an admin of the chat: his open dialog follows, live, and back when she undoes it.
    about = await details(p.ann, "roadmap")
    await about.get_by_role("button", name="Make Ben Reader an admin of this chat").click()
    await expect(ben_about.get_by_label("Name")).to_be_visible()
    await expect(ben_about.get_by_role("button", name="Remove Cat Newcomer")).to_be_visible()
    await about.get_by_role("button", name="Make Ben Reader a member of this chat").click()
    await expect(ben_about.get_by_label("Name")).to_have_count(0)
    await about.get_by_role("button", name="Close").click()

    p.ben.once("dialog", lambda dialog: dialog.accept())
    await ben_about.get_by_role("button", name="Leave roadmap").click()
    await expect(p.ben.get_by_role("link", name="roadmap")).to_have_count(0)
    await expect(p.ann.get_by_role("button", name="2 members")).to_be_visible()

    # Ann removes Cat; the server agrees.
    about = await details(p.ann, "roadmap")
    await about.get_by_role("button", name="Remove Cat Newcomer").click()
    await expect(about.get_by_role("list", name="Members").get_by_role("listitem")).to_have_count(1)
    members = await client.get(f"/api/chat/{chat_id}/members", headers=p.ann_user.auth)
    assert [m["id"] for m in members.json()["data"]] == [p.ann_user.id]
    refused = await client.get(f"/api/chat/{chat_id}/messages", headers=cat.auth)
    assert refused.status_code == 403


async def test_a_mention_marks_the_chat_and_lists_it_until_read(
    new_page: NewPage, client: httpx.AsyncClient
) -> None:
    p = await pair_in_chat(new_page, client, "standup")
    await p.ben.get_by_role("link", name="Conversation home").click()
    chat_id = p.chat["id"]

    async def say(text: str) -> None:
        sent = await client.post(
            f"/api/chat/{chat_id}/messages", headers=p.ann_user.auth, json={"content": text}
        )
        assert sent.status_code == 201, sent.text

    await say("nothing for you here")
    await say(f"<@{p.ben_user.id}> can you check the build?")
    for i in range(60):  # the mention scrolls out of the latest screen
        await say(f"later chatter {i}")
    badge = p.ben.get_by_role("status", name="1 unread mention in standup")
    await expect(badge).to_be_visible()
    await expect(ui.unread_badge(p.ben, "standup")).to_have_text("62")
    # The server counts it too: a reload shows the same.
    await p.ben.reload()
    await expect(badge).to_be_visible()

    await p.ben.get_by_role("button", name="Mentions, 1 unread").click()
    listed = p.ben.get_by_role("dialog", name="Mentions").get_by_role("list", name="Unread mentions")
    await expect(listed.get_by_role("listitem")).to_have_count(1)
    await expect(listed).to_contain_text("Ann Author in standup")
    await expect(listed).to_contain_text("@Ben Reader can you check the build?")
    await listed.get_by_role("button").click()

    # The chat opens at the mention, and opening it reads it: no longer unread, here or on the server.
    await expect(p.ben.get_by_role("heading", name="standup")).to_be_visible()
    await expect(message(p.ben, "can you check the build?")).to_be_in_viewport()
    await expect(message(p.ben, "later chatter 59")).not_to_be_in_viewport()
    await expect(badge).to_have_count(0)
    await expect(p.ben.get_by_role("button", name="Mentions", exact=True)).to_be_visible()
    left = await client.get("/api/mentions/unread", headers=p.ben_user.auth)
    assert left.json()["data"] == []


async def test_earlier_versions_and_who_has_seen_a_message(
    new_page: NewPage, client: httpx.AsyncClient
) -> None:
    p = await pair_in_chat(new_page, client, "versions")
    await ui.send(p.ann, "version one")
    await expect(message(p.ben, "version one")).to_have_count(1)
    for before, after in (("version one", "version two"), ("version two", "version three")):
        await use_tool(p.ann, before, "Edit")
        editor = p.ann.get_by_role("textbox", name="Edit message")
        await editor.fill(after)
        await editor.press("Enter")
        await expect(message(p.ben, after)).to_have_count(1)

    # Ben opens the earlier versions of Ann's message: oldest first, and closes them again.
    edited = message(p.ben, "version three").get_by_role("button", name="show the earlier versions")
    await edited.click()
    versions = message(p.ben, "version three").get_by_role("list", name="Earlier versions")
    await expect(versions.get_by_role("listitem")).to_have_count(2)
    await expect(versions.get_by_role("listitem").first).to_contain_text("version one")
    await expect(versions.get_by_role("listitem").last).to_contain_text("version two")
    await edited.click()
    await expect(versions).to_have_count(0)

    # Ben has the chat open, so he has read it: Ann sees who has seen her message. Only the sender asks.
    await use_tool(p.ann, "version three", "Seen by")
    await expect(message(p.ann, "version three").get_by_role("status")).to_have_text("Seen by Ben Reader")
    await message(p.ben, "version three").hover()
    await expect(message(p.ben, "version three").get_by_role("button", name="Seen by")).to_have_count(0)


# The browser's notification system lies outside the client: a stand-in records what would be shown.
NOTIFICATIONS = """
window.__notes = [];
window.Notification = class {
  static permission = 'granted';
  static requestPermission() { return Promise.resolve('granted'); }
  constructor(title, options) {
    window.__notes.push({ title, body: (options || {}).body, tag: (options || {}).tag });
    window.__lastNote = this;
  }
  close() {}
};
"""


async def test_notifications_and_the_unread_title(new_page: NewPage, client: httpx.AsyncClient) -> None:
    ann_user, ben_user, emails = await two_people(client)
    group = await create_chat(client, ann_user, [ben_user], name="standup", chat_type="Group")
    direct = await create_chat(client, ann_user, [ben_user], name="dm", chat_type="Single")
    ben = await new_page()
    await ben.add_init_script(NOTIFICATIONS)
    await ui.sign_in(ben, emails[ben_user.id])
    await expect(ben.get_by_role("img", name="Connected")).to_be_visible()
    await expect(ben).to_have_title("Fechatter")
    await ben.get_by_role("button", name=BEN).click()
    await ben.get_by_label("Notify me of direct messages and mentions").check()
    await ben.get_by_role("button", name="Done").click()

    async def say(chat: dict, text: str) -> None:
        sent = await client.post(
            f"/api/chat/{chat['id']}/messages", headers=ann_user.auth, json={"content": text}
        )
        assert sent.status_code == 201, sent.text

    await say(group, "plain news for everyone")
    await say(group, f"<@{ben_user.id}> please review")
    await say(direct, "a word in private")
    await expect(ben).to_have_title("(3) Fechatter")
    # Polled from here: page.wait_for_function evaluates its predicate inside the page, which the
    # client's Content-Security-Policy (no 'unsafe-eval') refuses as soon as it has to wait.
    async with asyncio.timeout(10):
        while await ben.evaluate("window.__notes.length") < 2:
            await asyncio.sleep(0.05)
    notes = await ben.evaluate("window.__notes")
    assert [(n["title"], n["body"]) for n in notes] == [
        (f"{ANN} in standup", "@Ben Reader please review"),
        (ANN, "a word in private"),
    ]

    # Clicking the last one opens its chat, which reads it.
    await ben.evaluate("window.__lastNote.onclick()")
    await expect(ben.get_by_role("heading", name=ANN)).to_be_visible()
    await expect(ben).to_have_title("(2) Fechatter")
    # A message in the chat one is looking at notifies nobody.
    await say(direct, "still there?")
    await expect(message(ben, "still there?")).to_have_count(1)
    assert len(await ben.evaluate("window.__notes")) == 2


async def test_each_chat_keeps_its_own_draft(new_page: NewPage, client: httpx.AsyncClient) -> None:
    p = await pair_in_chat(new_page, client, "drafts")
    await create_chat(client, p.ann_user, [p.ben_user], name="elsewhere", chat_type="Group")
    box = p.ann.get_by_role("textbox", name="Message", exact=True)
    await box.fill("half a thought for drafts")
    await p.ann.get_by_role("link", name="elsewhere").click()
    await expect(p.ann.get_by_role("heading", name="elsewhere")).to_be_visible()
    await expect(box).to_have_value("")
    await box.fill("another one, for elsewhere")

    await p.ann.get_by_role("link", name="drafts").click()
    await expect(p.ann.get_by_role("heading", name="drafts")).to_be_visible()
    await expect(box).to_have_value("half a thought for drafts")
    await p.ann.get_by_role("button", name="Send").click()
    await expect(message(p.ben, "half a thought for drafts")).to_have_count(1)
    await expect(box).to_have_value("")

    await p.ann.get_by_role("link", name="elsewhere").click()
    await expect(box).to_have_value("another one, for elsewhere")

    # A draft belongs to whoever typed it: after a sign-out, the next person in the tab finds none.
    await p.ann.get_by_role("button", name="Sign out", exact=True).click()
    await p.ann.get_by_label("Email").fill(p.emails[p.ben_user.id])
    await p.ann.get_by_label("Password").fill(ui.PASSWORD)
    await p.ann.get_by_role("button", name="Sign in").click()
    await p.ann.get_by_role("link", name="elsewhere").click()
    await expect(p.ann.get_by_role("heading", name="elsewhere")).to_be_visible()
    await expect(box).to_have_value("")
