"""Developer sessions: `nox -s tests`, `nox -s lint`, `nox -s typecheck`."""

from __future__ import annotations

import nox

nox.options.sessions = ["tests", "lint", "typecheck"]
nox.options.reuse_existing_virtualenvs = True


@nox.session
def tests(session: nox.Session) -> None:
    """The README's test command, in a fresh environment."""
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


@nox.session
def bench(session: nox.Session) -> None:
    """The benchmarks of issue 6 (not part of the default sessions: they take ~10 minutes).

    ``nox -s bench`` writes ``benchmarks/results/latest.{md,json}``; ``-- --quick`` is a
    one-minute smoke run (``quick.{md,json}``); ``-- --profile`` profiles listwatch's LIST and
    WATCH paths into ``benchmarks/results/profiles/`` instead. The harness needs only the
    project's own dependencies; the profilers are installed for ``--profile`` alone. Another
    interpreter: ``nox -s bench --force-python 3.13`` (a version on PATH, or the path of one).
    """
    session.install("-e", ".")
    if "--profile" in session.posargs:
        session.install("py-spy>=0.3", "pyinstrument>=4.6")
    session.run("python", "-m", "benchmarks", *session.posargs)
