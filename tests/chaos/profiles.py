"""Profiles: named after what they stress. A profile plus a seed is one reproducible scenario."""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from listwatch.testing.scenario import (
    ALL_FAULTS,
    COMPACTION,
    CUTS,
    LIST_FAULTS,
    WATCH_ERRORS,
    Churn,
)

from .monitors import ReceiverFaults

StaleWatch = Literal["error-event", "http-410", "empty-200"]


@dataclass(frozen=True)
class Profile:
    name: str
    doc: str
    faults: Mapping[str, float] = field(default_factory=dict)  # class -> weight
    fault_rate: float = 0.0  # injections per second during the chaos phase
    receiver: ReceiverFaults = field(default_factory=ReceiverFaults)
    stale_watch: tuple[StaleWatch, ...] = ("error-event",)  # one is drawn per seed
    history_limit: tuple[int | None, ...] = (None,)  # one is drawn per seed
    blackout: bool = False  # every request fails for a while: monitor 5
    churn: Churn = field(default_factory=Churn)
    page_size: int = 7
    merge_interval: float = 0.02
    max_batch: tuple[int, ...] = (10_000, 16)
    queue_size: tuple[int, ...] = (256, 32)
    sync_timeout: float = 0.25
    backoff_initial: float = 0.01
    backoff_cap: float = 0.1
    transform: bool = False  # objects go through a Syncer transform (``mark_transformed``)
    resync_period: tuple[float | None, ...] = (None,)  # one is drawn per seed

    def quirk(self, rng: random.Random) -> StaleWatch:
        return rng.choice(self.stale_watch)


def _weights(*groups: tuple[tuple[str, ...], float]) -> dict[str, float]:
    weights: dict[str, float] = {}
    for names, weight in groups:
        for name in names:
            weights[name] = weights.get(name, 0.0) + weight
    return weights


RECEIVER_TROUBLE = ReceiverFaults(
    raise_list=0.15, raise_batch=0.06, partial=0.04, stall=0.08, stall_seconds=(0.01, 0.4)
)

PROFILES: dict[str, Profile] = {
    p.name: p
    for p in (
        Profile(
            "calm",
            "churn with big objects and hot keys, no fault: the baseline every monitor holds on",
        ),
        Profile(
            "cuts",
            "watch streams cut between and inside lines, connections closed, slow streams",
            faults=_weights(
                (CUTS, 1.0), (("watch-cut", "watch-cut-mid-line"), 2.0), (("watch-slow",), -0.7)
            ),
            fault_rate=12.0,
            transform=True,
        ),
        Profile(
            "errors",
            "every error status on list and watch (JSON and plain text), ERROR events, "
            "malformed lines, empty 200s, plus a blackout where every request fails",
            faults=_weights((LIST_FAULTS, 1.0), (WATCH_ERRORS, 1.0)),
            fault_rate=10.0,
            blackout=True,
        ),
        Profile(
            "compaction",
            "compaction under paged LISTs (expired continue tokens) and behind watchers "
            "(ERROR 410), with a bounded history window",
            faults=_weights((COMPACTION, 2.0), (("watch-error-410", "list-410"), 1.0)),
            fault_rate=6.0,
            history_limit=(None, 300),
            page_size=5,
        ),
        Profile(
            "stale-quirks",
            "a server that answers a stale watch with HTTP 410 or an empty 200, for the whole "
            "run, with compaction and a small history window so that watches go stale",
            faults=_weights((COMPACTION, 1.0), (("watch-cut",), 0.5)),
            fault_rate=5.0,
            stale_watch=("http-410", "empty-200"),
            history_limit=(120, None),
        ),
        Profile(
            "receiver-failures",
            "on_list/on_batch raise, fail half-way through a batch, and stall (some past "
            "sync_timeout)",
            receiver=RECEIVER_TROUBLE,
            resync_period=(None, 0.7),
        ),
        Profile(
            "chaos",
            "everything at once: all fault classes, a random stale-watch quirk and history "
            "window, a failing and stalling receiver, and a blackout",
            faults=_weights((ALL_FAULTS, 1.0), (("5xx-retry-after",), -0.7)),
            fault_rate=14.0,
            receiver=ReceiverFaults(
                raise_list=0.05,
                raise_batch=0.03,
                partial=0.02,
                stall=0.04,
                stall_seconds=(0.01, 0.35),
            ),
            stale_watch=("error-event", "http-410", "empty-200"),
            history_limit=(None, 200),
            blackout=True,
            transform=True,
            resync_period=(None, 1.3),
        ),
    )
}
