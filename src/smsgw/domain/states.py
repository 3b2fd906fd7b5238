"""Processing states of a message and of each of its recipients."""

from __future__ import annotations

from enum import StrEnum


class ProcessingState(StrEnum):
    """The upstream `ProcessingState` enum, shared by messages and recipients."""

    PENDING = "Pending"
    CANCELLING = "Cancelling"
    CANCELLED = "Cancelled"
    PROCESSED = "Processed"
    SENT = "Sent"
    DELIVERED = "Delivered"
    FAILED = "Failed"


#: States from which nothing moves any more.
FINAL_STATES = frozenset(
    {ProcessingState.CANCELLED, ProcessingState.DELIVERED, ProcessingState.FAILED}
)


_BY_VALUE = {state.value: state for state in ProcessingState}


def state_of(value: str) -> ProcessingState:
    """`ProcessingState(value)` for a stored value, without the enum's slower lookup (the
    report path reads a few per message); a value that is no state raises ValueError."""
    found = _BY_VALUE.get(value)
    return found if found is not None else ProcessingState(value)


#: How far along each state is; a report never moves a recipient to a lower rank.
_RANK = {
    ProcessingState.PENDING: 0,
    ProcessingState.CANCELLING: 0,
    ProcessingState.PROCESSED: 1,
    ProcessingState.SENT: 2,
    ProcessingState.DELIVERED: 3,
    ProcessingState.FAILED: 3,
    ProcessingState.CANCELLED: 3,
}


def reported(state: ProcessingState) -> ProcessingState:
    """A phone reporting `Pending` has the message: it counts as `Processed`."""
    return ProcessingState.PROCESSED if state == ProcessingState.PENDING else state


def advance(current: ProcessingState, incoming: ProcessingState) -> ProcessingState:
    """The recipient state after a report: final states stay, others only move forward."""
    incoming = reported(incoming)
    if current in FINAL_STATES or _RANK[incoming] <= _RANK[current]:
        return current
    return incoming


def derive(recipients: list[ProcessingState]) -> ProcessingState:
    """The message state from its recipients' states, as the upstream server documents it."""
    present = set(recipients)
    if ProcessingState.PENDING in present or ProcessingState.CANCELLING in present:
        return ProcessingState.PENDING
    if ProcessingState.PROCESSED in present:
        return ProcessingState.PROCESSED
    for final in (ProcessingState.FAILED, ProcessingState.DELIVERED, ProcessingState.CANCELLED):
        if present == {final}:
            return final
    return ProcessingState.SENT
