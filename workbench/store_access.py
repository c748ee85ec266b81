"""Short-lived DuckDB connections, so the app and CLI commands can share one data directory.

DuckDB lets one process at a time open a database file for writing, and a read-only opener in
one process cannot coexist with a writer in another. So a process opens the store file only
while it works on it: a `Lease` opens one connection on first use, shares it between threads
and nested uses, and closes it `LINGER_S` after the last use ends (a page rerun or a command's
burst of reads pays the ~20 ms open once; an idle app holds nothing). Opening retries while
another process holds the file, up to WORKBENCH_LOCK_WAIT_S seconds, then raises
`StoreBusyError` naming the data directory and the other process; nothing was changed.
"""

from __future__ import annotations

import atexit
import contextlib
import re
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path

import duckdb

from workbench import settings
from workbench.errors import WorkbenchError

# How long a connection stays open after its last use: long enough to serve a page rerun's
# burst of reads with one open, short enough that a waiting command hardly notices.
LINGER_S = 0.25
# A waiting app shows its notice only for waits a person would notice.
NOTICE_AFTER_S = 1.0

WaitNotice = Callable[[str], None]


class StoreBusyError(WorkbenchError):
    """Another process kept the store file past the wait limit; nothing was changed."""


def lock_wait_s() -> float:
    """Seconds to wait for another process to release the store (WORKBENCH_LOCK_WAIT_S)."""
    raw = settings.get("WORKBENCH_LOCK_WAIT_S")
    try:
        value = float(raw)
    except ValueError:
        raise WorkbenchError(f"WORKBENCH_LOCK_WAIT_S must be a number of seconds, not {raw!r}"
                             ) from None
    return max(value, 0.0)


def _is_lock_conflict(exc: duckdb.Error) -> bool:
    text = str(exc)
    return "Could not set lock" in text or "Conflicting lock" in text


def describe_process(pid: int) -> str:
    """A short, secret-free name for process `pid`: the workbench app, `workbench <command>`,
    or its program name (never further arguments, which may hold keys)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return f"PID {pid}"
    names = [Path(a).name for a in argv if a]
    if any(n.startswith("streamlit") for n in names[:3]):
        return f"the workbench app, PID {pid}"
    for i, name in enumerate(names[:4]):
        if name == "workbench" or (name == "-m" and i + 1 < len(names)
                                   and names[i + 1].startswith("workbench")):
            start = i + 1 if name == "workbench" else i + 2
            words = [a for a in names[start:start + 1] if re.fullmatch(r"[a-z][a-z_-]{0,20}", a)]
            return f"`{' '.join(['workbench', *words])}`, PID {pid}"
    return f"{names[0] if names else 'a process'}, PID {pid}"


def _holder(exc: duckdb.Error) -> str:
    match = re.search(r"PID (\d+)", str(exc))
    return describe_process(int(match.group(1))) if match else "its process id is unknown"


def _busy_text(path: Path, holder: str) -> str:
    return (f"data directory {path.parent} is in use: another workbench process is writing "
            f"to it or reading it ({holder})")


def connect(path: Path, wait_s: float | None = None,
            on_wait: WaitNotice | None = None) -> duckdb.DuckDBPyConnection:
    """Open the store file read-write, retrying while another process holds it; after
    `wait_s` (default WORKBENCH_LOCK_WAIT_S) a StoreBusyError. `on_wait` hears once, after
    NOTICE_AFTER_S, what is being waited for."""
    limit = lock_wait_s() if wait_s is None else wait_s
    started = time.monotonic()
    delay = 0.01
    noticed = False
    while True:
        try:
            return duckdb.connect(str(path))
        except duckdb.IOException as exc:
            if not _is_lock_conflict(exc):
                raise WorkbenchError(f"cannot open the store {path}: {exc}") from None
            waited = time.monotonic() - started
            if waited >= limit:
                raise StoreBusyError(
                    f"the {_busy_text(path, _holder(exc))}, and it did not finish within "
                    f"{limit:g} s. Nothing was changed; try again when it is done, or wait "
                    "longer with WORKBENCH_LOCK_WAIT_S (seconds)."
                ) from None
            if on_wait is not None and not noticed and waited >= NOTICE_AFTER_S:
                noticed = True
                on_wait(f"The {_busy_text(path, _holder(exc))}. Waiting up to {limit:g} s.")
            time.sleep(min(delay, max(limit - waited, 0.001)))
            delay = min(delay * 1.5, 0.2)


class Lease:
    """The process's connection to one store file: opened by the first `use()`, shared by
    threads (a cursor each) and nested uses, closed LINGER_S after the last use ends."""

    def __init__(self, path: Path, linger_s: float = LINGER_S) -> None:
        self.path = path
        self.linger_s = linger_s
        self._lock = threading.RLock()
        self._con: duckdb.DuckDBPyConnection | None = None
        self._epoch = 0  # bumped on every open: a thread's cursor belongs to one connection
        self._users = 0
        self._wrote = False  # a write happened since the open: close without lingering
        self._timer: threading.Timer | None = None
        self._released_at = 0.0
        self._local = threading.local()
        _LEASES.add(self)

    def set_wait_notice(self, notice: WaitNotice | None) -> None:
        """Who hears (in this thread) that an open is waiting for another process."""
        self._local.notice = notice

    def depth(self) -> int:
        """How many uses this thread is inside (0: none)."""
        return getattr(self._local, "depth", 0)

    @contextlib.contextmanager
    def use(self, wrote: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        """This thread's cursor on the open connection (opened, waiting if need be). After a
        write (`wrote`) the connection closes as soon as nobody uses it, without lingering:
        DuckDB checkpoints, and other processes get the file and see the write at once."""
        with self._lock:
            if self._con is None:
                self._con = connect(self.path, on_wait=getattr(self._local, "notice", None))
                self._epoch += 1
            self._users += 1
            self._wrote = self._wrote or wrote
            cur = self._thread_cursor()
        self._local.depth = self.depth() + 1
        try:
            yield cur
        finally:
            self._local.depth -= 1
            with self._lock:
                self._users -= 1
                if self._users == 0 and self._wrote:
                    self._close_now()
                elif self._users == 0:
                    self._schedule_close()

    def _thread_cursor(self) -> duckdb.DuckDBPyConnection:
        held = getattr(self._local, "cursor", None)
        if held is None or held[0] != self._epoch:
            assert self._con is not None
            held = (self._epoch, self._con.cursor())
            self._local.cursor = held
        return held[1]

    def _schedule_close(self) -> None:
        """Close LINGER_S after this release; one timer serves many releases (it re-arms for
        the time left rather than a thread per release)."""
        if self.linger_s <= 0:
            self._close_now()
            return
        self._released_at = time.monotonic()
        if self._timer is None:
            self._start_timer(self.linger_s)

    def _start_timer(self, delay: float) -> None:
        timer = threading.Timer(delay, self._close_idle)
        timer.daemon = True
        self._timer = timer
        timer.start()

    def _close_idle(self) -> None:
        with self._lock:
            if self._timer is not threading.current_thread():
                return  # cancelled by close()
            self._timer = None
            if self._con is None or self._users > 0:
                return  # in use again: its last release arms a new timer
            left = self._released_at + self.linger_s - time.monotonic()
            if left > 0.005:
                self._start_timer(left)
            else:
                self._close_now()

    def _close_now(self) -> None:
        con, self._con = self._con, None
        self._wrote = False
        if con is not None:
            with contextlib.suppress(duckdb.Error):
                con.close()  # the last connection of the process: DuckDB checkpoints the WAL

    def close(self) -> None:
        """Close the connection now (tests, process exit); the next use opens it again."""
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self._close_now()


_LEASES: weakref.WeakSet[Lease] = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    """At exit, close what a lingering lease still holds (a clean checkpoint, no lock left)."""
    for lease in list(_LEASES):
        lease.close()
