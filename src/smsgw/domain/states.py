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
