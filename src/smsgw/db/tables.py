"""Imports every model so that `Base.metadata` knows all tables (for Alembic)."""

from smsgw.accounts.models import User, UserCode, WebSession
from smsgw.accountsettings.models import AccountSettings
from smsgw.apikeys.models import ApiKey
from smsgw.bulk.models import Batch, BatchItem
from smsgw.db.base import Base, SystemValue
from smsgw.devices.models import Device
from smsgw.inbox.models import InboxAttachment, InboxExport, InboxMessage
from smsgw.links.models import Link, LinkMoPart, LinkPart
from smsgw.logs.models import LogEntry
from smsgw.messages.models import (
    Message,
    MessageCount,
    MessageCountChange,
    MessageStateEntry,
    Recipient,
)
from smsgw.optouts.models import OptOut
from smsgw.phonehealth.models import PhoneHealth
from smsgw.routing.models import PhoneUsage, RoutingRule
from smsgw.tokens.models import Token
from smsgw.virtualphones.models import VirtualPhone
from smsgw.webhooks.models import Attempt, Delivery, SigningKey, Webhook, WebhookEvent

__all__ = [
    "AccountSettings",
    "ApiKey",
    "Attempt",
    "Base",
    "Batch",
    "BatchItem",
    "Delivery",
    "Device",
    "InboxAttachment",
    "InboxExport",
    "InboxMessage",
    "Link",
    "LinkMoPart",
    "LinkPart",
    "LogEntry",
    "Message",
    "MessageCount",
    "MessageCountChange",
    "MessageStateEntry",
    "OptOut",
    "PhoneHealth",
    "PhoneUsage",
    "Recipient",
    "RoutingRule",
    "SigningKey",
    "SystemValue",
    "Token",
    "User",
    "UserCode",
    "VirtualPhone",
    "WebSession",
    "Webhook",
    "WebhookEvent",
]
