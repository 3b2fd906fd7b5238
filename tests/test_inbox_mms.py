"""MMS in the inbox: `mms:received` and `mms:downloaded` posts stored once, listed in the
upstream `IncomingMessage` shape (attachment metadata on request), parts downloaded by their
owner only, bad payloads refused naming the field; batch posts of a phone taken in."""

from __future__ import annotations

import base64
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from smsgw.downloads import shown_type
from tests.clients import TLS
from tests.conftest import LiveServer, running
from tests.fakes.receiver import Receiver
from tests.webhook_support import Api, drained, eventually, hub_settings, phone, run, started, until

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
PARTS: list[tuple[str, str | None, bytes | None]] = [
    ("image/png", "cat.png", PNG),
    ("text/html; charset=utf-8", "page.html", b"<script>alert(1)</script>"),
    ("audio/amr", None, None),  # the phone could not read this part
]


@pytest.fixture
def hub_server(tmp_path: Path) -> Iterator[LiveServer]:
    with running(hub_settings(tmp_path / "data")) as live:
        yield live


def test_a_received_mms_is_stored_once_and_listed_as_upstream_shapes_it(
    hub_server: LiveServer,
) -> None:
    owner = hub_server.create_user("owner")
    receiver = Receiver().start()

    async def scenario() -> None:
        api = Api(hub_server, owner)
        for event in ("mms:received", "mms:downloaded"):
            await api.hook(receiver.url, event)
        device = await started(phone(hub_server, owner, skip_processed_on_export=False), webhooks=5)
        at = datetime.now(UTC)
        device.receive_mms("+12025550111", "Holidays", "Look at this", PARTS, at)
        later = at + timedelta(seconds=1)
        device.receive_mms("+12025550112", "Only a subject", None, [], later)

        async def stored() -> bool:
            return (await api.inbox())[1] == 4

        await until(stored)
        # Replayed by an export: still stored (and sent) once.
        answer = await api.client.post("/inbox/refresh", json={
            "since": "2000-01-01T00:00:00Z", "until": "2100-01-01T00:00:00Z",
            "messageTypes": ["MMS"]})  # fmt: skip
        assert answer.status_code == 202
        await eventually(lambda: sum(e == "mms:downloaded" for e, _ in device.webhook_posts) == 4)
        await eventually(lambda: len(receiver.delivered()) == 4)
        await until(drained(hub_server.settings))
        assert (await api.inbox())[1] == 4 and len(receiver.requests) == 4

        notices, _ = await api.inbox(type="MMS")
        assert [n["contentPreview"] for n in notices] == ["Only a subject", "Holidays"]
        notice = notices[1]
        assert notice["subject"] == "Holidays" and notice["transactionId"].startswith("T")
        assert notice["contentClass"] == "IMAGE_BASIC" and notice["size"] == len(PNG) + 25
        assert notice["sender"] == "+12025550111" and "attachments" not in notice
        plain, _ = await api.inbox(type="MMS_DOWNLOADED")
        assert [m["contentPreview"] for m in plain] == ["Only a subject", "Look at this"]
        assert plain[1]["body"] == "Look at this" and "attachments" not in plain[1]
        full, _ = await api.inbox(type="MMS_DOWNLOADED", includeAttachments="true")
        assert full[0]["attachments"] == []
        assert full[1]["attachments"] == [
            {"partId": 100, "name": "cat.png", "size": len(PNG), "contentType": "image/png"},
            {"partId": 101, "name": "page.html", "size": 25,
             "contentType": "text/html; charset=utf-8"},
            {"partId": 102, "name": "", "size": 0, "contentType": "audio/amr"},
        ]  # fmt: skip
        sms_only, _ = await api.inbox(type="SMS", includeAttachments="true")
        assert sms_only == []
        [sent] = [r.json()["payload"] for r in receiver.requests
                  if r.json()["payload"].get("body") == "Look at this"]  # fmt: skip
        assert base64.b64decode(sent["attachments"][0]["data"]) == PNG  # the bytes go out
        await device.stop()
        await api.close()

    try:
        run(scenario)
    finally:
        receiver.stop()


def test_an_attachment_is_downloaded_by_its_owner_only(hub_server: LiveServer) -> None:
    owner = hub_server.create_user("owner")
    other = hub_server.create_user("other")

    async def scenario() -> None:
        api, other_api = Api(hub_server, owner), Api(hub_server, other)
        device = await started(phone(hub_server, owner), webhooks=5)
        device.receive_mms("+12025550111", "Holidays", "Look", PARTS)

        async def stored() -> bool:
            return (await api.inbox(type="MMS_DOWNLOADED"))[1] == 1

        await until(stored)
        [message], _ = await api.inbox(type="MMS_DOWNLOADED")
        path = f"/inbox/{message['id']}/attachments"
        image = await api.client.get(f"{path}/100")
        assert image.status_code == 200 and image.content == PNG
        assert image.headers["content-type"] == "image/png"
        assert image.headers["content-disposition"].startswith("attachment;")
        assert "cat.png" in image.headers["content-disposition"]
        assert image.headers["x-content-type-options"] == "nosniff"
        page = await api.client.get(f"{path}/101")  # a type with parameters: not as stored
        assert page.status_code == 200 and page.content == b"<script>alert(1)</script>"
        assert page.headers["content-type"] == "application/octet-stream"
        for missing in (f"{path}/102", f"{path}/999", "/inbox/nope/attachments/100"):
            answer = await api.client.get(missing)  # no bytes sent, no such part, no message
            assert answer.status_code == 404 and answer.json()["message"], missing
        theirs = await other_api.client.get(f"{path}/100")
        assert theirs.status_code == 404 and PNG not in theirs.content
        assert (await api.client.get(f"{path}/x")).status_code == 400
        await device.stop()
        await api.close()
        await other_api.close()

    run(scenario)


def envelope(event: str, payload: dict[str, Any]) -> dict[str, Any]:
    return {"id": secrets.token_urlsafe(15), "webhookId": "w", "event": event, "payload": payload}


MMS = {"messageId": "m1", "sender": "+12025550111", "transactionId": "T1", "size": 10,
       "contentClass": "TEXT", "receivedAt": "2026-03-01T12:00:00.000+03:00"}  # fmt: skip
DOWNLOADED = {"messageId": "m1", "sender": "+12025550111", "body": "hi",
              "receivedAt": "2026-03-01T12:00:00.000+03:00",
              "attachments": [{"partId": 1, "contentType": "image/png", "data": "AAEC"}],
              }  # fmt: skip


def part(**changes: Any) -> dict[str, Any]:
    return {**DOWNLOADED, "attachments": [{**DOWNLOADED["attachments"][0], **changes}]}


BAD_POSTS: list[tuple[str, dict[str, Any], str]] = [
    ("mms:received", {k: v for k, v in MMS.items() if k != "transactionId"},
     "payload.transactionId"),
    ("mms:received", {**MMS, "size": -1}, "payload.size"),
    ("mms:received", {**MMS, "subject": 5}, "payload.subject"),
    ("mms:received", {**MMS, "messageId": None}, "payload.messageId"),
    # (a state event without its recipient: refused before its unit of work)
    ("sms:sent", {"messageId": "m1", "sentAt": "2026-03-01T12:00:00.000Z"},
     "payload.messageId and payload.recipient are required"),
    ("mms:downloaded", {**DOWNLOADED, "attachments": "none"}, "payload.attachments"),
    ("mms:downloaded", {**DOWNLOADED, "attachments": [{"partId": 1}] * 101},
     "payload.attachments"),
    ("mms:downloaded", part(partId="1"), "payload.attachments[0].partId"),
    ("mms:downloaded", part(contentType=None), "payload.attachments[0].contentType"),
    ("mms:downloaded", part(data="not base64!"), "payload.attachments[0].data"),
    ("mms:downloaded", part(size=1.5), "payload.attachments[0].size"),
    ("mms:downloaded", {**DOWNLOADED, "attachments": [DOWNLOADED["attachments"][0]] * 2},
     "partId must appear once"),
    ("mms:downloaded", {**DOWNLOADED, "body": ["x"]}, "payload.body"),
    ("sms:batch:received", {"messages": {"messageId": "x"}}, "payload.messages"),
    ("sms:batch:received", {"messages": [{"messageId": "x"}]}, "payload.messages[0].message"),
    ("sms:batch:received", {"messages": [{"messageId": f"m{i}", "message": "x"}
                                         for i in range(101)]}, "at most 100"),
    ("mms:batch:downloaded", {"messages": [DOWNLOADED, part(data="%%")]},
     "payload.messages[1].attachments[0].data"),
]  # fmt: skip


def test_bad_mms_and_batch_posts_get_a_400_naming_the_field(hub_server: LiveServer) -> None:
    owner = hub_server.create_user("owner")

    async def scenario() -> None:
        api = Api(hub_server, owner)
        device = await started(phone(hub_server, owner), webhooks=5)
        url = device.webhooks[0]["url"]
        async with httpx.AsyncClient(verify=TLS) as client:
            for event, payload, fragment in BAD_POSTS:
                answer = await client.post(url, json=envelope(event, payload))
                assert answer.status_code == 400, (fragment, answer.text)
                assert fragment in answer.json()["message"], (fragment, answer.text)
            good = await client.post(url, json=envelope("mms:received", MMS))
            assert good.status_code == 204, good.text
        assert (await api.inbox())[1] == 1  # nothing of a refused post (or batch) is kept
        await device.stop()
        await api.close()

    run(scenario)


def test_batch_posts_of_a_phone_are_stored_and_forwarded_once(hub_server: LiveServer) -> None:
    owner = hub_server.create_user("owner")
    receiver = Receiver().start()

    async def scenario() -> None:
        api = Api(hub_server, owner)
        for event in ("sms:received", "mms:downloaded", "sms:batch:received"):
            await api.hook(receiver.url, event)
        device = await started(phone(hub_server, owner), webhooks=5)
        live = device.receive_sms("+12025550111", "live")
        await eventually(lambda: len(receiver.delivered()) == 1)
        texts = [{"messageId": f"b{i}", "sender": "+12025550112", "message": f"batched {i}",
                  "receivedAt": "2026-03-01T12:00:00.000Z"} for i in range(3)]  # fmt: skip
        again = {"messageId": live.message_id, "sender": live.sender, "message": "live"}
        for _ in range(2):  # the same batch twice, with a message smsgw had already
            device.post_batch("sms:batch:received", [*texts, again])
        device.post_batch("mms:batch:downloaded", [DOWNLOADED])
        device.post_batch("sms:batch:received", [])  # taken, and never forwarded as a batch
        await eventually(lambda: sum(s == 204 for _, s in device.webhook_posts) == 5)

        async def stored() -> bool:
            return (await api.inbox())[1] == 5

        await until(stored)
        await eventually(lambda: len(receiver.delivered()) >= 5)
        await until(drained(hub_server.settings))
        events = sorted(
            (r.json()["event"], r.json()["payload"]["messageId"]) for r in receiver.requests
        )
        assert events == sorted([("mms:downloaded", "m1"), ("sms:received", "b0"),
                                 ("sms:received", "b1"), ("sms:received", "b2"),
                                 ("sms:received", live.message_id)])  # fmt: skip
        [mms], _ = await api.inbox(type="MMS_DOWNLOADED")
        image = await api.client.get(f"/inbox/{mms['id']}/attachments/1")
        assert image.content == b"\x00\x01\x02"
        await device.stop()
        await api.close()

    try:
        run(scenario)
    finally:
        receiver.stop()


def downloaded_with(*types: str) -> dict[str, Any]:
    parts = [{"partId": i, "contentType": t, "name": f"p{i}", "data": "PHA+"}  # b"<p>"
             for i, t in enumerate(types)]  # fmt: skip
    return {**DOWNLOADED, "messageId": secrets.token_hex(8), "attachments": parts}


SERVED = [
    ("image/jpeg", "image/jpeg"),
    ("IMAGE/PNG", "image/png"),
    ("text/plain; charset=utf-8", "text/plain; charset=utf-8"),  # Starlette adds it
    ("audio/amr", "audio/amr"),
    ("video/3gpp", "video/3gpp"),
    ("text/html", "application/octet-stream"),
    ("image/svg+xml", "application/octet-stream"),
    ("application/xml", "application/octet-stream"),
    ("text/javascript", "application/octet-stream"),
    ("application/xhtml+xml", "application/octet-stream"),
    ("image/png/x", "application/octet-stream"),
]


def test_only_inert_types_are_served_as_stored_and_downloads_are_sandboxed(
    hub_server: LiveServer,
) -> None:
    owner = hub_server.create_user("owner")

    async def scenario() -> None:
        api = Api(hub_server, owner)
        device = await started(phone(hub_server, owner), webhooks=5)
        url = device.webhooks[0]["url"]
        async with httpx.AsyncClient(verify=TLS) as client:
            posted = downloaded_with(*(stored for stored, _ in SERVED))
            answer = await client.post(url, json=envelope("mms:downloaded", posted))
            assert answer.status_code == 204, answer.text
            for bad in ("text/plain\n", "image/png\r\nX-Evil: 1", "image/p\x00ng", "ïmage/png"):
                answer = await client.post(
                    url, json=envelope("mms:downloaded", downloaded_with(bad))
                )
                assert answer.status_code == 400, (bad, answer.text)
                assert "payload.attachments[0].contentType" in answer.json()["message"]
        [message], _ = await api.inbox(type="MMS_DOWNLOADED")
        for part_id, (_stored, served) in enumerate(SERVED):
            answer = await api.client.get(f"/inbox/{message['id']}/attachments/{part_id}")
            assert answer.status_code == 200 and answer.content == b"<p>"
            assert answer.headers["content-type"] == served, _stored
            assert answer.headers["content-security-policy"] == "sandbox; default-src 'none'"
        await device.stop()
        await api.close()

    run(scenario)


def test_a_stored_content_type_with_a_line_break_is_served_clean() -> None:
    """Parts stored before posted types were checked: served, never a broken header."""
    assert shown_type("text/plain\n") == "text/plain"
    assert shown_type("text/html\n") == "application/octet-stream"
    assert shown_type("image/png\r\nX-Evil: 1") == "application/octet-stream"
