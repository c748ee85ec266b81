"""The decision log: one JSON line per routed request, and the PII redaction applied to it.

Every line passes through `redact`, so no key can reach the file; what request text a line
keeps is the policy's data handling (`workbench.data_handling`). With a retention, old lines
are pruned crash-safely (a new file atomically replaces the old, under a lock file that
writers in other processes honour).
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from workbench import governance as gov
from workbench.errors import WorkbenchError
from workbench.providers.base import redact

try:
    import fcntl
except ImportError:  # Windows: the thread lock still serialises one process's writers
    fcntl = None  # type: ignore[assignment]

_CORE = re.compile(r"[A-Za-z0-9+(].*[A-Za-z0-9)]", re.S)
_PII_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("EMAIL", re.compile(gov.EMAIL)),
    ("IBAN", re.compile(gov.IBAN_CANDIDATE)),
    ("NATIONAL_ID", re.compile(gov.NATIONAL_ID)),
    ("PAYMENT_CARD", re.compile(gov.CARD_CANDIDATE)),
    ("PHONE", re.compile(gov.PHONE)),
)
_MAX_PASSES = 6


def redact_pii(text: str, extra: Sequence[tuple[str, str]] = ()) -> str:
    """`text` with every match of the governance detectors (email, IBAN, national id, card and
    phone candidates, checksum or not) and of `extra` (label, regex) pairs replaced by
    [LABEL]; boundary characters the patterns consume are kept."""

    def sub(label: str) -> Callable[[re.Match[str]], str]:
        def repl(m: re.Match[str]) -> str:
            s = m.group(0)
            core = _CORE.search(s)
            if core is None:
                return f"[{label}]"
            return s[: core.start()] + f"[{label}]" + s[core.end():]

        return repl

    out = text
    # repeated until nothing changes: a match consumes its boundary character, so a second
    # value right after it (e.g. two ids separated by one space) is only found on a next pass
    for _ in range(_MAX_PASSES):
        before = out
        for label, pattern in _PII_PATTERNS:
            out = pattern.sub(sub(label), out)
        for label, pattern in extra:
            out = re.sub(pattern, f"[{label.upper()}]", out)
        if out == before:
            break
    return out


class DecisionLog:
    """Append-only JSONL decision log, one line per request, thread- and process-safe; every
    line passes through `redact` so no key can reach it. With `retention_days`, lines older
    than that are pruned when the log opens and then at most every `prune_every_s` seconds
    while writing (crash-safe, see `prune_log`)."""

    def __init__(self, path: str | os.PathLike[str], retention_days: int | None = None,
                 prune_every_s: float = 3600.0) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.retention_days = retention_days
        self.prune_every_s = prune_every_s
        self.pruned: PruneResult | None = None  # the last prune's result
        self._lock = threading.Lock()
        self._flock = _FileLock(self.path)
        self._fh = self.path.open("a", encoding="utf-8")
        self._last_prune = -math.inf
        if retention_days is not None:
            with self._lock, self._flock:
                self._prune()

    def _prune(self) -> None:
        """Prune under both locks, then append to the new file."""
        assert self.retention_days is not None
        self.pruned = _prune_locked(self.path, self.retention_days, datetime.now(UTC))
        self._last_prune = time.monotonic()
        self._reopen_if_replaced()

    def _reopen_if_replaced(self) -> None:
        """Follow the file when a prune (here or in another process) replaced it."""
        try:
            current = os.stat(self.path)
        except FileNotFoundError:
            current = None
        mine = os.fstat(self._fh.fileno())
        if current is None or (current.st_ino, current.st_dev) != (mine.st_ino, mine.st_dev):
            self._fh.close()
            self._fh = self.path.open("a", encoding="utf-8")

    def write(self, record: Mapping[str, Any]) -> None:
        """Append one record (pruning first when retention is set and a prune is due)."""
        line = redact(json.dumps(record, default=str, ensure_ascii=False))
        with self._lock, self._flock:
            if (self.retention_days is not None
                    and time.monotonic() - self._last_prune >= self.prune_every_s):
                self._prune()
            else:
                self._reopen_if_replaced()
            self._fh.write(line + "\n")
            self._fh.flush()

    def close(self) -> None:
        """Close the file."""
        with self._lock:
            self._fh.close()
            self._flock.close()


class _FileLock:
    """An exclusive lock on `<log>.lock` (flock) held while writing or pruning, so a prune in
    one process never drops a line another process is appending. Re-entrant per object use
    is not needed: callers hold the thread lock first."""

    def __init__(self, log_path: Path) -> None:
        self._fd = os.open(str(log_path) + ".lock", os.O_RDWR | os.O_CREAT, 0o600)

    def __enter__(self) -> _FileLock:
        if fcntl is not None:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc: object) -> None:
        if fcntl is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        """Release the descriptor."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


@dataclass(frozen=True)
class PruneResult:
    """What a prune did: lines kept and removed, and the cutoff (lines older were removed)."""

    path: Path
    kept: int
    removed: int
    cutoff: datetime

    def summary(self) -> str:
        """One line for people."""
        return (f"{self.path}: removed {self.removed} line(s) older than "
                f"{self.cutoff.isoformat(timespec='seconds')}, kept {self.kept}")


def _line_time(line: str) -> datetime | None:
    """A log line's timestamp (`ts`, ISO 8601; naive taken as UTC), None when unreadable."""
    try:
        ts = json.loads(line).get("ts")
        when = datetime.fromisoformat(ts)
    except (ValueError, TypeError, AttributeError):
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _prune_locked(path: Path, retention_days: int, now: datetime) -> PruneResult:
    """Write the lines within retention to a new file beside the log, fsync it, and atomically
    replace the log with it; a crash leaves the old file whole. Lines without a readable time
    are kept (their age is unknown)."""
    cutoff = now - timedelta(days=retention_days)
    if not path.exists():
        return PruneResult(path, 0, 0, cutoff)
    kept = removed = 0
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".prune", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out, path.open(encoding="utf-8") as src:
            for line in src:
                if not line.strip():
                    continue
                when = _line_time(line)
                if when is not None and when < cutoff:
                    removed += 1
                    continue
                out.write(line if line.endswith("\n") else line + "\n")
                kept += 1
            out.flush()
            os.fsync(out.fileno())
        if removed:
            os.chmod(tmp, os.stat(path).st_mode & 0o7777)
            os.replace(tmp, path)
            _fsync_dir(path.parent)
        else:
            Path(tmp).unlink()
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return PruneResult(path, kept, removed, cutoff)


def _fsync_dir(directory: Path) -> None:
    """Make a rename durable (no-op where directories cannot be opened)."""
    try:
        dfd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)


def prune_log(path: str | os.PathLike[str], retention_days: int,
              now: datetime | None = None) -> PruneResult:
    """Remove the lines of a decision log older than `retention_days` (crash-safe: a new
    file atomically replaces the old one; a router appending meanwhile waits for the lock and
    then follows the new file). A WorkbenchError when the log does not exist."""
    p = Path(path)
    if retention_days < 0:
        raise WorkbenchError(f"retention of {retention_days} days is below 0; give 0 or more")
    if not p.is_file():
        raise WorkbenchError(f"decision log {p} does not exist")
    lock = _FileLock(p)
    try:
        with lock:
            return _prune_locked(p, retention_days, now or datetime.now(UTC))
    finally:
        lock.close()


def read_log(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Records of a decision log (bad lines are skipped)."""
    out = []
    with Path(path).open(encoding="utf-8") as fh:
        for line in fh:
            line = line.strip()
            if line:
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
    return out


__all__ = ["DecisionLog", "PruneResult", "prune_log", "read_log", "redact_pii"]
