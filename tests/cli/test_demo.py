"""``listwatch demo`` end to end: in-process (with and without faults) and as a process.

The demo is time-boxed by design (``--seconds``); the tests keep it short and assert on its
outcome only (the exit code, the verdict, the SQLite file against the cluster), never on how
long anything took.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest

from listwatch import Batch, EventType
from listwatch.cli import _demo as demo
from listwatch.cli import main_async
from listwatch.cli._runtime import CliError
from listwatch.sinks.sqlite import SQLiteSink, read_mirror
from tests.cli.helpers import PYTHON, subprocess_env

SMALL = ["--pods", "200", "--namespaces", "5", "--seconds", "3", "--merge-interval", "0.2"]


@pytest.fixture
def reports(monkeypatch: pytest.MonkeyPatch) -> list[demo.DemoReport]:
    """Every report the demo makes, so a test can hold the file against the final cluster."""
    made: list[demo.DemoReport] = []
    run_demo = demo.run_demo

    async def recording(*args: object) -> demo.DemoReport:
        report = await run_demo(*args)  # type: ignore[arg-type]
        made.append(report)
        return report

    monkeypatch.setattr(demo, "run_demo", recording)
    return made


@pytest.mark.parametrize("faults", [False, True], ids=["quiet", "faults"])
async def test_the_demo_ends_with_a_mirror_equal_to_the_cluster(
    faults: bool,
    reports: list[demo.DemoReport],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    db = tmp_path / "mirror.db"
    argv = ["demo", *SMALL, "--db", str(db), "--seed", "7"] + (["--faults"] if faults else [])
    code = await main_async(argv, stop=asyncio.Event())
    out = capsys.readouterr().out
    assert code == 0, out
    assert "PASS: the SQLite mirror equals the cluster" in out
    assert "\x1b[" not in out  # not a terminal: plain lines
    assert "churning | gen" in out  # the periodic progress line

    (report,) = reports
    mirror = read_mirror(db, resource="pods")
    assert mirror.objects == report.cluster
    assert mirror.state is not None
    assert mirror.state.resource_version == report.comparison.cluster_rv
    assert len(report.cluster) > 150
    if faults:
        assert report.faults_injected  # episodes come every 0.4 s of a 3 s run
        assert "faults       episodes: " in out


async def test_ctrl_c_ends_the_churn_early_and_still_gives_the_verdict(
    reports: list[demo.DemoReport], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stop = asyncio.Event()
    stop.set()  # as if Ctrl-C came at once: no churn, then convergence and the verdict
    code = await main_async(["demo", *SMALL, "--seconds", "60", "--faults"], stop=stop)
    out = capsys.readouterr().out
    assert code == 0, out
    assert "interrupted: churn and faults stopped" in out
    assert "PASS:" in out
    assert reports[0].interrupted
    assert not reports[0].db.exists()  # the temporary mirror is removed


async def test_a_mirror_that_differs_fails_the_demo(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The verdict is real: a receiver that loses deletes makes the demo exit 1."""
    on_batch = SQLiteSink.on_batch

    async def losing_deletes(self: SQLiteSink, batch: Batch) -> None:
        kept = {k: e for k, e in batch.events.items() if e.type is not EventType.DELETED}
        await on_batch(self, Batch(kept, batch.resource_version, batch.generation))

    monkeypatch.setattr(SQLiteSink, "on_batch", losing_deletes)
    code = await main_async(["demo", *SMALL, "--seconds", "1"], stop=asyncio.Event())
    out = capsys.readouterr().out
    assert code == 1
    assert "FAIL: the SQLite mirror differs from the cluster" in out
    assert "in the mirror but deleted in the cluster" in out


async def test_a_database_path_that_cannot_be_opened_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "no" / "such" / "dir" / "mirror.db"
    code = await main_async(["demo", *SMALL, "--db", str(db)], stop=asyncio.Event())
    assert code == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.startswith(f"listwatch demo: error: cannot open the SQLite database {db}: ")
    assert err.count("\n") == 1


async def test_a_file_that_holds_a_mirror_is_replaced_only_with_overwrite(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "mirror.db"
    quick = ["demo", "--pods", "20", "--namespaces", "2", "--seconds", "0", "--db", str(db)]
    assert await main_async(quick, stop=asyncio.Event()) == 0
    before = read_mirror(db, resource="pods")
    capsys.readouterr()

    assert await main_async([*quick, "--seed", "1"], stop=asyncio.Event()) == 1
    (line,) = capsys.readouterr().err.splitlines()
    assert line == (
        f"listwatch demo: error: --db {db} already exists and is not empty: the demo would "
        "replace the pods it holds (--overwrite if that is what you want, or give a new path)"
    )
    assert read_mirror(db, resource="pods") == before

    assert await main_async([*quick, "--seed", "1", "--overwrite"], stop=asyncio.Event()) == 0
    assert set(read_mirror(db, resource="pods").objects) != set(before.objects)


async def test_any_file_that_is_not_empty_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("not a mirror\n")
    assert await main_async(["demo", *SMALL, "--db", str(notes)], stop=asyncio.Event()) == 1
    (line,) = capsys.readouterr().err.splitlines()
    assert "already exists and is not empty" in line
    assert notes.read_text() == "not a mirror\n"


async def test_a_demo_that_fails_before_writing_leaves_no_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The file was created (its schema too) when the demo fails: it is removed again."""

    async def broken(self: object) -> None:
        raise CliError("the cluster could not be populated")

    monkeypatch.setattr(demo.PodWorkload, "populate", broken)
    db = tmp_path / "mirror.db"
    assert await main_async(["demo", *SMALL, "--db", str(db)], stop=asyncio.Event()) == 1
    assert "the cluster could not be populated" in capsys.readouterr().err
    assert not db.exists()
    assert not db.with_name("mirror.db-wal").exists()


async def test_the_demo_runs_as_a_command_with_plain_output() -> None:
    process = await asyncio.create_subprocess_exec(
        PYTHON,
        "-m",
        "listwatch",
        "demo",
        "--pods",
        "100",
        "--seconds",
        "2",
        env=subprocess_env(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    text = out.decode()
    assert process.returncode == 0, text + err.decode()
    assert "PASS: the SQLite mirror equals the cluster: " in text
    assert "\x1b[" not in text
    assert "] churning | gen 1 watching | writes" in text
    assert b"Traceback" not in err


async def test_sigint_stops_the_demo_process_which_still_verifies() -> None:
    process = await asyncio.create_subprocess_exec(
        PYTHON,
        "-m",
        "listwatch",
        "demo",
        "--pods",
        "100",
        "--seconds",
        "600",
        env=subprocess_env(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    try:
        async with asyncio.timeout(60):
            while True:
                line = await process.stdout.readline()
                assert line, "the demo ended before its first snapshot"
                if b"initial snapshot mirrored" in line:
                    break
            process.send_signal(signal.SIGINT)
            rest, err = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0, rest.decode() + err.decode()
    assert b"interrupted: churn and faults stopped" in rest
    assert b"PASS:" in rest
    assert b"SIGINT: stopping" in err
