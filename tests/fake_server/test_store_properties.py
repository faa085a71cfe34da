"""Property tests of the versioned store: history, compaction and paging agree with a model.

The model replays every write; the store must answer a read at any RV it has not
compacted exactly as the model's state at that RV, and paging through that state with any
page size must yield it whole, in key order.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from listwatch.testing._listing import Lister
from listwatch.testing._options import ListOptions
from listwatch.testing._resources import BUILTIN_RESOURCES, NAMESPACES
from listwatch.testing._selectors import Selection
from listwatch.testing._store import ObjectStore

CONFIGMAPS = next(r for r in BUILTIN_RESOURCES if r.plural == "configmaps")
NAMES = ["a", "b", "c", "d"]
NAMESPACES_USED = ["default", "other"]

operation = st.one_of(
    st.tuples(
        st.just("write"),
        st.sampled_from(NAMESPACES_USED),
        st.sampled_from(NAMES),
        st.integers(0, 3),
    ),
    st.tuples(
        st.just("delete"), st.sampled_from(NAMESPACES_USED), st.sampled_from(NAMES), st.just(0)
    ),
    st.tuples(st.just("compact"), st.just(""), st.just(""), st.integers(0, 5)),
)


def new_store(history_limit: int | None) -> ObjectStore:
    store = ObjectStore(rng=random.Random(0), history_limit=history_limit)
    for namespace in NAMESPACES_USED:
        store.create(NAMESPACES, {"metadata": {"name": namespace}})
    return store


def apply(
    store: ObjectStore, op: tuple[str, str, str, int], model: dict[str, dict[str, Any]]
) -> None:
    """Apply one operation to the store and mirror it in ``model`` (key -> object)."""
    kind, namespace, name, value = op
    key = f"{namespace}/{name}"
    if kind == "compact":
        store.compact(max(store.resource_version - value, 0))
        return
    current = store.get(CONFIGMAPS, namespace, name)
    if kind == "delete":
        if current is not None:
            store.delete(CONFIGMAPS, namespace, name)
            del model[key]
        return
    obj = {"metadata": {"name": name, "namespace": namespace}, "data": {"v": str(value)}}
    stored = store.create(CONFIGMAPS, obj) if current is None else store.replace(CONFIGMAPS, obj)
    model[key] = stored


@settings(max_examples=150, deadline=None)
@given(ops=st.lists(operation, max_size=40), history_limit=st.one_of(st.none(), st.integers(1, 8)))
def test_reads_at_every_kept_rv_match_the_model(
    ops: list[tuple[str, str, str, int]], history_limit: int | None
) -> None:
    store = new_store(history_limit)
    model: dict[str, dict[str, Any]] = {}
    states: dict[int, dict[str, dict[str, Any]]] = {store.resource_version: {}}
    for op in ops:
        apply(store, op, model)
        states[store.resource_version] = dict(model)

    for rv, expected in states.items():
        if rv < store.compacted_rv:
            continue
        got = dict(store.items(CONFIGMAPS, at=rv))
        assert got == expected, f"state at {rv}"
        assert list(got) == sorted(got)
    assert dict(store.items(CONFIGMAPS)) == model
    # Every event still kept is the write at its RV, oldest first and contiguous.
    kept = [store.event_at(rv) for rv in range(store.compacted_rv + 1, store.resource_version + 1)]
    assert all(event is not None for event in kept)
    if history_limit is not None:
        assert len(kept) <= history_limit


@settings(max_examples=60, deadline=None)
@given(
    ops=st.lists(operation.filter(lambda op: op[0] != "compact"), max_size=25),
    limit=st.integers(1, 5),
    namespace=st.sampled_from([None, "default"]),
)
def test_paging_yields_the_snapshot_whole(
    ops: list[tuple[str, str, str, int]], limit: int, namespace: str | None
) -> None:
    store = new_store(None)
    model: dict[str, dict[str, Any]] = {}
    for op in ops:
        apply(store, op, model)
    expected = [
        obj
        for key, obj in sorted(model.items())
        if namespace is None or key.startswith(f"{namespace}/")
    ]

    async def page_through() -> list[dict[str, Any]]:
        lister = Lister(store, too_large_wait=0.0)
        items: list[dict[str, Any]] = []
        token = ""
        snapshot_rv = None
        while True:
            options = ListOptions(limit=limit, continue_token=token)
            page = await lister.list(CONFIGMAPS, namespace, options, Selection())
            snapshot_rv = snapshot_rv or page.resource_version
            assert page.resource_version == snapshot_rv
            assert len(page.items) <= limit
            items.extend(page.items)
            # Writes between pages must not show up in this snapshot.
            apply(store, ("write", "default", "a", 9), {})
            if page.continue_token is None:
                return items
            token = page.continue_token

    assert asyncio.run(page_through()) == expected
