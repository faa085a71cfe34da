"""What the commands write to stderr: log records, as text for a person or JSON for a collector.

The library only logs (``logging``, with a ``NullHandler`` on the ``listwatch`` logger); a
command decides what is shown and how. Every line that concerns one resource names it: the
command's own lines say so with ``extra={"resource": ...}``, and the Syncer's lines carry it
in a context variable (``listwatch._syncer.current_resource``) that ``_Context`` copies onto
each record. Under leader election each line also says whether this replica is ``leading``
or ``standby`` (``current_role``), since a standby's lines must not read like the leader's.

Two formats:

* **text**, for a terminal: the command's own lines as ``listwatch mirror: pods: synced
  ...`` (``warning:``/``error:`` after the command for those levels), the library's as
  ``<time> <LEVEL> <logger>: pods: ...``;
* **json**, for a log pipeline: one object per line with ``time`` (RFC 3339, UTC),
  ``level``, ``logger``, ``message``, ``resource`` and ``role`` when known, and every
  structured field the call gave in ``extra=``.

Levels: ``--log-level`` sets one level for everything. Without it, the command's own lines
(``listwatch.cli``) and the receiver's request log (``listwatch.httpsync.requests``) show
at INFO and the rest of the library at WARNING: a failure is always visible, the routine of
every generation only when asked for (``-v`` is ``--log-level info``, ``-vv`` debug).
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import orjson

from listwatch._syncer import current_resource

__all__ = ["LEVELS", "cli_logger", "current_role", "logging_to_stderr"]

LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}
FORMATS = ("text", "json")

CLI_LOGGER = "listwatch.cli"
REQUEST_LOGGER = "listwatch.httpsync.requests"
"""The receiver's request log (one INFO line per request), on its own logger as web servers
keep their access logs (``aiohttp.access``)."""

cli_logger = logging.getLogger(CLI_LOGGER)
"""The commands' own lines: what a person running them reads."""

current_role: contextvars.ContextVar[Callable[[], str | None] | None] = contextvars.ContextVar(
    "listwatch_role", default=None
)
"""Under leader election, says this replica's role now (``leading``/``standby``); set by
the mirror for the rest of its run, read at every record."""

_RECORD_FIELDS = frozenset(
    set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName"}
)
"""A LogRecord's own attributes: anything else on a record came from ``extra=``."""


class _Context(logging.Filter):
    """Names the resource (when the call did not) and the role on every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "resource", None) is None:
            name = current_resource.get()
            record.resource = name() if name is not None else None
        role = current_role.get()
        record.role = role() if role is not None else None
        return True


def _time(record: logging.LogRecord) -> str:
    """RFC 3339 in UTC, to the millisecond: comparable across replicas and time zones."""
    moment = datetime.fromtimestamp(record.created, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _is_cli(record: logging.LogRecord) -> bool:
    return record.name == CLI_LOGGER or record.name.startswith(CLI_LOGGER + ".")


class TextFormatter(logging.Formatter):
    """One line per record for a person: the command's own lines as they always read
    (``listwatch mirror: ...``), the library's with time, level and logger."""

    def __init__(self, command: str) -> None:
        super().__init__()
        self._command = command

    def format(self, record: logging.LogRecord) -> str:
        role = getattr(record, "role", None)
        resource = getattr(record, "resource", None)
        about = f"{resource}: " if resource else ""
        if _is_cli(record):
            who = f"listwatch {self._command}" + (f" [{role}]" if role else "")
            level = f"{record.levelname.lower()}: " if record.levelno >= logging.WARNING else ""
            line = f"{who}: {level}{about}{record.getMessage()}"
        else:
            who = record.name + (f" [{role}]" if role else "")
            line = f"{_time(record)} {record.levelname} {who}: {about}{record.getMessage()}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per record (a single line), for log collectors.

    ``time``, ``level``, ``logger`` and ``message`` always; ``resource`` and ``role`` when
    the record has them; then every field the call gave in ``extra=`` (``target``,
    ``retry_in``, ``status``, ...); ``exception`` holds a traceback, when there is one.
    """

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": _time(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name, value in vars(record).items():
            if name not in _RECORD_FIELDS and value is not None:
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return orjson.dumps(entry, default=str).decode()


class _CurrentStderr(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is when a record is emitted: rich's live view
    redirects it while live, so log lines land above the view instead of through it."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


def resolve_level(log_level: str | None, verbosity: int) -> str | None:
    """``--log-level``, else what ``-v``/``-vv`` stand for, else None (the defaults)."""
    if log_level is not None:
        return log_level
    if verbosity <= 0:
        return None
    return "info" if verbosity == 1 else "debug"


@contextlib.contextmanager
def logging_to_stderr(
    level: str | None = None, log_format: str = "text", *, command: str = ""
) -> Iterator[None]:
    """While inside, listwatch's loggers write to stderr in ``log_format``; ``level`` is a
    key of ``LEVELS`` or None for the defaults (see the module's docs). Restored on exit,
    so a command run in-process (tests, embedding) leaves the caller's logging as it was.

    In JSON, the root logger's warnings (asyncio's, aiohttp's) are written as JSON too, so
    that every line parses.
    """
    if log_format not in FORMATS:
        raise ValueError(f"log format must be one of {FORMATS}, not {log_format!r}")
    handler = _CurrentStderr()
    handler.addFilter(_Context())
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter(command))
    top = logging.getLogger("listwatch")
    if level is None:
        levels = {
            "listwatch": logging.WARNING,
            CLI_LOGGER: logging.INFO,
            REQUEST_LOGGER: logging.INFO,
        }
    else:
        chosen = LEVELS[level]
        levels = {"listwatch": chosen, CLI_LOGGER: logging.NOTSET, REQUEST_LOGGER: logging.NOTSET}
    loggers = {name: logging.getLogger(name) for name in levels}
    saved = {name: logger.level for name, logger in loggers.items()}
    saved_propagate = top.propagate
    root = logging.getLogger()
    top.addHandler(handler)
    if log_format == "json":
        root.addHandler(handler)
    for name, value in levels.items():
        loggers[name].setLevel(value)
    top.propagate = False
    try:
        yield
    finally:
        top.removeHandler(handler)
        root.removeHandler(handler)
        for name, value in saved.items():
            loggers[name].setLevel(value)
        top.propagate = saved_propagate
