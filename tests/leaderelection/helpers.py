"""Helpers the tests of leaderelection/ import (fixtures stay in conftest.py)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kubernetes_asyncio.client import ApiClient, Configuration

from listwatch.leaderelection import ElectionStatus, LeaderElector, Term
from listwatch.testing import FakeApiServer

LEASE = "listwatch-leader"


NAMESPACE = "default"


#: Short durations in client-go's ordering: a standby waits 3 s, a leader that cannot renew
#: gives up after 2 s, candidates retry every 0.2-0.44 s. The margins stay well above the
#: event-loop delays of a loaded CI machine, so a healthy leader never loses its term.
FAST: dict[str, Any] = {"lease_duration": 3.0, "renew_deadline": 2.0, "retry_period": 0.2}


def lease_of(server: FakeApiServer) -> dict[str, Any] | None:
    return server.get("coordination.k8s.io/v1", "Lease", LEASE, NAMESPACE)


def spec_of(server: FakeApiServer) -> dict[str, Any]:
    lease = lease_of(server)
    assert lease is not None
    spec: dict[str, Any] = lease["spec"]
    return spec


def lease_object(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": LEASE, "namespace": NAMESPACE},
        "spec": spec,
    }


def client_for(server: FakeApiServer, port: int | None = None) -> ApiClient:
    """An ApiClient for the server, or for a proxy in front of it on ``port``."""
    if port is None:
        return server.api_client()
    configuration = Configuration(
        host=f"http://127.0.0.1:{port}",
        api_key={"BearerToken": server.token},
        api_key_prefix={"BearerToken": "Bearer"},
    )
    return ApiClient(configuration=configuration)


@dataclass
class Candidate:
    """One elector with a ``lead`` that records its terms and runs until cancelled.

    ``events`` is one ordered log of what ``lead`` saw and what the elector reported, so
    tests can assert orderings such as "lead was cancelled before the loss was reported".
    """

    identity: str
    elector: LeaderElector = field(init=False)
    statuses: list[ElectionStatus] = field(default_factory=list)
    events: list[tuple[str, Any]] = field(default_factory=list)
    terms: list[Term] = field(default_factory=list)
    gate_at_cancel: list[bool] = field(default_factory=list)
    task: asyncio.Task[None] | None = None
    #: Terms of other candidates; whether any was still valid is noted when ``lead`` starts.
    rivals: list[Term] = field(default_factory=list)
    rival_valid_at_start: list[bool] = field(default_factory=list)

    def on_change(self, status: ElectionStatus) -> None:
        previous = self.statuses[-1] if self.statuses else None
        self.statuses.append(status)
        if previous is not None and previous.leading != status.leading:
            self.events.append(("leading" if status.leading else "not leading", status.term))

    async def lead(self, term: Term) -> None:
        self.terms.append(term)
        self.rival_valid_at_start.append(any(rival.valid() for rival in self.rivals))
        self.events.append(("lead started", term))
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.gate_at_cancel.append(term.valid())
            self.events.append(("lead cancelled", term))
            raise

    async def until(
        self, predicate: Callable[[ElectionStatus], bool], limit: float = 10.0
    ) -> ElectionStatus:
        async with asyncio.timeout(limit):
            return await self.elector.wait_until(predicate)

    async def stop(self) -> None:
        """Cancel ``run`` (a clean shutdown) and wait until it has returned."""
        assert self.task is not None
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task

    def observed_at_of(self, holder: str) -> float:
        """When this candidate first saw the last record held by ``holder``."""
        times = [s.observed_at for s in self.statuses if s.holder == holder and s.observed_at]
        assert times, f"{self.identity} never observed {holder}"
        return times[-1]


class Campaign:
    """Starts candidates (``await campaign("a", **options)``) and stops them all at the end.

    ``timeline`` holds, after every status change of any candidate, the set of candidates
    whose latest status says they lead.
    """

    def __init__(self, server: FakeApiServer) -> None:
        self._server = server
        self.candidates: list[Candidate] = []
        self.timeline: list[frozenset[str]] = []
        self._clients: list[ApiClient] = []

    def leaders(self) -> frozenset[str]:
        return frozenset(
            c.identity for c in self.candidates if c.statuses and c.statuses[-1].leading
        )

    async def __call__(
        self, identity: str, *, port: int | None = None, **options: Any
    ) -> Candidate:
        client = client_for(self._server, port)
        self._clients.append(client)
        candidate = Candidate(identity)
        self.candidates.append(candidate)

        def on_change(status: ElectionStatus) -> None:
            candidate.on_change(status)
            self.timeline.append(self.leaders())

        candidate.elector = LeaderElector(
            client,
            lease_name=LEASE,
            lease_namespace=NAMESPACE,
            identity=identity,
            on_change=on_change,
            **{**FAST, **options},
        )
        candidate.task = asyncio.create_task(candidate.elector.run(candidate.lead), name=identity)
        return candidate

    async def close(self) -> None:
        for candidate in self.candidates:
            if candidate.task is not None:
                candidate.task.cancel()
        for candidate in self.candidates:
            if candidate.task is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await candidate.task
        for client in self._clients:
            await client.close()
