"""Pure rules: state ordering, timestamps from phones, SSE frames, the rate limiter."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime

import pytest

from smsgw.accounts.throttle import RateLimiter
from smsgw.domain.clock import format_timestamp, parse_timestamp
from smsgw.domain.errors import TooManyRequests
from smsgw.domain.ids import message_id
from smsgw.domain.states import ProcessingState as S
from smsgw.domain.states import advance, derive
from smsgw.events.hub import Event, EventHub, PhoneEvent

pytestmark = pytest.mark.one_engine("no database")  # conftest.py


@pytest.mark.parametrize(
    ("current", "incoming", "expected"),
    [
        (S.PENDING, S.PENDING, S.PROCESSED),
        (S.PENDING, S.SENT, S.SENT),
        (S.SENT, S.PROCESSED, S.SENT),
        (S.DELIVERED, S.SENT, S.DELIVERED),
        (S.SENT, S.FAILED, S.FAILED),
        (S.FAILED, S.DELIVERED, S.FAILED),
        (S.DELIVERED, S.FAILED, S.DELIVERED),
        (S.PENDING, S.CANCELLED, S.CANCELLED),
        (S.CANCELLED, S.SENT, S.CANCELLED),
    ],
)
def test_recipient_states_only_move_forward(current: S, incoming: S, expected: S) -> None:
    assert advance(current, incoming) == expected


@pytest.mark.parametrize(
    ("recipients", "expected"),
    [
        ([S.PENDING, S.SENT], S.PENDING),
        ([S.PROCESSED, S.DELIVERED], S.PROCESSED),
        ([S.FAILED, S.FAILED], S.FAILED),
        ([S.DELIVERED], S.DELIVERED),
        ([S.CANCELLED, S.CANCELLED], S.CANCELLED),
        ([S.DELIVERED, S.FAILED], S.SENT),
        ([S.SENT, S.DELIVERED], S.SENT),
    ],
)
def test_message_state_is_derived_from_recipients(recipients: list[S], expected: S) -> None:
    assert derive(recipients) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-07-14T10:11:12.345+07:00", "2026-07-14T03:11:12.345Z"),
        ("2026-07-14T10:11:12.345Z", "2026-07-14T10:11:12.345Z"),
        ("2026-07-14T10:11:12Z", "2026-07-14T10:11:12.000Z"),
        ("2026-07-14T10:11:12.123456789Z", "2026-07-14T10:11:12.123Z"),
        ("2026-07-14T10:11:12.345+0000", "2026-07-14T10:11:12.345Z"),
        ("2026-07-14T10:11:12.345+-5:00", "2026-07-14T15:11:12.345Z"),
        ("2026-07-14T10:11:12.345-05:00", "2026-07-14T15:11:12.345Z"),
        ("2026-07-14 10:11", "2026-07-14T10:11:00.000Z"),
    ],
)
def test_phone_timestamps_are_read_leniently(text: str, expected: str) -> None:
    assert format_timestamp(parse_timestamp(text)) == expected


def test_garbage_is_not_a_timestamp() -> None:
    with pytest.raises(ValueError, match="not a timestamp"):
        parse_timestamp("yesterday")


def test_a_moment_out_of_range_in_utc_is_not_a_timestamp() -> None:
    with pytest.raises(ValueError, match="not a timestamp in range"):
        parse_timestamp("0001-01-01T00:00:00+01:00")
    with pytest.raises(ValueError, match="not a timestamp in range"):
        parse_timestamp("9999-12-31T23:59:59-01:00")


def test_only_short_timestamps_are_remembered() -> None:
    """A phone's timestamps are cached; a text long enough to fill memory is not kept."""
    from smsgw.domain.clock import CACHED_TEXT, _parse_cached

    long = "2026-07-14T10:11:12." + "1" * 100_000 + "Z"
    before = _parse_cached.cache_info().currsize
    assert format_timestamp(parse_timestamp(long)) == "2026-07-14T10:11:12.111Z"
    assert _parse_cached.cache_info().currsize == before
    short = "2026-07-14T10:11:12.999+01:00"
    assert len(short) <= CACHED_TEXT
    parse_timestamp(short)
    assert parse_timestamp(short) is parse_timestamp(short)


def test_timestamps_go_out_with_three_fractional_digits() -> None:
    moment = datetime(2026, 7, 14, 3, 11, 12, 345678, tzinfo=UTC)
    assert format_timestamp(moment) == "2026-07-14T03:11:12.345Z"


def test_every_sse_frame_has_a_data_line() -> None:
    assert Event(PhoneEvent.MESSAGE_ENQUEUED).frame() == "event: MessageEnqueued\ndata: null\n\n"
    cancelled = Event(PhoneEvent.MESSAGE_CANCELLED, {"messageId": "abc"}).frame()
    assert cancelled == 'event: MessageCancelled\ndata: {"messageId":"abc"}\n\n'


def test_the_hub_fans_out_to_every_stream_of_a_phone_and_drops_the_oldest_when_full() -> None:
    hub = EventHub()
    first, only = hub.open("phone", 1)
    second, only_again = hub.open("phone", 1)
    assert only and not only_again
    assert hub.devices_of(1) == {"phone"}
    assert hub.publish({"phone"}, Event(PhoneEvent.SETTINGS_UPDATED)) == 2
    for _ in range(40):
        hub.publish({"phone"}, Event(PhoneEvent.MESSAGE_ENQUEUED))
    assert first.queue.qsize() == 16
    hub.close("phone", 1, first)
    hub.close("phone", 1, second)
    assert not hub.is_connected("phone")
    assert hub.devices_of(1) == set()


def test_the_rate_limiter_refuses_past_the_limit_with_retry_after() -> None:
    limiter = RateLimiter(limit=2, window=60)
    limiter.hit("1.2.3.4", "registrations")
    limiter.hit("1.2.3.4", "registrations")
    limiter.hit("5.6.7.8", "registrations")
    with pytest.raises(TooManyRequests) as refused:
        limiter.hit("1.2.3.4", "registrations")
    assert 1 <= refused.value.retry_after <= 60
    RateLimiter(limit=0).hit("x", "anything")


def test_phones_are_woken_in_turn() -> None:
    hub = EventHub()
    for phone in ("a", "b", "c"):
        hub.open(phone, 7)
    picks = [hub.pick(7, 1)[0] for _ in range(6)]
    assert picks == ["a", "b", "c", "a", "b", "c"]
    assert sorted(hub.pick(7, 5)) == ["a", "b", "c"]
    assert hub.pick(8, 1) == []


def test_message_ids_are_uuid7_strings_that_sort_by_creation_time() -> None:
    before_ms = time.time_ns() // 1_000_000
    first = [message_id() for _ in range(2000)]
    time.sleep(0.003)
    later = message_id()
    assert len(set(first)) == len(first)  # 74 random bits: no repeats
    for text in [*first, later]:
        parsed = uuid.UUID(text)
        assert str(parsed) == text  # the usual 8-4-4-4-12 lowercase form
        assert parsed.version == 7
        assert parsed.variant == uuid.RFC_4122
        created_ms = parsed.int >> 80
        assert before_ms <= created_ms <= time.time_ns() // 1_000_000
    assert max(first) < later  # a later millisecond sorts after: appended to the index
