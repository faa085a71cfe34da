"""The lines the commands write: text for a person, one JSON object per line for a collector,
each naming its resource (and, under leader election, the replica's role)."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable
from datetime import datetime

import orjson
import pytest

from listwatch._syncer import current_resource
from listwatch.cli._logging import (
    JsonFormatter,
    TextFormatter,
    current_role,
    logging_to_stderr,
    resolve_level,
)


@pytest.fixture
def stderr(capsys: pytest.CaptureFixture[str]) -> Callable[[], str]:
    """What the command's handler wrote (to whatever sys.stderr is when it writes)."""
    return lambda: capsys.readouterr().err


def record(
    name: str = "listwatch", level: int = logging.INFO, message: str = "hello %s", **extra: object
) -> logging.LogRecord:
    entry = logging.LogRecord(name, level, __file__, 1, message, ("world",), None)
    for key, value in extra.items():
        setattr(entry, key, value)
    return entry


def test_a_json_line_has_time_level_logger_message_and_the_extra_fields() -> None:
    line = JsonFormatter().format(
        record("listwatch.cli", logging.WARNING, resource="pods", retry_in=1.5, target="x.db")
    )
    assert "\n" not in line
    entry = orjson.loads(line)
    assert entry["level"] == "warning"
    assert entry["logger"] == "listwatch.cli"
    assert entry["message"] == "hello world"
    assert (entry["resource"], entry["retry_in"], entry["target"]) == ("pods", 1.5, "x.db")
    assert entry["time"].endswith("Z")
    assert datetime.fromisoformat(entry["time"].replace("Z", "+00:00")).utcoffset() is not None
    assert not {"args", "msg", "levelno", "pathname", "lineno"} & set(entry)


def test_a_json_line_keeps_a_traceback_on_its_one_line() -> None:
    try:
        raise ValueError("broken\nacross lines")
    except ValueError:
        entry = record(level=logging.ERROR)
        entry.exc_info = sys.exc_info()
    line = JsonFormatter().format(entry)
    assert "\n" not in line
    parsed = orjson.loads(line)
    assert "ValueError: broken" in parsed["exception"]


def test_a_value_json_cannot_encode_is_written_as_text() -> None:
    entry = orjson.loads(JsonFormatter().format(record(path=object.__new__(type("P", (), {})))))
    assert isinstance(entry["path"], str)


def test_text_lines_of_the_command_read_as_they_always_did() -> None:
    text = TextFormatter("mirror")
    assert text.format(record("listwatch.cli", resource="pods")) == (
        "listwatch mirror: pods: hello world"
    )
    assert text.format(record("listwatch.cli", logging.ERROR)) == (
        "listwatch mirror: error: hello world"
    )
    assert text.format(record("listwatch.cli", logging.WARNING, role="standby")) == (
        "listwatch mirror [standby]: warning: hello world"
    )


def test_text_lines_of_the_library_carry_time_level_logger_and_resource() -> None:
    line = TextFormatter("mirror").format(record(resource="pods", role="leading"))
    stamp, level, rest = line.split(" ", 2)
    assert stamp.endswith("Z")
    assert level == "INFO"
    assert rest == "listwatch [leading]: pods: hello world"


async def test_records_written_inside_a_syncers_context_name_its_resource(
    stderr: Callable[[], str],
) -> None:
    async def in_syncer() -> None:
        current_resource.set(lambda: "deployments.apps")
        logging.getLogger("listwatch").warning("generation 2 ended")

    role = current_role.set(lambda: "leading")
    try:
        with logging_to_stderr(None, "json", command="mirror"):
            await asyncio.create_task(in_syncer())
            logging.getLogger("listwatch.cli").info("not about a resource")
    finally:
        current_role.reset(role)
    first, second = (orjson.loads(line) for line in stderr().splitlines())
    assert (first["resource"], first["role"]) == ("deployments.apps", "leading")
    assert "resource" not in second


def test_the_default_level_shows_the_commands_lines_and_the_librarys_warnings(
    stderr: Callable[[], str],
) -> None:
    with logging_to_stderr(None, "text", command="receiver"):
        logging.getLogger("listwatch").info("routine")
        logging.getLogger("listwatch").warning("trouble")
        logging.getLogger("listwatch.cli").info("serving")
        logging.getLogger("listwatch.httpsync.requests").info("POST /sync/pods/batch 200")
    text = stderr()
    assert "routine" not in text
    assert "trouble" in text
    assert "listwatch receiver: serving" in text
    assert "POST /sync/pods/batch 200" in text


def test_an_explicit_level_applies_to_every_line(stderr: Callable[[], str]) -> None:
    with logging_to_stderr("warning", "text", command="mirror"):
        logging.getLogger("listwatch.cli").info("synced")
        logging.getLogger("listwatch.cli").warning("failed")
    assert stderr() == "listwatch mirror: warning: failed\n"


@pytest.mark.parametrize(
    ("log_level", "verbosity", "expected"),
    [(None, 0, None), (None, 1, "info"), (None, 2, "debug"), ("error", 0, "error")],
)
def test_v_and_vv_stand_for_info_and_debug(
    log_level: str | None, verbosity: int, expected: str | None
) -> None:
    assert resolve_level(log_level, verbosity) == expected
