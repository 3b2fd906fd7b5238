"""smsgw as the hub: what phones are told to post, and taking in what they post.

In hub mode (the default) a phone's `GET /webhooks` lists endpoints of smsgw itself, one per
event it must post, each URL carrying a secret derived from that phone's token; smsgw stores
received messages in the inbox and puts every event in the outbox, from which the users'
webhooks are served. In direct mode (upstream behaviour) phones get the users' own URLs,
plus smsgw's endpoints for received messages so that the inbox still fills. In both modes a
phone posts its `system:ping` to smsgw too, which keeps the phone's health (phonehealth/).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from smsgw.db.engine import Database, UnitConnection
from smsgw.devices import appversion
from smsgw.domain import clock
from smsgw.domain.errors import InvalidInput
from smsgw.domain.keywords import Keywords
from smsgw.inbox import exports
from smsgw.inbox import service as inbox
from smsgw.messages.repository import message_lock
from smsgw.optouts import service as optouts
from smsgw.phonehealth import service as phonehealth
from smsgw.webhooks import outbox, repository
from smsgw.webhooks.events import BATCH_EVENTS, INBOX_EVENTS, PHONE_EVENTS, STATE_TIME_FIELD
from smsgw.webhooks.repository import WebhookRecord

HOOK_ID_PREFIX = "smsgw-"
PING = "system:ping"
#: What every phone posts to smsgw itself, in either mode: received messages fill the inbox,
#: pings keep the phone's health (battery, connection) for the dashboard.
HUB_EVENTS = (*INBOX_EVENTS, PING)
#: Messages in one batch a phone posts: at most 100, as upstream's batches (and smsgw's).
MAX_BATCH = 100


def phone_hooks(
    hook_url: str, records: list[WebhookRecord], direct: bool, app_version: str | None = None
) -> list[dict[str, Any]]:
    """The list a phone gets from `GET /webhooks`: only events its app release knows (an
    unknown one would break the phone's sync, and with it every webhook of the phone)."""
    known = [r for r in records if appversion.knows_event(app_version, r.event)]
    own = [event for event in HUB_EVENTS if appversion.knows_event(app_version, event)]
    if direct:
        theirs = [{"id": r.ext_id, "deviceId": r.device_id, "url": r.url, "event": r.event}
                  for r in known]  # fmt: skip
        wanted = own
    else:
        theirs = []
        wanted = list(dict.fromkeys([*own, *(r.event for r in known)]))
    ours = [{"id": HOOK_ID_PREFIX + event.replace(":", "-"), "deviceId": None, "url": hook_url,
             "event": event} for event in wanted]  # fmt: skip
    return ours + theirs


@functools.lru_cache(maxsize=64)
def posted_state_events(app_version: str | None) -> frozenset[str]:
    """The message events a phone of this app release posts itself when told to (hub mode):
    smsgw makes the same events from its state reports, and waits for these posts."""
    return frozenset(e for e in STATE_TIME_FIELD if appversion.knows_event(app_version, e))


def _envelope(body: Any) -> tuple[str, str, dict[str, Any]]:
    if not isinstance(body, dict):
        raise InvalidInput("body must be a JSON object: {id, webhookId, event, deviceId, payload}")
    event, payload, event_id = body.get("event"), body.get("payload"), body.get("id")
    if not isinstance(event, str) or (event not in PHONE_EVENTS and event not in BATCH_EVENTS):
        raise InvalidInput(f"event: unknown event {event!r}")
    if not isinstance(payload, dict):
        raise InvalidInput("payload: required, a JSON object")
    if not isinstance(event_id, str) or not event_id or len(event_id) > 64:
        raise InvalidInput("id: required, a string of at most 64 characters")
    return event, event_id, payload


def _received(event: str, payload: dict[str, Any]) -> list[tuple[str, inbox.Received, Any]]:
    """(event, message, payload as posted) of each received message in a post: one, or
    each of a batch's `messages`."""
    if event in INBOX_EVENTS:
        return [(event, inbox.parse(event, payload), payload)]
    single, messages = BATCH_EVENTS[event], payload.get("messages")
    if not isinstance(messages, list) or len(messages) > MAX_BATCH:
        raise InvalidInput(f"payload.messages: required, a list of at most {MAX_BATCH}")
    found = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise InvalidInput(f"payload.messages[{i}]: must be a JSON object")
        try:
            found.append((single, inbox.parse(single, message), message))
        except InvalidInput as error:
            raise InvalidInput(
                error.message.replace("payload.", f"payload.messages[{i}].", 1)
            ) from None
    return found


@dataclass(frozen=True)
class OptOutWords:
    """What a received SMS's text opts its sender out of (or back into), and the region its
    number is read in (optouts/service.py)."""

    words: Keywords
    default_region: str | None


async def accept(
    db: Database,
    user_id: int,
    device_id: str,
    body: Any,
    deliver: bool = True,
    opt_outs: OptOutWords | None = None,
) -> None:
    """Take in one event a phone posted: inbox and outbox in one transaction, once each.

    A batch (`{"messages": [...]}`) is taken as each of its messages posted alone; the batch
    itself is never forwarded (an empty one is taken and does nothing). A message in range of
    an open inbox export of the phone keeps that export open. `deliver=False` (direct mode:
    the phone delivers to the users itself) fills the inbox only. With `opt_outs`, a new
    SMS that is a stop (start) word puts its sender on the owner's opt-out list (takes it
    off), in the same transaction.

    A unit of work: posts taken in together share one commit. It names what another node
    could be writing at the same moment (`write_unit`'s locks: `_names`).
    """
    posted, received = _parsed(body, deliver)  # (a bad post is refused before the unit)
    await db.write_unit(
        lambda conn: _accept(conn, user_id, device_id, posted, received, deliver, opt_outs),
        locks=_names(user_id, device_id, posted, received),
    )


async def accept_unit(
    conn: UnitConnection,
    user_id: int,
    device_id: str,
    body: Any,
    deliver: bool = True,
    opt_outs: OptOutWords | None = None,
) -> None:
    """`accept` within the caller's unit of work or transaction (its other writes commit
    with it)."""
    posted, received = _parsed(body, deliver)
    await _accept(conn, user_id, device_id, posted, received, deliver, opt_outs)


def _parsed(
    body: Any, deliver: bool
) -> tuple[tuple[str, str, dict[str, Any]], list[tuple[str, inbox.Received, Any]]]:
    """The post's (event, id, payload) and its received messages; InvalidInput when it
    cannot be taken in."""
    posted = _envelope(body)
    event, _, payload = posted
    received = _received(event, payload) if _taken(event) else []
    if deliver and event in STATE_TIME_FIELD:
        _subject(payload)
    return posted, received


def _subject(payload: dict[str, Any]) -> tuple[str, str]:
    """The message and the recipient a state event is about; InvalidInput without them."""
    message_id = payload.get("messageId")
    number = payload.get("recipient") or payload.get("phoneNumber")
    if not isinstance(message_id, str) or not isinstance(number, str):
        raise InvalidInput("payload.messageId and payload.recipient are required")
    return message_id, number


def _taken(event: str) -> bool:
    """Whether the event is of received messages (the inbox takes them in)."""
    return event in INBOX_EVENTS or event in BATCH_EVENTS


def _names(
    user_id: int,
    device_id: str,
    posted: tuple[str, str, dict[str, Any]],
    received: list[tuple[str, inbox.Received, Any]],
) -> list[str]:
    """What a post names for its batch to lock (`write_unit`'s locks): each received
    message, and the phone's inbox exports, whose open rows each post of messages updates
    (`exports.touch_unit`: two phones replaying their inboxes, their posts spread over two
    nodes, would otherwise lock the two exports in opposite orders); the message a state
    event is about (its state report names it too); or the outbox key of another event of
    the phone's (`system:ping`, `app:started`), which two nodes taking the same post at
    once would otherwise both insert."""
    event, event_id, payload = posted
    names = [f"inbox {user_id} {inbox.dedupe_key(device_id, item)}" for _, item, _ in received]
    if received:
        names.append(f"inbox exports {device_id}")
    if event in STATE_TIME_FIELD:
        message_id = payload.get("messageId")
        if isinstance(message_id, str):
            names.append(message_lock(user_id, message_id))
    elif not _taken(event):
        names.append(f"event {user_id} {_event_key(event, device_id, event_id)}")
    return names


def _event_key(event: str, device_id: str, event_id: str) -> str:
    """The outbox's dedupe key of an event other than a message's (`_forward`)."""
    return f"{event}:{device_id}:{event_id}"


async def _accept(
    conn: UnitConnection,
    user_id: int,
    device_id: str,
    posted: tuple[str, str, dict[str, Any]],
    received: list[tuple[str, inbox.Received, Any]],
    deliver: bool,
    opt_outs: OptOutWords | None,
) -> None:
    event, _, payload = posted
    if event == PING:
        await phonehealth.record_unit(conn, device_id, payload, clock.now())
    await exports.touch_unit(conn, user_id, device_id, [item for _, item, _ in received])
    for single, item, as_posted in received:
        stored = await inbox.store_unit(conn, user_id, device_id, item)
        if stored and opt_outs is not None and item.type == "SMS":
            rules = (opt_outs.words, opt_outs.default_region)
            await optouts.from_sms_unit(conn, user_id, item.sender, item.text, *rules)
        if stored and deliver:
            key = "inbox:" + inbox.dedupe_key(device_id, item)
            await outbox.record_unit(conn, user_id, device_id, single, key, as_posted)
    if not _taken(event) and deliver:
        await _forward(conn, user_id, device_id, posted)


async def _forward(
    conn: UnitConnection, user_id: int, device_id: str, posted: tuple[str, str, dict[str, Any]]
) -> None:
    """Outbox an event other than a received message (a message event once per recipient)."""
    event, event_id, payload = posted
    if event not in STATE_TIME_FIELD:
        key = _event_key(event, device_id, event_id)
        await outbox.record_unit(conn, user_id, device_id, event, key, payload)
        return
    message_id, number = _subject(payload)
    if await repository.message_known_unit(conn, user_id, message_id):
        key = outbox.state_key(event, message_id, number)
        if not await outbox.record_unit(conn, user_id, device_id, event, key, payload):
            await outbox.complete_unit(conn, user_id, key, payload)  # the report came first
