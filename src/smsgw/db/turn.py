"""SQLite's write turn between processes, handed over without polling.

Several processes write to one SQLite file: the server's workers, and `smsgw links run`
beside the server. SQLite lets one of them write at a time and tells the others only that
the database is busy, so each used to try again every couple of milliseconds
(engine.LOOP_LOCK_RETRY_SECONDS). A try that comes a millisecond after the lock is free
wastes that millisecond for everyone, and each failed try costs a statement and a timer:
at 1,000 messages a second through a carrier link, the server and the links' process
tried 100 to 200 times a second each and waited a quarter to a half of the time
(docs/performance.md).

`Turn` is an exclusive `flock` on a file beside the database (`<database>-turn`), taken
before `BEGIN IMMEDIATE` and given back right after `COMMIT`: a process that finds it
taken waits in the kernel, on a thread of its own, and is woken the moment the other gives
it back. Group commit (engine.Database) takes it before it takes its batch from the queue,
so that what queued while it waited joins that batch.

It only orders the writers that take it. Any other writer (a `write()` block, a migration,
another program) still meets SQLite's own lock, which the group commit waits for as before;
and SQLite's lock, not this one, is what keeps the data whole. The file holds nothing, and
the kernel gives the lock back when its process ends, however it ends.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import queue
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

#: Appended to the database's path: the file whose lock is the turn.
SUFFIX = "-turn"


def _open(path: str) -> int:
    """Open (or create) the lock file as SQLite makes the database's `-wal` and `-shm`:
    with the database file's permissions, and, when run as root, its owner, so that a
    command run as root does not lock the service's user out of it."""
    database = os.stat(path.removesuffix(SUFFIX))
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, database.st_mode & 0o666)
    if os.geteuid() == 0:
        try:
            os.fchown(fd, database.st_uid, database.st_gid)
        except OSError:
            os.close(fd)
            raise
    return fd


class _Wait:
    """One wait for the lock on the turn's thread, which the loop may give up on (a
    timeout, a cancelled flush): the lock is then given back as soon as it is had."""

    def __init__(self, fd: int, loop: asyncio.AbstractEventLoop) -> None:
        self.fd = fd
        self.loop = loop
        self.had: asyncio.Future[None] = loop.create_future()
        self._mutex = threading.Lock()
        self._had = False
        self._abandoned = False

    def run(self) -> None:  # on the turn's thread
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX)
        except OSError as error:
            self._tell(_failed, self.had, error)
            return
        with self._mutex:
            if self._abandoned:
                fcntl.flock(self.fd, fcntl.LOCK_UN)
                return
            self._had = True
        self._tell(_done, self.had)

    def _tell(self, what: Callable[..., None], *args: Any) -> None:
        try:
            self.loop.call_soon_threadsafe(what, *args)
        except RuntimeError:  # the loop is closed: nobody waits any more
            self.abandon()

    def abandon(self) -> None:  # on the loop
        with self._mutex:
            self._abandoned = True
            if self._had:
                fcntl.flock(self.fd, fcntl.LOCK_UN)


def _done(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _failed(future: asyncio.Future[None], error: OSError) -> None:
    if not future.done():
        future.set_exception(error)


class _Waiter:
    """The thread that waits for the lock: a daemon, so that a process never stays up at
    its exit for a lock another process holds."""

    def __init__(self) -> None:
        self._waits: queue.SimpleQueue[_Wait | int] = queue.SimpleQueue()
        threading.Thread(target=self._serve, name="smsgw-db-turn", daemon=True).start()

    def wait(self, wait: _Wait) -> None:
        self._waits.put(wait)

    def close(self, fd: int) -> None:
        """Close `fd` once the waits queued before are over (one given up may still get
        the lock and give it back: its descriptor must stay open until then)."""
        self._waits.put(fd)

    def _serve(self) -> None:
        while not isinstance(wait := self._waits.get(), int):
            wait.run()
        os.close(wait)


class Turn:
    """The exclusive lock on `<path>-turn`, one per Database: `take()` on the event loop,
    `give()` from the loop or the write thread (after the COMMIT), never at once."""

    def __init__(self, path: str) -> None:
        self.path = path + SUFFIX
        self.held = False
        self._fd: int | None = None
        self._pid = 0
        self._waiter_pid = 0
        self._waiter: _Waiter | None = None
        self._unusable = False

    def _file(self) -> int | None:
        """The lock file's descriptor, opened in this process (a child that inherited one
        would share its lock); None when it cannot be opened (logged once): the turn is
        then not taken, and SQLite's lock is waited for by trying again, as before."""
        if self._pid != os.getpid():
            self._fd, self._pid, self._unusable = None, os.getpid(), False
        if self._fd is None and not self._unusable:
            try:
                self._fd = _open(self.path)
            except FileNotFoundError:
                pass  # no database file yet (its first connection makes it): next time
            except OSError as error:
                self._unusable = True
                log.warning(
                    "the write turn %s cannot be used (%s); this process's writers wait "
                    "for the database by trying again",
                    self.path,
                    error,
                )
        return self._fd

    async def take(self, patience: float) -> bool:
        """Hold the turn (True); False, without it, after `patience` seconds of waiting
        or when the file cannot be used: the caller then meets SQLite's lock as before."""
        if self.held:
            raise RuntimeError("the write turn is held already")
        fd = self._file()
        if fd is None:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not await self._wait(fd, patience):
                return False
        self.held = True
        return True

    async def _wait(self, fd: int, patience: float) -> bool:
        if self._waiter is None or self._pid != self._waiter_pid:
            self._waiter, self._waiter_pid = _Waiter(), self._pid
        wait = _Wait(fd, asyncio.get_running_loop())
        self._waiter.wait(wait)
        try:
            await asyncio.wait_for(wait.had, patience)
        except TimeoutError:
            wait.abandon()
            log.warning("waited %g s for the write turn %s in vain; writing without it",
                        patience, self.path)  # fmt: skip
            return False
        except OSError as error:  # the kernel would not lock it (ENOLCK on some file systems)
            log.warning("the write turn %s cannot be waited for (%s); writing without it",
                        self.path, error)  # fmt: skip
            return False
        except BaseException:
            wait.abandon()
            raise
        return True

    def give(self) -> None:
        """Give the turn back, if held."""
        if self.held:
            self.held = False
            assert self._fd is not None
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        self.give()
        if self._fd is not None and self._pid == os.getpid():
            if self._waiter is not None and self._waiter_pid == self._pid:
                self._waiter.close(self._fd)  # its thread ends there
            else:
                os.close(self._fd)
        self._fd = self._waiter = None
