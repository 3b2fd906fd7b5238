"""One-time sign-in codes are six digits (the app's code field takes digits only), short-lived,
and wrong guesses are throttled per client address and across all addresses."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from smsgw.accounts import codes
from tests.clients import TLS
from tests.conftest import Account, LiveServer, make_settings, running
from tests.test_mobile_api import APP, MOBILE, basic, register


def serve(tmp_path: Path, **overrides: Any) -> Iterator[LiveServer]:
    values: dict[str, Any] = {"registration_rate_limit": 0}
    values.update(overrides)
    with running(make_settings(tmp_path / "data", **values)) as live:
        yield live


def mobile(live: LiveServer) -> httpx.Client:
    return httpx.Client(base_url=live.url + MOBILE, headers=APP, timeout=10, verify=TLS)


def issue(client: httpx.Client, owner: Account) -> dict[str, Any]:
    answer = client.get("/user/code", headers=basic(owner))
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def wrong_code(right: str) -> str:
    return f"{(int(right) + 1) % 10**6:06d}"


def test_codes_are_six_digits_a_phone_can_type() -> None:
    drawn = {codes.draw() for _ in range(2000)}
    assert all(re.fullmatch(r"[0-9]{6}", code) for code in drawn)
    assert len(drawn) > 1900  # random, not a counter or a small set
    assert any(code.startswith("0") for code in drawn)  # leading zeros are kept


def test_a_code_lives_two_minutes_by_default_and_signs_in_one_phone(tmp_path: Path) -> None:
    for live in serve(tmp_path):
        owner = live.create_user("owner")
        with mobile(live) as client:
            before = datetime.now(UTC)
            issued = issue(client, owner)
            assert re.fullmatch(r"[0-9]{6}", issued["code"])
            valid_until = datetime.fromisoformat(issued["validUntil"].replace("Z", "+00:00"))
            assert 100 <= (valid_until - before).total_seconds() <= 125
            signed = register(client, {"Authorization": f"Code {issued['code']}"})
            assert signed.status_code == 201 and signed.json()["login"] == "owner"
            again = register(client, {"Authorization": f"Code {issued['code']}"})
            assert again.status_code == 401


def test_wrong_codes_are_throttled_per_address_even_for_the_right_code(tmp_path: Path) -> None:
    for live in serve(tmp_path, auth_failures_per_address=3):
        owner = live.create_user("owner")
        with mobile(live) as client:
            right = issue(client, owner)["code"]
            guess = {"Authorization": f"Code {wrong_code(right)}"}
            assert [register(client, guess).status_code for _ in range(3)] == [401] * 3
            blocked = register(client, {"Authorization": f"Code {right}"})
            assert blocked.status_code == 429
            assert "too many failed sign-ins" in blocked.json()["message"]
            assert int(blocked.headers["retry-after"]) >= 1
            # Another client is not blocked, and the code was not spent by the refusal.
            other = {"X-Forwarded-For": "203.0.113.5", "Authorization": f"Code {right}"}
            assert register(client, other).status_code == 201


def test_wrong_codes_are_capped_across_all_addresses(tmp_path: Path) -> None:
    for live in serve(tmp_path, code_failures_per_window=5, auth_failures_per_address=1000):
        owner = live.create_user("owner")
        with mobile(live) as client:
            right = issue(client, owner)["code"]
            wrong = wrong_code(right)
            answers = [
                register(
                    client, {"X-Forwarded-For": f"203.0.113.{n}", "Authorization": f"Code {wrong}"}
                ).status_code
                for n in range(1, 7)
            ]
            assert answers == [401] * 5 + [429]
            fresh = {"X-Forwarded-For": "198.51.100.1", "Authorization": f"Code {right}"}
            capped = register(client, fresh)
            assert capped.status_code == 429
            assert "too many wrong codes from all addresses" in capped.json()["message"]
            # Passwords are not affected: a phone can still sign in with the login.
            assert register(client, basic(owner)).status_code == 201


def code_counts(live: LiveServer, token: str) -> dict[str, float]:
    scrape = httpx.get(
        f"{live.url}/metrics", headers={"Authorization": f"Bearer {token}"}, verify=TLS
    )
    found = re.findall(r'smsgw_code_sign_ins_total\{outcome="(\w+)"\} (\S+)', scrape.text)
    return {outcome: float(value) for outcome, value in found}


def test_code_sign_ins_are_counted_in_the_metrics(tmp_path: Path) -> None:
    token = "a-metrics-token-of-some-length"
    for live in serve(tmp_path, metrics_token=token, auth_failures_per_address=2):
        owner = live.create_user("owner")
        before = code_counts(live, token)  # the counters live as long as this process
        with mobile(live) as client:
            right = issue(client, owner)["code"]
            wrong = {"Authorization": f"Code {wrong_code(right)}"}
            register(client, wrong)
            register(client, wrong)
            register(client, wrong)  # throttled
            register(client, {"X-Forwarded-For": "203.0.113.5", "Authorization": f"Code {right}"})
        after = code_counts(live, token)
        added = {k: after.get(k, 0) - before.get(k, 0) for k in ("wrong", "throttled", "accepted")}
        assert added == {"wrong": 2, "throttled": 1, "accepted": 1}
