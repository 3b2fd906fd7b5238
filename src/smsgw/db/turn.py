"""SQLite's write turn between processes, handed over without polling.

Several processes write to one SQLite file: the server's workers, and `smsgw links run`
beside the server. SQLite lets one of them write at a time and tells the others only that
the database is busy, so each used to try again every couple of milliseconds
(engine.LOOP_LOCK_RETRY_SECONDS). A try that comes a millisecond after the lock is free
wastes that millisecond for everyone, and each failed try costs a statement and a timer:
at 1,000 messages a second through a carrier link, the server and the links' process
tried 58 to 210 times a second each, and their batches spent 12-57% of the time waiting
(docs/performance.md, "SQLite's write turn handed over between processes").

`Turn` is an exclusive `flock` on a file beside the database (`<database>-turn`), taken
before `BEGIN IMMEDIATE` and given back right after `COMMIT`: a process that finds it
taken waits in the kernel, on a thread of its own, and is woken the moment the other gives
it back. Group commit (engine.Database) takes it before it takes its batch from the queue,
so that what queued while it waited joins that batch.

It only orders the writers that take it (group commit's batches, `write()` blocks, space
reclaimed). Any other writer (a migration, another program) still meets SQLite's own lock,
which the group commit waits for as before (and so does a writer that waited 10 s for the
turn in vain, or could not open its file);
and SQLite's lock, not this one, is what keeps the data whole. The file holds nothing, and
the kernel gives the lock back when its process ends, however it ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import queue
import threading

log = logging.getLogger(__name__)

#: Appended to the database's path: the file whose lock is the turn.
SUFFIX = "-turn"


def _open(path: str, database: os.stat_result) -> int:
    """Open (or create) the lock file, read-only (a lock needs no more). Made with the
    database file's permissions whatever the umask, and, when run as root, its owner, as
    SQLite makes the database's `-wal` and `-shm`: a command run as root, or as another
    user of the database's group, does not lock the service's user out of it."""
    mode = database.st_mode & 0o666
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    except FileExistsError:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fchmod(fd, mode)
        if os.geteuid() == 0:
            os.fchown(fd, database.st_uid, database.st_gid)
    except OSError:
        os.close(fd)
        raise
    return fd


class _Wait:
    """One wait for the lock, on a descriptor of its own (an open file of its own, so
    that a wait given up competes for the lock like any other holder and can never give
    back a lock taken meanwhile through another descriptor).

    The waiting thread owns the descriptor until it has the lock; then whoever holds the
    wait does (the Turn, to give the lock back by closing it, or `abandon`). A wait given
    up before that (a timeout, a cancelled flush, the Database disposed) closes it in the
    thread as soon as it has the lock, which gives the lock back at once."""

    def __init__(self, fd: int, loop: asyncio.AbstractEventLoop) -> None:
        self.fd = fd
        self.loop = loop
        #: True once the lock is had; False when the wait failed or was given up.
        self.had: asyncio.Future[bool] = loop.create_future()
        self._mutex = threading.Lock()
        self._had = False
        self._abandoned = False

    def run(self) -> None:  # on the turn's thread
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX)
        except Exception as error:  # (ENOLCK on some file systems)
            log.warning("waiting for the write turn failed: %s", error)
            with self._mutex:
                self._abandoned = True
            os.close(self.fd)
            with contextlib.suppress(RuntimeError):  # (a closed loop)
                self.loop.call_soon_threadsafe(_tell, self.had, False)
            return
        with self._mutex:
            if self._abandoned:
                os.close(self.fd)
                return
            self._had = True
        try:
            self.loop.call_soon_threadsafe(_tell, self.had, True)
        except RuntimeError:  # the loop is closed: nobody waits any more
            self.abandon()

    def abandon(self) -> None:
        """Give the wait up (on the loop, or on the thread when it failed): the lock is
        given back now if had, else as soon as the thread has it."""
        with self._mutex:
            if self._abandoned:
                return
            self._abandoned = True
            if self._had:
                os.close(self.fd)
        with contextlib.suppress(RuntimeError):  # (a closed loop)
            self.loop.call_soon_threadsafe(_tell, self.had, False)


def _tell(future: asyncio.Future[bool], had: bool) -> None:
    if not future.done():
        future.set_result(had)


class _Waiter:
    """The thread that waits for the lock: a daemon, so that a process never stays up at
    its exit for a lock another process holds."""

    def __init__(self) -> None:
        self._waits: queue.SimpleQueue[_Wait | None] = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._serve, name="smsgw-db-turn", daemon=True)
        self.thread.start()

    def wait(self, wait: _Wait) -> None:
        self._waits.put(wait)

    def stop(self) -> None:
        self._waits.put(None)

    def _serve(self) -> None:
        while (wait := self._waits.get()) is not None:
            wait.run()


class Turn:
    """The exclusive lock on `<path>-turn`, one per Database: `take()` on the event loop,
    `give()` from the loop or the write thread (after the COMMIT), never at once."""

    def __init__(self, path: str) -> None:
        self.path = path + SUFFIX
        #: The descriptor through which the lock is held, while it is.
        self._held: int | None = None
        #: Opened once, for the try without waiting (on the loop only).
        self._fd: int | None = None
        self._pid = 0
        self._waiter: _Waiter | None = None
        self._waiting: _Wait | None = None
        self._unusable = self._closed = False

    @property
    def held(self) -> bool:
        return self._held is not None

    def _file(self) -> int | None:
        """The lock file's descriptor, opened in this process (a child that inherited one
        would share its lock); None when it cannot be opened (logged once): the turn is
        then not taken, and SQLite's lock is waited for by trying again, as before."""
        if self._pid != os.getpid():  # (a child does not give back its parent's lock)
            self._fd = self._held = self._waiter = self._waiting = None
            self._pid, self._unusable = os.getpid(), False
        if self._fd is None and not self._unusable and not self._closed:
            try:
                database = os.stat(self.path.removesuffix(SUFFIX))
            except OSError:
                return None  # no database file yet (its first connection makes it)
            try:
                self._fd = _open(self.path, database)
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
            return await self._wait(patience)
        self._held = fd
        return True

    async def _wait(self, patience: float) -> bool:
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as error:
            log.warning("the write turn %s cannot be waited for (%s); writing without it",
                        self.path, error)  # fmt: skip
            return False
        if self._waiter is None:
            self._waiter = _Waiter()
        wait = self._waiting = _Wait(fd, asyncio.get_running_loop())
        self._waiter.wait(wait)
        try:
            had = await asyncio.wait_for(asyncio.shield(wait.had), patience)
        except TimeoutError:
            wait.abandon()
            log.warning("waited %g s for the write turn %s in vain; writing without it",
                        patience, self.path)  # fmt: skip
            return False
        except BaseException:
            wait.abandon()
            raise
        finally:
            self._waiting = None
        if had and self._closed:  # closed while it waited
            wait.abandon()
            return False
        if had:
            self._held = wait.fd
        return had

    def give(self) -> None:
        """Give the turn back, if held (in the process that took it)."""
        fd, self._held = self._held, None
        if fd is None or self._pid != os.getpid():
            return
        if fd == self._fd:
            fcntl.flock(fd, fcntl.LOCK_UN)
        else:  # a wait's own descriptor: closing it gives the lock back
            os.close(fd)

    def close(self) -> None:
        self._closed = True
        self.give()
        if self._pid != os.getpid():
            return
        if self._waiting is not None:
            self._waiting.abandon()
        if self._waiter is not None:
            self._waiter.stop()  # after the waits queued: their threads close their files
        if self._fd is not None:
            os.close(self._fd)
        self._fd = self._waiter = None
