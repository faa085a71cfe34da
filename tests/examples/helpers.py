"""Helpers the tests of examples/ import (fixtures stay in conftest.py)."""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

from listwatch import Backoff, SyncerStatus
from listwatch.testing import FakeApiServer
from tests.objects import key_of

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


WAIT = 10.0
"""The bound on every wait for a condition: a safety net, never a synchronisation."""


T = TypeVar("T")


def load_example(name: str) -> ModuleType:
    module_name = f"listwatch_example_{name}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, EXAMPLES / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses look their module up while it executes
    spec.loader.exec_module(module)
    return module


def fast_backoff() -> Backoff:
    return Backoff(initial=0.01, cap=0.05)


def app_pod(
    name: str, namespace: str = "default", *, phase: str = "Pending", node: str = ""
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "c", "image": "busybox"}], "nodeName": node},
        "status": {"phase": phase},
    }


def pods_on_server(server: FakeApiServer) -> dict[str, str]:
    """``{key: resourceVersion}`` of every pod on the fake server."""
    return {key_of(obj): obj["metadata"]["resourceVersion"] for obj in server.objects("v1", "Pod")}


async def churn(server: FakeApiServer) -> None:
    """Creates in two namespaces, updates, deletes, and a delete-and-recreate of one name."""
    await server.create(app_pod("c1"))
    await server.create(app_pod("c2", "kube-system"))
    current = server.get("v1", "Pod", "a", "default")
    assert current is not None
    current["status"] = {"phase": "Running"}
    await server.replace(current)
    await server.delete(app_pod("b"))
    await server.delete(app_pod("c1"))
    await server.create(app_pod("c1", phase="Running"))


def caught_up(server: FakeApiServer) -> Callable[[SyncerStatus], bool]:
    """A ``wait_until`` predicate: the receiver holds everything up to the server's RV now.

    The status's ``resource_version`` moves only after ``on_list``/``on_batch`` returned, so
    once it reaches the server's current RV the receiver has applied every change.
    """
    target = str(server.resource_version)
    return lambda status: status.synced and status.resource_version == target


async def within(awaitable: Awaitable[T], limit: float = WAIT) -> T:
    async with asyncio.timeout(limit):
        return await awaitable
