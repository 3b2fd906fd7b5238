"""A downloaded MMS with large attachments (base64 in the phone's post) is taken in: phones'
hook posts have their own body limit (SMSGW_PHONE_POST_MAX_BYTES), above the API's 1 MiB."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest

from tests.clients import TLS
from tests.conftest import Account, LiveServer, running
from tests.webhook_support import Api, eventually, hub_settings, phone, run, started, until

MIB = 1024 * 1024


def receive_and_read_back(live: LiveServer, owner: Account, image: bytes) -> list[int]:
    """The phone receives an MMS carrying `image`; returns the status of each event's first
    post, and checks the stored attachment is `image` byte for byte when the post was
    taken."""
    statuses: list[int] = []

    async def scenario() -> None:
        api = Api(live, owner)
        device = await started(phone(live, owner), webhooks=5)
        device.receive_mms("+12025550111", "Photo", "Big one", [("image/jpeg", "big.jpg", image)])
        # Each event's first post: a refused one is posted again after a moment (the app
        # retries), and on a busy machine a retry may come before the other event's post.
        await eventually(lambda: len({event for event, _ in device.webhook_posts}) >= 2, 60)
        first: dict[str, int] = {}
        for event, status in device.webhook_posts:
            first.setdefault(event, status)
        statuses.extend(first.values())
        if all(status == 204 for status in statuses):

            async def stored() -> bool:
                return (await api.inbox(type="MMS_DOWNLOADED"))[1] == 1

            await until(stored, within=60)
            [mms], _ = await api.inbox(type="MMS_DOWNLOADED", includeAttachments="true")
            assert mms["attachments"][0]["size"] == len(image)
            part = await api.client.get(f"/inbox/{mms['id']}/attachments/100")
            assert part.status_code == 200 and part.content == image
        await device.stop()
        await api.close()

    run(scenario)
    return statuses


@pytest.mark.parametrize("size", [900 * 1000, 3 * 1000 * 1000], ids=["900KB", "3MB"])
def test_a_large_mms_post_is_stored_whole(tmp_path: Path, size: int) -> None:
    with running(hub_settings(tmp_path / "data")) as live:
        statuses = receive_and_read_back(live, live.create_user("owner"), os.urandom(size))
    assert sorted(statuses) == [204, 204]


def test_a_post_over_the_phones_limit_is_refused_and_the_api_keeps_its_own(
    tmp_path: Path,
) -> None:
    settings = hub_settings(tmp_path / "data", phone_post_max_bytes=2 * MIB)
    with running(settings) as live:
        owner = live.create_user("owner")
        statuses = receive_and_read_back(live, owner, os.urandom(3 * 1000 * 1000))
        assert sorted(statuses) == [204, 413]  # the notification is small; the download is not
        big = {"phoneNumbers": ["+12025550100"], "textMessage": {"text": "x" * (MIB + 10)}}
        answer = httpx.post(
            f"{live.api}/messages", json=big, auth=(owner.login, owner.password), verify=TLS
        )
        assert answer.status_code == 413
        assert "limit is 1048576 bytes" in answer.json()["message"]
