"""The link runner's pacing on its own (links/runner.py), with an injected clock: the pause
after busy answers (docs/links.md, "Throttling")."""

from __future__ import annotations

import pytest

from smsgw.links.runner import BUSY_FIRST, BUSY_LONGEST, Slowdown


class Clock:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_window_throttled_together_pauses_once_and_doubles_the_delay_once() -> None:
    """Ten submit_sm out together, all answered busy: one pause of BUSY_FIRST, the next one
    twice as long (before, each of the ten doubled it: 0.5 s became 30 s)."""
    clock = Clock()
    slowdown = Slowdown(clock)
    since = slowdown.pauses  # when the ten went out

    for _ in range(10):
        slowdown.busy(since)
        clock.now += 0.001

    assert slowdown.until == 1000.0 + BUSY_FIRST
    assert slowdown.delay == 2 * BUSY_FIRST
    assert slowdown.left() == pytest.approx(BUSY_FIRST - 0.01)


def test_answers_to_a_window_sent_before_a_pause_do_not_double_it_after_its_end() -> None:
    """A slow carrier's busy answers to the same window may come after its pause ended:
    that pause was their answer already."""
    clock = Clock()
    slowdown = Slowdown(clock)
    since = slowdown.pauses
    slowdown.busy(since)
    clock.now += BUSY_FIRST + 0.1
    assert slowdown.left() == 0

    slowdown.busy(since)

    assert slowdown.left() == 0
    assert slowdown.delay == 2 * BUSY_FIRST


def test_busy_again_after_a_pause_doubles_it_up_to_the_longest() -> None:
    clock = Clock()
    slowdown = Slowdown(clock)
    pauses = []
    for _ in range(10):
        slowdown.busy(slowdown.pauses)  # a part sent after the last pause, answered busy
        pauses.append(slowdown.left())
        clock.now = slowdown.until  # the pause waited out

    assert pauses == [0.5, 1, 2, 4, 8, 16, 30, 30, 30, 30]
    assert BUSY_LONGEST == 30


def test_an_accepted_answer_ends_the_pause_and_the_next_starts_from_the_first() -> None:
    clock = Clock()
    slowdown = Slowdown(clock)
    slowdown.busy(slowdown.pauses)
    clock.now += BUSY_FIRST
    slowdown.busy(slowdown.pauses)
    assert slowdown.left() == 2 * BUSY_FIRST

    slowdown.accepted()

    assert slowdown.left() == 0
    assert not slowdown.until  # (the sender's check: no pause in force)
    slowdown.busy(slowdown.pauses)
    assert slowdown.left() == BUSY_FIRST


def test_an_intent_that_could_not_be_recorded_pauses_unless_a_pause_is_in_force() -> None:
    clock = Clock()
    slowdown = Slowdown(clock)
    slowdown.busy()
    assert slowdown.left() == BUSY_FIRST

    clock.now += 0.1
    slowdown.busy()

    assert slowdown.left() == pytest.approx(BUSY_FIRST - 0.1)
    assert slowdown.delay == 2 * BUSY_FIRST
