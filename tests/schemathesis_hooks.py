"""What the OpenAPI document says in words and JSON Schema cannot, taught to schemathesis.

Loaded by the schemathesis CLI (`SCHEMATHESIS_HOOKS`) in tests/test_schemathesis.py. Each rule
here is one the published document states in a description, because JSON Schema has no way
to: a value compared with the clock, two values compared with each other, or a value that
must name something the caller owns. Only *schema-valid* (positive) requests are touched:
those breaking such a rule are not generated, since the server rightly refuses them (and
tests elsewhere pin that it does). Invalid (negative) requests are left as generated. One
failure kind is set aside, for one operation: see `filter_failure`.

The `phone` string format (what `phoneNumbers` holds) is given a generator of valid mobile
numbers, as the format's description promises the server checks them.

The environment gives `SMSGW_FUZZ_PHONE_ID`: the id of the phone the run signs in with.
"""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import schemathesis
from hypothesis import strategies as st
from schemathesis.generation import GenerationMode
from schemathesis.openapi.checks import UseAfterFree

PHONE_ID = os.environ.get("SMSGW_FUZZ_PHONE_ID", "")
#: Valid mobile numbers (libphonenumber agrees): US numbers of the 202-555 exchange.
schemathesis.openapi.format(
    "phone", st.integers(min_value=100, max_value=9999).map(lambda n: f"+1202555{n:04d}")
)


def _instant(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))


def _fields(case: Any) -> dict[str, Any]:
    return case.body if isinstance(case.body, dict) else {}


def _send_times_in_order(case: Any) -> bool:
    """`validUntil` and `scheduleAt` in the future, and `scheduleAt` not after the expiry
    (`validUntil`, or now + `ttl`). A minute of margin: the request is sent a little later."""
    body = _fields(case)
    soon = datetime.now(UTC) + timedelta(minutes=1)
    valid_until, schedule_at = _instant(body.get("validUntil")), _instant(body.get("scheduleAt"))
    if valid_until is not None and valid_until <= soon:
        return False
    ttl = body.get("ttl")
    if ttl is not None and not isinstance(ttl, bool) and isinstance(ttl, int | float):
        valid_until = datetime.now(UTC) + timedelta(seconds=ttl)
    if schedule_at is not None and schedule_at <= soon:
        return False
    margin = timedelta(minutes=1)
    return schedule_at is None or valid_until is None or schedule_at <= valid_until - margin


def _key_expiry_ahead(case: Any) -> bool:
    """API keys: `expiresAt` in the future (a minute of margin, as for messages)."""
    expires_at = _instant(_fields(case).get("expiresAt"))
    return expires_at is None or expires_at > datetime.now(UTC) + timedelta(minutes=1)


def _range_in_order(case: Any) -> bool:
    """Inbox refresh: `since` not after `until`."""
    body = _fields(case)
    since, until = _instant(body.get("since")), _instant(body.get("until"))
    return since is None or until is None or since <= until


def _export_span(case: Any) -> bool:
    """CSV exports: `from` before `to`, at most 366 days apart."""
    query = case.query or {}
    since, until = _instant(query.get("from")), _instant(query.get("to"))
    if since is None or until is None:
        return True
    return since < until and until - since <= timedelta(days=366)


def _one_page_position(case: Any) -> bool:
    """Messages list: `skip` and `offset` are the same parameter; both only when equal."""
    query = case.query or {}
    return "skip" not in query or "offset" not in query or query["skip"] == query["offset"]


def _settings_consistent(case: Any) -> bool:
    """Settings: `send_interval_max` ≥ `send_interval_min`, and work hours given with their
    switch, on the settings as stored. A merge (PATCH) meets what is stored already, so only
    bodies that settle each rule by themselves are generated."""
    messages = _fields(case).get("messages")
    if not isinstance(messages, dict):
        return True
    low, high = messages.get("send_interval_min"), messages.get("send_interval_max")
    if (low is None) != (high is None) or (low is not None and high < low):
        return False
    hours = ("work_hours_start", "work_hours_end")
    enabled = messages.get("work_hours_enabled")
    if any(key in messages for key in hours) and "work_hours_enabled" not in messages:
        return False
    return not enabled or all(messages.get(key) is not None for key in hours)


def _routing_consistent(case: Any) -> bool:
    """Routing rule: prefixes with mode `prefix` and only then; no failover in `shared`."""
    body = _fields(case)
    mode, prefixes = body.get("mode"), body.get("prefixes") or []
    if (mode == "prefix") != bool(prefixes):
        return False
    return mode != "shared" or not body.get("failoverAfter")


def _keeps_the_phone(case: Any) -> bool:
    """The run's own phone is not deleted: the phone's operations sign in with it, and
    `deviceActiveWithin` needs a phone seen lately."""
    return (case.path_parameters or {}).get("id") != PHONE_ID


def _webhook(case: Any) -> bool:
    """Webhooks: nothing to leave out (see `map_case`)."""
    return True


RULES: dict[tuple[str, str], Callable[[Any], bool]] = {
    ("POST", "/webhooks"): _webhook,
    ("POST", "/messages"): _send_times_in_order,
    ("POST", "/message"): _send_times_in_order,
    ("GET", "/messages"): _one_page_position,
    ("GET", "/message"): _one_page_position,
    ("POST", "/auth/keys"): _key_expiry_ahead,
    ("POST", "/inbox/refresh"): _range_in_order,
    ("POST", "/messages/inbox/export"): _range_in_order,
    ("GET", "/exports/messages"): _export_span,
    ("GET", "/exports/inbox"): _export_span,
    ("PATCH", "/settings"): _settings_consistent,
    ("PUT", "/settings"): _settings_consistent,
    ("PUT", "/links/routing"): _routing_consistent,
    ("DELETE", "/devices/{id}"): _keeps_the_phone,
    ("DELETE", "/device/{id}"): _keeps_the_phone,
}
PREFIX = "/api/3rdparty/v1"


def _rule(case: Any) -> Callable[[Any], bool] | None:
    path = case.operation.path
    if not path.startswith(PREFIX + "/"):
        return None
    return RULES.get((case.operation.method.upper(), path[len(PREFIX) :]))


def _positive(case: Any) -> bool:
    meta = case.meta
    return meta is None or meta.generation.mode == GenerationMode.POSITIVE


@schemathesis.hook
def filter_case(context: Any, case: Any) -> bool:
    rule = _rule(case)
    return rule is None or not _positive(case) or rule(case)


#: A cursor as the server gives them (`after`): base64url of "<microseconds>.<key>".
CURSOR = base64.urlsafe_b64encode(b"1764763200000000.1").decode().rstrip("=")
#: A public https:// URL that never resolves (`.invalid` is reserved): nothing is posted.
PUBLIC_URL = "https://smsgw-fuzz.invalid/hook"


@schemathesis.hook
def map_case(context: Any, case: Any) -> Any:
    """What must name something real: the phone chosen for a message or a webhook is one of
    yours (the run's phone), and a webhook's URL is of a public host (the published pattern
    says `http(s)://`; which hosts are public no schema can say)."""
    rule, body = _rule(case), _fields(case)
    if not _positive(case):
        return case
    query = case.query or {}
    if rule is _one_page_position and "after" in query:
        # A cursor is one this server gave (any string of its alphabet is not), and goes
        # without skip or offset: the documented words, as the schema cannot say them.
        query["after"] = CURSOR
        query.pop("skip", None)
        query.pop("offset", None)
    if not body:
        return case
    if rule in (_send_times_in_order, _webhook) and body.get("deviceId"):
        body["deviceId"] = PHONE_ID
    if rule is _webhook:
        body["url"] = PUBLIC_URL
    return case


#: `DELETE /messages/{id}` cancels a message (as upstream's does); it is not deleted, and
#: reading it back answers its state, Cancelled. Its description says so.
CANCEL = re.compile(r"^DELETE /api/3rdparty/v1/messages?/\{id\}$")


@schemathesis.hook
def filter_failure(context: Any, failure: Any, case: Any, response: Any) -> bool:
    """Every failure counts but "deleted resource still available" after a cancel."""
    return not (isinstance(failure, UseAfterFree) and CANCEL.match(str(failure.operation)))
