"""bench/nodes' balanced part judges its sides and sums them up (no nodes are started here:
a run of the part needs PostgreSQL and three servers, `python -m bench.nodes --parts
balanced`)."""

from __future__ import annotations

import pytest
from bench.nodes import balanced
from bench.nodes.balanced import Side

from tests.fakes.phone import SimulatedPhone

pytestmark = pytest.mark.one_engine("no database")  # conftest.py


def phone_that_sent(*ids: str) -> SimulatedPhone:
    phone = SimulatedPhone("http://127.0.0.1:1/api/mobile/v1")
    phone.sent = [(message_id, "+12025550100") for message_id in ids]
    return phone


def test_a_side_where_every_message_went_once_has_no_problem() -> None:
    side = Side("balancer", 1, 3, stored_delivered=3)
    ids = ["a", "b", "c"]
    done = {"a": 10.5, "b": 11.0, "c": 12.0}
    phones = [phone_that_sent("a", "b"), phone_that_sent("c")]
    balanced._outcome(side, phones, ids, set(ids), [5.0, 7.0, 9.0], done, first=10.0)
    assert side.problems == []
    assert (side.delivered, side.delivered_s, side.delivered_per_s) == (3, 2.0, 1.5)
    assert (side.sent_total, side.duplicates, side.never_sent, side.phones_that_sent) == (
        3, 0, 0, 2,
    )  # fmt: skip


def test_a_message_sent_twice_never_sent_or_not_delivered_is_a_problem() -> None:
    side = Side("direct", 2, 3, stored_delivered=1)
    ids = ["a", "b", "c"]
    phones = [phone_that_sent("a"), phone_that_sent("a")]  # "b" and "c" never sent
    balanced._outcome(side, phones, ids, {"a", "b"}, [5.0], {"a": 1.0}, first=0.0)
    said = "\n".join(side.problems)
    for words in ("could not be posted", "sent more than once", "never sent", "1 of 3 delivered",
                  "hold 1 more Delivered"):  # fmt: skip
        assert words in said


def test_the_summary_gives_medians_per_side_and_the_ratio_of_the_same_round() -> None:
    sides = [
        Side("direct", 1, 10, delivered_per_s=200.0, posting_s=2.0, deadlocks=0),
        Side("balancer", 1, 10, delivered_per_s=20.0, posting_s=40.0, deadlocks=50),
        Side("balancer", 2, 10, delivered_per_s=150.0, posting_s=3.0, deadlocks=0),
        Side("direct", 2, 10, delivered_per_s=100.0, posting_s=2.5, deadlocks=0),
    ]
    summary = balanced.summarise(sides)
    assert summary["direct"]["delivered_per_s"]["median"] == 150.0
    assert summary["balancer"]["deadlocks_total"] == 50
    ratio = summary["ratio_balancer_to_direct_delivered_per_s"]
    assert (ratio["min"], ratio["max"]) == (0.1, 1.5)
    assert summary["ratio_balancer_to_direct_posting_s"]["max"] == 20.0
