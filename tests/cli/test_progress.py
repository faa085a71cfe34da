"""Progress output: plain lines off a terminal, a rich live table on one."""

from __future__ import annotations

import io

import pytest

from listwatch.cli._progress import (
    PlainView,
    RateMeter,
    Sample,
    format_counts,
    make_view,
    plain_line,
    restart_kind,
)


def sample(**changes: object) -> Sample:
    values: dict[str, object] = {
        "elapsed": 3.25,
        "stage": "churning",
        "phase": "watching",
        "generation": 2,
        "writes": 800,
        "writes_per_second": 250.0,
        "events": 700,
        "events_per_second": 240.4,
        "batches": 6,
        "cluster_objects": 2010,
        "mirror_objects": 2008,
        "server_rv": 3000,
        "mirror_rv": 2950,
        "restarts": {"410 expired": 1},
        "faults": {"410 storm": 1},
    }
    values.update(changes)
    return Sample(**values)  # type: ignore[arg-type]


def test_plain_line_has_every_figure() -> None:
    line = plain_line(sample())
    assert line.startswith("[   3.2s] churning | gen 2 watching | writes 800 (250/s)")
    assert "events 700 (240/s) in 6 batches" in line
    assert "mirror 2008 pods (cluster 2010) at rv 2950 (server 3000, lag 50)" in line
    assert "restarts 1 (410 expired x1)" in line
    assert "faults fired: 410 storm x1" in line


def test_plain_line_before_the_first_sync() -> None:
    line = plain_line(sample(mirror_rv=None, restarts={}, faults={}))
    assert "at rv - (server 3000, lag -)" in line
    assert line.endswith("restarts 0")


def test_restart_kinds_and_counts() -> None:
    assert restart_kind("ResourceExpired: watch ERROR event: HTTP 410 Expired") == "410 expired"
    assert restart_kind("ReceiverError: on_batch failed: boom") == "receiver failed"
    assert restart_kind("Weird: thing") == "Weird"
    assert format_counts({"a": 1, "b": 3, "c": 0}) == "b x3, a x1"
    assert format_counts({}) == "none"


def test_rate_meter_uses_a_window() -> None:
    meter = RateMeter(window=2.0)
    assert meter.rate(0, now=0.0) == 0.0
    assert meter.rate(100, now=1.0) == 100.0
    assert meter.rate(300, now=2.0) == 150.0
    assert meter.rate(300, now=4.0) == 0.0  # nothing since t=2, the window's start
    assert meter.rate(400, now=5.0) == pytest.approx(100 / 3)


def test_a_pipe_gets_plain_lines() -> None:
    stream = io.StringIO()
    view = make_view(stream)
    assert isinstance(view, PlainView)
    view.update(sample())
    view.message("restart (410 expired): generation 1 ended")
    view.close()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    assert lines[1] == "restart (410 expired): generation 1 ended"


def test_the_rich_view_renders() -> None:
    # rich is in the test extra: this test runs wherever the suite runs.
    stream = io.StringIO()
    view = make_view(stream, rich=True)
    assert not isinstance(view, PlainView)
    view.message("a restart")
    view.update(sample())
    view.close()
    view.verdict(["PASS: equal", "  figures"], passed=True)
    text = stream.getvalue()
    assert "PASS: equal" in text
    assert "a restart" in text
    assert "2,008 pods (cluster 2,010)" in text
    assert "410 expired x1" in text
