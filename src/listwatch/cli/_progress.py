"""Live progress for the demo: a rich live view on a terminal, plain lines otherwise.

The demo is meant to be watched: a newcomer should *see* events flow, generations start and
restarts happen with their reason, and the mirror keep up. On a terminal that is a rich
live table redrawn in place; piped into a file or a CI log, redrawing would be noise, so the
same figures come as one plain line per interval. Both views take the same ``Sample``, and
messages (a restart and why, a phase of the demo) go above the table or between the lines.

rich is optional (the ``cli`` extra): without it, a terminal gets the plain lines too.
"""

from __future__ import annotations

import sys
import time
from collections import Counter, deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, TextIO

if TYPE_CHECKING:
    from rich.table import Table

#: Restart reasons start with the exception's class name; these read better in a summary.
_REASON_LABELS = {
    "ResourceExpired": "410 expired",
    "ReceiverError": "receiver failed",
    "ReceiverTimeout": "receiver timed out",
    "VeryShortWatch": "very short watch",
    "TooManyRequests": "429 retries exhausted",
    "ServerError": "server error",
    "ApiConnectionError": "connection error",
    "ConnectionLost": "connection lost",
    "MalformedEvent": "malformed event",
    "Unauthorized": "unauthorized",
    "resync_period elapsed": "resync",
}


def restart_kind(reason: str) -> str:
    """A short label for a restart reason such as ``"ResourceExpired: watch ...: HTTP 410"``."""
    head = reason.split(":", 1)[0].strip()
    return _REASON_LABELS.get(head, head or "unknown")


def format_counts(counts: Mapping[str, int]) -> str:
    """``"410 expired x2, receiver failed x1"``, largest first; ``"none"`` when empty."""
    items = sorted(((k, v) for k, v in counts.items() if v), key=lambda kv: (-kv[1], kv[0]))
    return ", ".join(f"{kind} x{count}" for kind, count in items) or "none"


@dataclass(frozen=True, slots=True)
class Sample:
    """What the demo shows at one moment."""

    elapsed: float
    stage: str
    """Where the demo is: ``listing``, ``churning``, ``converging``..."""
    phase: str
    """The syncer's phase."""
    generation: int
    writes: int
    writes_per_second: float
    events: int
    events_per_second: float
    batches: int
    cluster_objects: int
    mirror_objects: int
    server_rv: int
    mirror_rv: int | None
    restarts: Mapping[str, int] = field(default_factory=dict)
    faults: Mapping[str, int] = field(default_factory=dict)

    @property
    def lag(self) -> int | None:
        """How many resourceVersions the mirror is behind the server (None before a sync)."""
        return None if self.mirror_rv is None else max(self.server_rv - self.mirror_rv, 0)


class RateMeter:
    """A per-second rate over a sliding window, so batches every half second do not make the
    number jump between zero and twice the real rate."""

    def __init__(self, window: float = 3.0) -> None:
        self._window = window
        self._samples: deque[tuple[float, int]] = deque()

    def rate(self, count: int, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        samples = self._samples
        samples.append((now, count))
        while len(samples) > 2 and now - samples[1][0] >= self._window:
            samples.popleft()
        first_time, first_count = samples[0]
        span = now - first_time
        return (count - first_count) / span if span > 0 else 0.0


class ProgressView(Protocol):
    """Where the demo's progress goes."""

    def update(self, sample: Sample) -> None:
        """Show the latest figures."""

    def message(self, text: str) -> None:
        """Show one event of the run (a restart, a phase change), kept in the output."""

    def close(self) -> None:
        """Stop live output; what follows is printed normally."""

    def verdict(self, lines: list[str], *, passed: bool) -> None:
        """Print the final verdict (its first line) and figures, after ``close``."""


def plain_line(sample: Sample) -> str:
    """One line per interval, for logs: every figure, fixed order, no redrawing."""
    lag = "-" if sample.lag is None else str(sample.lag)
    mirror_rv = "-" if sample.mirror_rv is None else str(sample.mirror_rv)
    parts = [
        f"[{sample.elapsed:6.1f}s] {sample.stage}",
        f"gen {sample.generation} {sample.phase}",
        f"writes {sample.writes} ({sample.writes_per_second:.0f}/s)",
        f"events {sample.events} ({sample.events_per_second:.0f}/s) in {sample.batches} batches",
        f"mirror {sample.mirror_objects} pods (cluster {sample.cluster_objects}) at rv "
        f"{mirror_rv} (server {sample.server_rv}, lag {lag})",
        f"restarts {sum(sample.restarts.values())}",
    ]
    if sample.restarts:
        parts[-1] += f" ({format_counts(sample.restarts)})"
    if sample.faults:
        parts.append(f"faults fired: {format_counts(sample.faults)}")
    return " | ".join(parts)


class PlainView:
    """Plain lines to a stream: one per ``update``, messages as they come."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def update(self, sample: Sample) -> None:
        self._write(plain_line(sample))

    def message(self, text: str) -> None:
        self._write(text)

    def close(self) -> None:
        self._stream.flush()

    def verdict(self, lines: list[str], *, passed: bool) -> None:
        for line in lines:
            self._write(line)

    def _write(self, line: str) -> None:
        self._stream.write(line + "\n")
        self._stream.flush()


class RichView:
    """A live table redrawn in place; messages scroll above it."""

    def __init__(self, stream: TextIO) -> None:
        from rich.console import Console  # noqa: PLC0415 - optional dependency
        from rich.live import Live  # noqa: PLC0415

        self._console = Console(file=stream)
        self._live = Live(console=self._console, refresh_per_second=4, transient=False)
        self._live.start()

    def update(self, sample: Sample) -> None:
        self._live.update(_table(sample), refresh=True)

    def message(self, text: str) -> None:
        self._console.print(text, markup=False, highlight=False, soft_wrap=True)

    def close(self) -> None:
        self._live.stop()

    def verdict(self, lines: list[str], *, passed: bool) -> None:
        head, *rest = lines
        self._console.print(
            head,
            style="bold green" if passed else "bold red",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
        for line in rest:
            self._console.print(line, markup=False, highlight=False, soft_wrap=True)


def _table(sample: Sample) -> Table:
    from rich.table import Table  # noqa: PLC0415 - optional dependency

    table = Table(
        title=f"listwatch demo  {sample.elapsed:5.1f} s  {sample.stage}",
        show_header=False,
        title_justify="left",
        min_width=60,
    )
    table.add_column("what", style="bold")
    table.add_column("value")
    lag = "-" if sample.lag is None else str(sample.lag)
    table.add_row("writes", f"{sample.writes:,}  ({sample.writes_per_second:,.0f}/s)")
    table.add_row("events", f"{sample.events:,}  ({sample.events_per_second:,.0f}/s)")
    table.add_row("batches", f"{sample.batches:,}")
    table.add_row(
        "mirror",
        f"{sample.mirror_objects:,} pods (cluster {sample.cluster_objects:,}), "
        f"rv {sample.mirror_rv if sample.mirror_rv is not None else '-'} "
        f"(server {sample.server_rv}, lag {lag})",
    )
    table.add_row("generation", f"{sample.generation} ({sample.phase})")
    table.add_row("restarts", f"{sum(sample.restarts.values())}  {format_counts(sample.restarts)}")
    if sample.faults:
        table.add_row("faults fired", format_counts(sample.faults))
    return table


def make_view(stream: TextIO | None = None, *, rich: bool | None = None) -> ProgressView:
    """A rich view when ``stream`` is a terminal and rich is installed, else plain lines."""
    stream = sys.stdout if stream is None else stream
    if rich is None:
        rich = stream.isatty()
    if rich:
        try:
            return RichView(stream)
        except ImportError:
            pass
    return PlainView(stream)


class RestartCounter:
    """Restarts by kind; fed from ``SyncerStatus.recent_restarts``."""

    def __init__(self) -> None:
        self.by_kind: Counter[str] = Counter()

    def add(self, reason: str) -> str:
        kind = restart_kind(reason)
        self.by_kind[kind] += 1
        return kind
