"""Imports every model so that `Base.metadata` knows all tables (for Alembic)."""

from smsgw.accounts.models import User, UserCode
from smsgw.db.base import Base, SystemValue
from smsgw.devices.models import Device
from smsgw.messages.models import Message, MessageStateEntry, Recipient
from smsgw.tokens.models import Token

__all__ = [
    "Base",
    "Device",
    "Message",
    "MessageStateEntry",
    "Recipient",
    "SystemValue",
    "Token",
    "User",
    "UserCode",
]
