"""Which release of SMS Gateway for Android a phone runs, and what that release understands.

Every request of the app's own HTTP client carries `User-Agent: me.capcom.smsgateway/<version>`
(the release tag without its `v`; the event stream uses OkHttp's own User-Agent and names no
version). The app parses the webhook list it syncs into a fixed set of event names: a release
that meets a name it does not know fails the whole sync and from then on posts no webhook at
all (read from the app's source, tag by tag). So a phone is handed only the events its release
knows.
"""

from __future__ import annotations

import re

PRODUCT = "me.capcom.smsgateway/"
#: The `versionName` of the app's source tree: only self-built apps report it (every release
#: gets its tag), so it tells nothing about what the app knows.
PLACEHOLDER = "1.0.0"
_VERSION = re.compile(r"[0-9][0-9A-Za-z.+_-]{0,31}")
_NUMBERS = re.compile(r"(\d+)(?:\.(\d+))?(?:\.(\d+))?")

Version = tuple[int, int, int]

#: The first release that knows each webhook event (the `WebHookEvent` enum of each tag).
EVENT_SINCE: dict[str, Version] = {
    "sms:received": (1, 15, 0),
    "system:ping": (1, 16, 0),
    "sms:sent": (1, 18, 0),
    "sms:delivered": (1, 19, 0),
    "sms:failed": (1, 19, 0),
    "sms:data-received": (1, 39, 0),
    "mms:received": (1, 47, 0),
    "mms:downloaded": (1, 56, 0),
    "app:started": (1, 66, 0),
    "sms:cancelled": (1, 67, 0),
}
#: The first release with an event stream (`GET /events`), and the first with the
#: `SSE_ONLY` notification channel: before it, a phone with an FCM token (Google Play
#: services) never opens the stream, and smsgw cannot reach it through Firebase.
SSE_SINCE: Version = (1, 43, 0)
SSE_ONLY_SINCE: Version = (1, 53, 0)


def from_user_agent(header: str | None) -> str | None:
    """The app version a User-Agent names, or None when it is not the app's (or malformed)."""
    if header is None or not header.startswith(PRODUCT):
        return None
    candidate = header[len(PRODUCT) :].split(" ", 1)[0]
    return candidate if _VERSION.fullmatch(candidate) else None


def parse(version: str | None) -> Version | None:
    """(major, minor, patch) of a release version; None when unknown, unreadable or the
    source tree's placeholder (such a phone is treated as the newest release)."""
    if version is None or version == PLACEHOLDER:
        return None
    found = _NUMBERS.match(version)
    if found is None:
        return None
    major, minor, patch = (int(part or 0) for part in found.groups())
    return major, minor, patch


def knows_event(version: str | None, event: str) -> bool:
    """Whether the app release `version` can parse the webhook event `event` (an unknown
    version is taken as the newest release, which knows every event of EVENT_SINCE)."""
    parsed = parse(version)
    since = EVENT_SINCE.get(event)
    if since is None:
        return False
    return parsed is None or parsed >= since


def polls_only(version: str | None, push_token: str | None) -> bool:
    """Whether a phone of this release never opens the event stream: a release before it
    existed, or one before `SSE_ONLY` that got an FCM token. Such a phone pulls its messages
    only every 15 minutes (or on each ping)."""
    parsed = parse(version)
    if parsed is None:
        return False
    return parsed < SSE_SINCE or (parsed < SSE_ONLY_SINCE and bool(push_token))
