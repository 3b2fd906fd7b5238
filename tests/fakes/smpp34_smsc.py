"""A second, independent SMSC for the link tests: PyPI `smpp34`'s own server (`smpp34.Server`,
shared/reference/test-peers.md section 2.2), run in a thread of the test process with its
own event loop, on a free 127.0.0.1 port.

It accepts every bind (any system_id and password: smpp34's server has no hook to refuse
one), answers each submit_sm with the next id (`00000001`, ...), and when a receipt is asked
for sends one: `stat:DELIVRD`, or `stat:UNDELIV err:001` for a destination ending 0000; with
the TLVs `receipted_message_id` and `message_state` (`receipt_tlvs`), or as the text alone.
`answer_id` and `receipt_id` spell the n-th id in the answer and in the receipt.
`mo()` sends an MO deliver_sm to every bound session; `refuse()` has the next submit_sm
rejected with the given command_statuses (`refused` keeps them as they went, with their
destinations), and `unbind()` unbinds every session from the SMSC's side.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import smpp34
from smpp34._smpp34 import TLV_MESSAGE_STATE, TLV_RECEIPTED_MESSAGE_ID

from tests.conftest import free_port

DELIVERED, UNDELIVERABLE = 2, 5


@dataclass(frozen=True)
class Submitted:
    """A submit_sm as the SMSC saw it, and the id it answered."""

    destination: str
    source: str
    data_coding: int
    esm_class: int
    registered_delivery: int
    short_message: bytes
    message_id: str


def hex8(n: int) -> str:
    return f"{n:08X}"


class Smpp34Smsc:
    def __init__(
        self,
        receipt_tlvs: bool = True,
        answer_id: Callable[[int], str] = hex8,
        receipt_id: Callable[[int], str] = hex8,
    ) -> None:
        self.receipt_tlvs = receipt_tlvs
        self.answer_id, self.receipt_id = answer_id, receipt_id
        self.port = 0
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.server: smpp34.Server | None = None
        self.sessions: dict[str, smpp34.Esme] = {}
        self.submitted: list[Submitted] = []
        self.receipts_sent = 0
        self.refusals: list[int] = []
        self.refused: list[tuple[str, int]] = []
        self.binds = 0
        self.ids = itertools.count(1)
        self.serving: asyncio.Future[None] | None = None
        self.tasks: set[asyncio.Task[Any]] = set()

    def start(self) -> Smpp34Smsc:
        self.thread.start()
        for _ in range(5):  # a free port can be taken before the server binds it
            self.port = free_port()
            try:
                self._call(self._start())
            except (smpp34.SmppError, OSError):  # taken: another port
                continue
            return self
        raise RuntimeError("smpp34's SMSC did not start")

    def stop(self) -> None:
        self._call(self._stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)

    def bound(self) -> int:
        return len(self.sessions)

    def mo(
        self, sender: str, body: bytes, data_coding: int, tlvs: list[smpp34.Tlv] | None = None
    ) -> int:
        """An MO deliver_sm from `sender` (international), with `tlvs` if given, to every
        bound session; how many."""
        return int(self._call(self._mo(sender, body, data_coding, tlvs or [])))

    def refuse(self, *statuses: int) -> None:
        """The next submit_sm are rejected with these command_statuses, in order."""
        self._call(self._refuse(statuses))

    async def _refuse(self, statuses: tuple[int, ...]) -> None:  # (on the SMSC's loop)
        self.refusals.extend(statuses)

    def unbind(self) -> int:
        """An unbind to every bound session, from the SMSC's side; how many."""
        return int(self._call(self._unbind()))

    async def _unbind(self) -> int:
        sessions = list(self.sessions.values())
        for session in sessions:
            await session.unbind()
        return len(sessions)

    def _call(self, work: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(work, self.loop).result(timeout=30)

    async def _start(self) -> None:
        server = smpp34.Server(host="127.0.0.1", port=self.port, system_id="SMPP34SMSC")
        await server.start()
        self.server = server
        self.serving = asyncio.ensure_future(self._serve(server))

    async def _stop(self) -> None:
        if self.serving is not None:
            self.serving.cancel()
        for task in list(self.tasks):
            task.cancel()
        if self.server is not None:
            await self.server.stop()

    async def _serve(self, server: smpp34.Server) -> None:
        while True:
            event = await server.next()
            if isinstance(event, smpp34.Esme):
                self.sessions[event.session_id] = event
                self.binds += 1
            elif isinstance(event, smpp34.Unbound):
                self.sessions.pop(event.session_id, None)
            else:
                self._submitted(event)

    def _submitted(self, event: smpp34.SubmitSmEvent) -> None:
        if self.refusals:
            status = self.refusals.pop(0)
            event.reject(status)
            self.refused.append((event.destination_addr, status))
            return
        n = next(self.ids)
        message_id = self.answer_id(n)
        event.accept(message_id=message_id)
        seen = Submitted(
            event.destination_addr, event.source_addr, event.data_coding, event.esm_class,
            event.registered_delivery, event.short_message, message_id,
        )  # fmt: skip
        self.submitted.append(seen)
        session = self.sessions.get(event.session_id)
        if event.registered_delivery & 1 and session is not None:
            task = asyncio.ensure_future(self._receipt(session, event, self.receipt_id(n)))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _receipt(
        self, session: smpp34.Esme, event: smpp34.SubmitSmEvent, message_id: str
    ) -> None:
        failed = event.destination_addr.endswith("0000")
        now = time.strftime("%y%m%d%H%M")
        stat, err, done = ("UNDELIV", "001", "000") if failed else ("DELIVRD", "000", "001")
        text = (
            f"id:{message_id} sub:001 dlvrd:{done} submit date:{now} done date:{now} "
            f"stat:{stat} err:{err} text:"
        )
        tlvs = []
        if self.receipt_tlvs:
            state = UNDELIVERABLE if failed else DELIVERED
            tlvs = [
                smpp34.Tlv(TLV_RECEIPTED_MESSAGE_ID, message_id.encode() + b"\0"),
                smpp34.Tlv(TLV_MESSAGE_STATE, bytes([state])),
            ]
        await session.deliver_sm(
            event.source_addr, text.encode("ascii"), source_addr=event.destination_addr,
            source_addr_ton=event.dest_addr_ton, source_addr_npi=event.dest_addr_npi,
            esm_class=0x04, data_coding=0, tlvs=tlvs,
        )  # fmt: skip
        self.receipts_sent += 1

    async def _mo(self, sender: str, body: bytes, data_coding: int, tlvs: list[smpp34.Tlv]) -> int:
        for session in list(self.sessions.values()):
            await session.deliver_sm(
                "SMSGW", body, source_addr=sender, source_addr_ton=1, source_addr_npi=1,
                data_coding=data_coding, tlvs=tlvs,
            )  # fmt: skip
        return len(self.sessions)
