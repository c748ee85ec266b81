"""A throwaway PostgreSQL server on loopback, for tests of studies shared through PostgreSQL.

    from tests.pg import PgServer, pg_server  # the session fixture (import it into the module)

`pg_server` runs `initdb` into a fresh directory under /tmp, starts `postgres` listening on
127.0.0.1 only (a free port; its unix socket in that directory), creates a role with a password
(scram-sha-256, so every URL carries it) and a database it owns, and stops and deletes
everything at the end of the session. PostgreSQL refuses to run as root: as root the server runs
as the `postgres` user the Debian package creates (else `nobody`) through `runuser`/`setpriv`.
Without the server's binaries, or a way to run them, the tests skip saying what is missing
(`.ci/run` installs Debian's `postgresql` when it is missing).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.servers import free_port

ROLE = "tuner"
DATABASE = "studies"


@dataclass(frozen=True)
class PgServer:
    """A running server: its port, the test role's password and how to reach it."""

    port: int
    password: str
    admin_password: str
    directory: Path

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the test database as the test role, as the README writes it
        (SQLAlchemy 2.1 connects `postgresql://` through psycopg 3)."""
        return f"postgresql://{ROLE}:{self.password}@127.0.0.1:{self.port}/{DATABASE}"

    def admin(self, sql: str, database: str = "postgres") -> list[tuple]:
        """Run one statement as the superuser; its rows (empty for statements without)."""
        import psycopg

        with psycopg.connect(host="127.0.0.1", port=self.port, user="admin",
                             password=self.admin_password, dbname=database,
                             autocommit=True) as con, con.cursor() as cur:
            cur.execute(sql)
            return cur.fetchall() if cur.description else []


def _bin_dir() -> Path | None:
    """The directory holding initdb, pg_ctl and postgres (newest Debian version first)."""
    found = shutil.which("initdb")
    if found and (Path(found).resolve().parent / "pg_ctl").exists():
        return Path(found).resolve().parent
    for d in sorted(glob.glob("/usr/lib/postgresql/*/bin"),
                    key=lambda p: int(Path(p).parent.name) if Path(p).parent.name.isdigit()
                    else 0, reverse=True):
        if (Path(d) / "initdb").exists() and (Path(d) / "pg_ctl").exists():
            return Path(d)
    return None


def _as_user() -> tuple[list[str], str | None] | str:
    """The command prefix running a program as an unprivileged user, and that user (None: we
    are not root); or the reason there is none."""
    if os.geteuid() != 0:
        return [], None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
        except KeyError:
            continue
        if shutil.which("runuser"):
            return ["runuser", "-u", name, "--"], name
        if shutil.which("setpriv"):
            return ["setpriv", f"--reuid={name}", f"--regid={pwd.getpwnam(name).pw_gid}",
                    "--clear-groups"], name
        return "running as root and neither runuser nor setpriv is installed"
    return "running as root and there is no 'postgres' or 'nobody' user to run the server as"


def _run(cmd: list[str], what: str) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise RuntimeError(f"{what} failed ({done.returncode}): {done.stderr[-2000:]}")


@contextlib.contextmanager
def start_server() -> Iterator[PgServer]:
    """Start a throwaway server (see the module docstring); skip when it cannot run here."""
    bindir = _bin_dir()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not found on PATH or under "
                    "/usr/lib/postgresql/*/bin; install Debian's 'postgresql' package")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.skip("the PostgreSQL driver psycopg is not installed: pip install -e '.[postgres]'")
    how = _as_user()
    if isinstance(how, str):
        pytest.skip(f"cannot run PostgreSQL here: {how}")
    prefix, user = how
    # not under pytest's tmp_path: that lies in a root-only (0700) directory
    directory = Path(tempfile.mkdtemp(prefix="workbench-pg-"))
    admin_password = secrets.token_hex(12)
    server = PgServer(port=free_port(), password=secrets.token_hex(12),
                      admin_password=admin_password, directory=directory)
    data = directory / "data"
    pwfile = directory / "admin-password"
    pwfile.write_text(admin_password + "\n")
    if user is not None:
        shutil.chown(directory, user=user)
        shutil.chown(pwfile, user=user)
    directory.chmod(0o700)
    started = False
    try:
        _run([*prefix, str(bindir / "initdb"), "-D", str(data), "-U", "admin",
              f"--pwfile={pwfile}", "--auth=scram-sha-256", "-E", "UTF8", "--no-sync"],
             "initdb")
        # loopback only; fsync off: a throwaway cluster need not survive a power cut
        options = (f"-c listen_addresses=127.0.0.1 -p {server.port} -k {directory} "
                   "-c fsync=off -c max_connections=100")
        _run([*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-l",
              str(directory / "server.log"), "-w", "-t", "120", "-o", options, "start"],
             "pg_ctl start")
        started = True
        server.admin(f"CREATE ROLE {ROLE} LOGIN PASSWORD '{server.password}'")
        server.admin(f"CREATE DATABASE {DATABASE} OWNER {ROLE}")
        yield server
    finally:
        if started:
            subprocess.run([*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate",
                            "-w", "stop"], capture_output=True, timeout=120)
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """One throwaway PostgreSQL server for the test session (see the module docstring)."""
    with start_server() as server:
        yield server
