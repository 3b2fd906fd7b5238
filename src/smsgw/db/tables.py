"""Imports every model so that `Base.metadata` knows all tables (for Alembic)."""

from smsgw.accounts.models import User, UserCode
from smsgw.db.base import Base, SystemValue
from smsgw.devices.models import Device
from smsgw.inbox.models import InboxMessage
from smsgw.messages.models import Message, MessageStateEntry, Recipient
from smsgw.webhooks.models import Attempt, Delivery, SigningKey, Webhook, WebhookEvent

__all__ = [
    "Attempt",
    "Base",
    "Delivery",
    "Device",
    "InboxMessage",
    "Message",
    "MessageStateEntry",
    "Recipient",
    "SigningKey",
    "SystemValue",
    "User",
    "UserCode",
    "Webhook",
    "WebhookEvent",
]
