"""Queueing many messages at once: each through `messages.service.send`, as `POST /messages`
queues one, all submitted together so that group commit (db/engine.py) stores them a few
hundred per transaction; each succeeds or fails on its own."""

from __future__ import annotations

import asyncio

from smsgw.db.engine import Database
from smsgw.domain.errors import DomainError
from smsgw.messages import service as messages
from smsgw.messages.repository import MessageRecord

Outcome = MessageRecord | DomainError


async def send_many(
    db: Database, region: str | None, user_id: int, commands: list[messages.SendCommand]
) -> list[Outcome]:
    """Each command's message (committed) or the DomainError that refused it, in order."""

    async def one(command: messages.SendCommand) -> Outcome:
        try:
            return await messages.send(db, region, user_id, command)
        except DomainError as error:
            return error

    return list(await asyncio.gather(*(one(command) for command in commands)))
