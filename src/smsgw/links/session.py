"""The SMPP session of a link: the only module that speaks to smpp34 (docs/links.md says why
it is kept behind one module). Binds (transceiver, or a transmitter and a receiver: the
link's bind mode), submits parts, yields what the carrier sends, unbinds; and says what each
failure means for the part concerned. smpp34 sends and answers enquire_link on each bind.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import smpp34
from smpp34._smpp34 import (
    ESME_RMSGQFUL,
    ESME_RSYSERR,
    ESME_RTHROTTLED,
    TLV_MESSAGE_PAYLOAD,
    TLV_MESSAGE_STATE,
    TLV_RECEIPTED_MESSAGE_ID,
    TLV_SAR_MSG_REF_NUM,
    TLV_SAR_SEGMENT_SEQNUM,
    TLV_SAR_TOTAL_SEGMENTS,
)

from smsgw.links.encoding import Segment
from smsgw.links.receipts import carrier_id
from smsgw.links.repository import LinkRecord
from smsgw.links.schemas import TRANSCEIVER, TX_RX

log = logging.getLogger("smsgw.links")

#: Command statuses (SMPP 3.4, 5.1.3) by value, for errors people read.
STATUS_NAMES = {
    0x00: "ESME_ROK", 0x01: "ESME_RINVMSGLEN", 0x02: "ESME_RINVCMDLEN", 0x03: "ESME_RINVCMDID",
    0x04: "ESME_RINVBNDSTS", 0x05: "ESME_RALYBND", 0x06: "ESME_RINVPRTFLG",
    0x07: "ESME_RINVREGDLVFLG", 0x08: "ESME_RSYSERR", 0x0A: "ESME_RINVSRCADR",
    0x0B: "ESME_RINVDSTADR", 0x0C: "ESME_RINVMSGID", 0x0D: "ESME_RBINDFAIL",
    0x0E: "ESME_RINVPASWD", 0x0F: "ESME_RINVSYSID", 0x14: "ESME_RMSGQFUL",
    0x15: "ESME_RINVSERTYP", 0x33: "ESME_RINVNUMDESTS", 0x45: "ESME_RSUBMITFAIL",
    0x48: "ESME_RINVSRCTON", 0x49: "ESME_RINVSRCNPI", 0x50: "ESME_RINVDSTTON",
    0x51: "ESME_RINVDSTNPI", 0x53: "ESME_RINVSYSTYP", 0x58: "ESME_RTHROTTLED",
    0x61: "ESME_RINVSCHED", 0x62: "ESME_RINVEXPIRY", 0xFF: "ESME_RUNKNOWNERR",
}  # fmt: skip
#: What a generic_nack with status 0 (no reason) is taken for: a refusal.
ESME_RUNKNOWNERR = 0xFF
#: The carrier is busy: the part waits and goes again, the link slows down.
BUSY = frozenset({ESME_RTHROTTLED, ESME_RMSGQFUL})
#: Places in smpp34's queue of received PDUs. It must never fill: smpp34 1.5.0 then answers
#: the deliver_sm with an ESME_RMSGQFUL deliver_sm_resp whose command_length (16) is one
#: byte short of what it writes (17), which throws the SMSC's reading of the stream out of
#: step; the SMSC then reads nothing more on the session (no answers, every submit_sm
#: times out) or drops it (docs/links.md, caveat 4). smsgw takes from it at once
#: (`READERS`), so it holds many only in a burst; what it holds was acknowledged already.
INBOUND_CAPACITY = 16384
#: `next()` calls awaiting smpp34's queue at once, per bind. Each call hands over one PDU
#: and its answer crosses to the event loop as a callback: with one call, the link read one
#: deliver_sm a turn of the loop, while its sender puts a window's worth of submit_sm out
#: in one turn; a busy process (the API's requests on the same loop) then read receipts
#: slower than they came, and the queue filled (bench/smpp, one process at 1,000/s: after
#: about 10 s). The calls' answers come back in any order: PDUs of one burst are not
#: handed over in the carrier's order (receipts and the parts of a long MO need none).
READERS = 16
#: deliver_sm taken from smpp34 ahead of the link's reader at most (the binds' together),
#: reads awaiting included (at least the binds' readers: READERS, and one for a TX bind):
#: the rest waits in smpp34's queue.
READ_AHEAD = 64
#: How long an unbind (and the session's end) may take at most.
UNBIND_SECONDS = 5.0
#: smpp34's bind types of a bind mode's binds; the first submits.
BIND_TYPES = {TRANSCEIVER: ("TRX",), TX_RX: ("TX", "RX")}
_NAMES = {"TRX": "transceiver", "TX": "transmitter", "RX": "receiver"}
_STATUS = re.compile(r"\(0x([0-9A-Fa-f]+)\)")


def status_text(status: int) -> str:
    return f"{STATUS_NAMES.get(status, 'status')} (0x{status:08X})"


class BindFailed(Exception):
    """The session could not be opened; the message says why, for people."""


@dataclass(slots=True)  # not frozen: made per message, and a frozen __init__ costs 4x
class Answer:
    """What became of one submit_sm.

    `sent`: the carrier may have it (False only when it certainly has not); `busy`: refused
    for now (throttled, queue full); `status` the command status (None: no answer came);
    `message_id` the carrier's id of the part when it accepted it."""

    sent: bool
    status: int | None
    message_id: str | None = None
    reason: str = ""

    @property
    def accepted(self) -> bool:
        return self.status == 0 and self.message_id is not None

    @property
    def busy(self) -> bool:
        return self.status in BUSY


@dataclass(slots=True)  # not frozen: made per message, and a frozen __init__ costs 4x
class Inbound:
    """A deliver_sm: a receipt (`receipted_id`/`message_state` from its TLVs) or an MO."""

    source_addr: str
    source_ton: int
    destination_addr: str
    esm_class: int
    data_coding: int
    short_message: bytes
    receipted_id: str | None
    message_state: int | None
    #: The part of an SMS in parts it is, by its sar_* TLVs (a header in short_message says
    #: so too: links/encoding.py `split_header`).
    segment: Segment | None = None


@dataclass(slots=True)  # not frozen: made per message, and a frozen __init__ costs 4x
class Submit:
    """One part's submit_sm."""

    number: str
    body: bytes
    esm_class: int
    data_coding: int
    report: bool
    #: validity_period: an absolute time (`smpp_time`), or empty for the SMSC's default.
    validity: str = ""


class _Bind:
    """One smpp34 session of a link (bind type `TRX`, `TX` or `RX`)."""

    def __init__(self, bind_type: str) -> None:
        self.bind_type = bind_type
        self.client: smpp34.Client | None = None
        self.smsc: smpp34.Smsc | None = None
        #: Known to be over: Disconnected seen, or unbound by us.
        self.over = False
        #: Whether the carrier delivers on it (a transmitter's gets no deliver_sm).
        self.receives = bind_type != "TX"


class Session:
    """A link's bound session, or none yet (`open`): one transceiver bind, or in bind mode
    `tx_rx` a transmitter bind (submit_sm) and a receiver bind (deliver_sm) to the same SMSC,
    which count as one: bound when both are, over as soon as either is."""

    def __init__(self, link: LinkRecord, connect_timeout: float) -> None:
        self.link = link
        self.connect_timeout = connect_timeout
        self._binds = [_Bind(bind_type) for bind_type in BIND_TYPES[link.bind_mode]]
        #: What the binds' readers took (deliver_sm), and None from each reader that ended.
        self._inbound: asyncio.Queue[Inbound | None] = asyncio.Queue()
        self._room = asyncio.Semaphore(READ_AHEAD)
        self._readers: list[asyncio.Task[None]] = []
        self._readers_over = 0
        #: Set once the session is known to be over (a bind's end seen, or closed by us).
        self.ended = asyncio.Event()
        #: Which bind ended it first ("the session", "the receiver session"), for people.
        self.lost = "the session"
        #: A submit_sm on it went unanswered while it was not known to be over (the runner
        #: sends no more on it: a lost connection fails those in flight before the end is
        #: seen; a carrier that stopped answering is bound again).
        self.unanswered = False
        #: `close` let go of smpp34's session before its reads ended (no Disconnected came,
        #: and they took nothing more for UNBIND_SECONDS).
        self.let_go = False
        #: deliver_sm taken from smpp34 (how `close` sees its reads make progress).
        self._taken = 0

    @property
    def dead(self) -> bool:
        return self.ended.is_set()

    async def open(self) -> None:
        """Connect and bind (the transmitter first in mode tx_rx); BindFailed saying why
        not, after unbinding a bind already made."""
        for bind in self._binds:
            try:
                await self._bind(bind)
            except BindFailed:
                await self.close()
                raise
        self._readers = [
            asyncio.create_task(self._read(bind))
            for bind in self._binds
            for _ in range(READERS if bind.receives else 1)
        ]

    async def _bind(self, bind: _Bind) -> None:
        link = self.link
        bind.client = smpp34.Client(
            link.host, link.port, link.system_id, link.password, bind_type=bind.bind_type,
            system_type=link.system_type, window_size=link.window,
            inbound_capacity=INBOUND_CAPACITY,
            connect_timeout_ms=max(1, round(self.connect_timeout * 1000)),
        )  # fmt: skip
        try:
            bind.smsc = await bind.client.connect()
        except smpp34.SmppError as error:
            bind.over = True
            reason = _bind_reason(str(error), link)
            if len(self._binds) > 1:  # which of the two, in the same words
                reason = f"{_NAMES[bind.bind_type]} session: {reason}"
            raise BindFailed(reason) from None
        if not without_nagle(link.port):
            log.debug("link %s: Nagle's algorithm could not be switched off on its %s; its "
                      "submit_sm may wait for the carrier's ACKs", link.device_id,
                      _NAMES[bind.bind_type])  # fmt: skip

    async def submit(self, part: Submit) -> Answer:
        """Submit one part (on the transceiver or the transmitter): the carrier's answer, or
        why none came and whether the part may have reached the carrier (only a session
        known over before the call means it did not: in mode tx_rx, either bind's end)."""
        smsc = self._binds[0].smsc
        if self.dead or smsc is None:
            return Answer(False, None, reason="the session was down before the submit_sm")
        ton, number = (1, part.number[1:]) if part.number.startswith("+") else (0, part.number)
        link = self.link
        try:
            answer = smsc.submit_sm(
                number, part.body, source_addr=link.source_addr,
                source_addr_ton=link.source_ton, source_addr_npi=link.source_npi,
                dest_addr_ton=ton, dest_addr_npi=1, esm_class=part.esm_class,
                data_coding=part.data_coding, registered_delivery=int(part.report),
                validity_period=part.validity,
            )  # fmt: skip
            del smsc  # not held while the answer is awaited (`close` lets go of it)
            response = await answer
        except smpp34.SmppError as error:
            return _raised(str(error))
        return Answer(True, response.command_status, carrier_id(response.message_id or "") or None)

    async def next(self) -> Inbound | None:
        """The next deliver_sm of any of its binds, or None once every bind is over (so
        that what a bind still delivers after the other ended is taken too: smpp34 has
        acknowledged it already)."""
        while self._readers_over < len(self._readers):
            inbound = await self._inbound.get()
            if inbound is not None:
                self._room.release()
                return inbound
            self._readers_over += 1
        return None

    async def _read(self, bind: _Bind) -> None:
        """Take the bind's deliver_sm until its end (smpp34's Disconnected, queued behind
        the deliver_sm it acknowledged), which ends the session. A place of READ_AHEAD is
        taken before each read, so that a reader never holds a PDU it cannot hand over.

        One of the bind's READERS is told of the end; it lets go of smpp34's session, and
        once `close` has let go of the client too, the queue closes and the other reads end,
        each with what smpp34 already gave it or Disconnected."""
        try:
            while bind.smsc is not None:
                await self._room.acquire()
                try:
                    # (no reference kept across the wait: the session must be let go of)
                    event = None if bind.smsc is None else await bind.smsc.next()
                except BaseException:
                    self._room.release()
                    raise
                if not isinstance(event, smpp34.DeliverSmEvent):
                    self._room.release()
                    if event is not None:  # the end: nothing more comes on this bind
                        bind.over = True
                        bind.smsc = None
                    break
                try:
                    inbound = _inbound(event)
                except Exception:  # (smpp34 has acknowledged it: nothing else to do)
                    self._room.release()
                    log.exception("link %s: a deliver_sm could not be read; skipped",
                                  self.link.device_id)  # fmt: skip
                    continue
                self._taken += 1
                self._inbound.put_nowait(inbound)
        except smpp34.SmppError as error:  # the session ends; `close` unbinds and drains it
            log.warning("link %s: reading the %s failed: %s", self.link.device_id,
                        _NAMES[bind.bind_type], error)  # fmt: skip
        finally:
            if not self.dead:
                if len(self._binds) > 1:
                    self.lost = f"the {_NAMES[bind.bind_type]} session"
                self.ended.set()
            self._inbound.put_nowait(None)

    async def close(self) -> None:
        """Unbind every bind still up and end them; their readers then end, once they have
        handed over what smpp34 still queued: up to its Disconnected, or, when none comes
        (a carrier that does not answer the unbind: smpp34 then stops the session without
        one), until they have taken nothing more for UNBIND_SECONDS."""
        self.ended.set()
        up = [bind for bind in self._binds if bind.smsc is not None and not bind.over]
        for bind in up:
            bind.over = True
        await asyncio.gather(*(_unbind(bind.smsc) for bind in up if bind.smsc is not None))
        await asyncio.gather(*(_stop_client(bind) for bind in self._binds))
        for bind in self._binds:
            if not bind.receives:  # (no queue to drain)
                bind.smsc = None
        running = [reader for reader in self._readers if not reader.done()]
        taken = -1
        while running and self._taken != taken:  # while they take what smpp34 queued
            taken = self._taken
            _, pending = await asyncio.wait(running, timeout=UNBIND_SECONDS)
            running = list(pending)
        if running:  # no Disconnected came: let go of smpp34's sessions all the same
            self.let_go = True
            log.info("link %s: no end of the session came from smpp34 in %g s; letting go "
                     "of it", self.link.device_id, UNBIND_SECONDS)  # fmt: skip
            for bind in self._binds:
                bind.smsc = None
            _, late = await asyncio.wait(running, timeout=UNBIND_SECONDS)
            for reader in late:  # a safeguard
                reader.cancel()


def without_nagle(port: int) -> int:
    """Switch Nagle's algorithm off (TCP_NODELAY) on this process's TCP connections to
    `port` (the link's: smpp34 opens them and offers no option for it); how many were found.

    With it on, a submit_sm written while an earlier write still awaits the carrier's ACK
    is held back until that ACK comes; and the carrier's system may delay an ACK (up to
    40 ms on Linux) when it has nothing to send back at once, as after a deliver_sm_resp,
    which it does not answer. The window then waits with it (docs/links.md, the caveats of
    smpp34, 11). Linux only (/proc/self/fd); elsewhere none is found. Other connections to
    the same port number get it too, which changes nothing but when their small writes
    leave."""
    found = 0
    for sock in connections_to(port):
        with sock, contextlib.suppress(OSError):  # (closed meanwhile)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            found += 1
    return found


def connections_to(port: int) -> Iterator[socket.socket]:
    """This process's connected TCP sockets to `port`, each a copy of its descriptor (closing
    the copy leaves the connection open; the caller closes it). Linux only (/proc/self/fd):
    elsewhere none."""
    try:
        names = os.listdir("/proc/self/fd")
    except OSError:
        return
    for name in names:
        try:
            if not os.readlink(f"/proc/self/fd/{name}").startswith("socket:"):
                continue
            copy = os.dup(int(name))
        except (OSError, ValueError):  # (closed meanwhile; the listing's own descriptor)
            continue
        try:
            sock = socket.socket(fileno=copy)
        except OSError:  # (the number was reused meanwhile, for something else)
            os.close(copy)
            continue
        try:
            if (
                sock.family in (socket.AF_INET, socket.AF_INET6)
                and sock.type == socket.SOCK_STREAM
                and sock.getpeername()[1] == port
            ):
                yield sock
                continue
        except OSError:  # not connected (a listener), or closed meanwhile
            pass
        sock.close()


async def _unbind(smsc: smpp34.Smsc) -> None:
    # the carrier may go first: nothing to unbind then
    with contextlib.suppress(smpp34.SmppError, TimeoutError):
        await asyncio.wait_for(smsc.unbind(), UNBIND_SECONDS)


async def _stop_client(bind: _Bind) -> None:
    if bind.client is not None:
        client, bind.client = bind.client, None
        with contextlib.suppress(smpp34.SmppError, TimeoutError):
            await asyncio.wait_for(client.stop(), UNBIND_SECONDS)


def smpp_time(moment: datetime) -> str:
    """An absolute time as SMPP 3.4 writes it (7.1.1): YYMMDDhhmmsstnnp, here in UTC
    (tenths of a second, then 00 quarter-hours ahead of UTC: `000+`)."""
    at = moment.astimezone(UTC)
    return at.strftime("%y%m%d%H%M%S") + f"{at.microsecond // 100_000}00+"


def _inbound(event: smpp34.DeliverSmEvent) -> Inbound:
    tlvs = {tlv.tag: tlv for tlv in event.tlvs}
    receipted = tlvs.get(TLV_RECEIPTED_MESSAGE_ID)
    state = tlvs.get(TLV_MESSAGE_STATE)
    body = event.short_message
    if not body and (payload := tlvs.get(TLV_MESSAGE_PAYLOAD)) is not None:
        body = payload.value  # a long SMS in one deliver_sm (SMPP 3.4, 5.3.2.32)
    return Inbound(
        event.source_addr, event.source_addr_ton, event.destination_addr, event.esm_class,
        event.data_coding, body,
        receipted.as_string() if receipted is not None else None,
        state.as_int() if state is not None else None,
        _segment(tlvs),
    )  # fmt: skip


def _segment(tlvs: dict[int, smpp34.Tlv]) -> Segment | None:
    """The part an MO is by its sar_msg_ref_num, sar_total_segments and sar_segment_seqnum
    TLVs (SMPP 3.4, 5.3.2.22-24); None without all three (or with nonsense)."""
    found = [
        tlvs.get(tag)
        for tag in (TLV_SAR_MSG_REF_NUM, TLV_SAR_TOTAL_SEGMENTS,
                    TLV_SAR_SEGMENT_SEQNUM)
    ]  # fmt: skip
    values = [tlv.as_int() if tlv is not None else None for tlv in found]
    if any(value is None for value in values):
        return None
    reference, total, number = (int(value or 0) for value in values)
    segment = Segment(reference, total, number)
    return segment if segment.valid else None


def _bind_reason(error: str, link: LinkRecord) -> str:
    """A failed bind said for people: smpp34 reports a refused bind only as a timeout."""
    where = f"{link.host}:{link.port}"
    if "bind timed out" in error:
        return (
            f"connected to {where}, but the SMSC did not accept the bind (check system_id, "
            "password and system_type)"
        )
    if "connect" in error.lower():
        return f"cannot connect to {where}: {error}"
    return f"bind to {where} failed: {error}"


def _raised(error: str) -> Answer:
    """An exception from submit_sm: a generic_nack (the carrier answered: not sent) or a
    local failure, response timeout or lost session (ESME_RSYSERR: the carrier may have it)."""
    found = _STATUS.search(error)
    status = int(found.group(1), 16) if found else ESME_RSYSERR
    if status == ESME_RSYSERR:
        return Answer(True, None, reason=f"no answer from the SMSC ({error})")
    if status == 0:  # a refusal that gives no reason: not an acceptance
        status = ESME_RUNKNOWNERR
    return Answer(False, status, reason=f"generic_nack {status_text(status)}")
