"""Retention: what the periodic worker deletes, and the space it then gives back.

Always: event-log entries past SMSGW_EVENT_LOG_RETENTION_DAYS, and whatever has expired and
serves nothing any more (dashboard sessions, one-time codes, token records past their
expiry, API keys revoked or expired 90 days ago). With SMSGW_RETENTION_DAYS: messages done
for that long, with their recipients and history, and received messages that old, with
their attachments. (Webhook events and deliveries and inbox exports are the webhook
worker's: workers/webhooks.py.) Every kind goes in small batches, each its own short write
(db/engine.py, `delete_in_batches`); then the file's free pages go back to the file system
a few at a time (SQLite; db/space.py).
"""

from __future__ import annotations

import logging
from pathlib import Path

from smsgw.accounts import codes, sessions
from smsgw.apikeys import service as apikeys
from smsgw.config import Settings
from smsgw.db import space
from smsgw.db.engine import Database
from smsgw.inbox import service as inbox
from smsgw.logs import service as logs
from smsgw.messages import service as messages
from smsgw.tokens import service as tokens

log = logging.getLogger("smsgw.workers")


async def sweep(db: Database, settings: Settings) -> dict[str, int]:
    """Delete what retention says is gone, then give the space back; how many rows of each
    kind went, and how many pages (`pages`: SQLite's; 0 on PostgreSQL, whose autovacuum
    makes the space reusable by itself)."""
    gone = {
        "event_log": await logs.prune(db, settings.event_log_retention_days),
        "web_sessions": await sessions.prune_expired(db),
        "user_codes": await codes.prune_expired(db),
        "tokens": await tokens.prune_expired(db),
        "api_keys": await apikeys.prune_ended(db),
    }
    if settings.retention_days is not None:
        gone["messages"] = await messages.prune(db, settings.retention_days)
        gone["inbox"] = await inbox.prune(db, settings.retention_days)
        # The deleted messages' count changes (docs/architecture.md, Message counts) are
        # folded now, so their pages are free before the space is given back.
        await messages.fold_counts(db)
    # Also when nothing went this time: pages freed before a restart are still free.
    gone["pages"] = await db.reclaim_space()
    if any(gone.values()):
        log.info("retention: %s", ", ".join(f"{n} {kind}" for kind, n in gone.items() if n))
    return gone


def gives_space_back(db: Database, settings: Settings) -> bool:
    """Whether retention's deletes shrink the database: False, with a warning, for a SQLite
    file made before incremental auto-vacuum while SMSGW_RETENTION_DAYS is set (its free
    pages are reused, but it never shrinks until `smsgw db vacuum` converts it)."""
    if settings.retention_days is None or not db.path:
        return True
    if space.mode_of(Path(db.path)) != space.NONE:
        return True
    log.warning(
        "retention: %s is in auto_vacuum mode none, so it never shrinks (the space deleted "
        "rows leave is reused); run `smsgw db vacuum` once to convert it "
        "(docs/operations.md, Retention and disk space)",
        db.path,
    )
    return False
