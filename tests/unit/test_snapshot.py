"""The Snapshot stream's contract, without a server: single pass, pages, RV, failures."""

from __future__ import annotations

from collections.abc import AsyncIterator

import orjson
import pytest

from listwatch import Item, Page, ResourceExpired, Snapshot


def configmap(name: str, rv: int) -> dict[str, object]:
    return {
        "kind": "ConfigMap",
        "apiVersion": "v1",
        "metadata": {"name": name, "namespace": "default", "resourceVersion": str(rv)},
    }


def raw_item(name: str, rv: int) -> Item:
    data = orjson.dumps(configmap(name, rv))
    return Item(f"default/{name}", str(rv), raw=data)


async def test_items_arrive_in_order_and_the_count_follows() -> None:
    snapshot = Snapshot.of([raw_item(f"c{i}", i) for i in range(5)], "9", page_size=2)
    seen = []
    async for item in snapshot:
        seen.append(item.key)
        assert not snapshot.complete
    assert seen == [f"default/c{i}" for i in range(5)]
    assert snapshot.complete
    assert (snapshot.count, len(snapshot)) == (5, 5)


async def test_pages_keep_their_size() -> None:
    snapshot = Snapshot.of([configmap(f"c{i}", i) for i in range(5)], "9", page_size=2)
    assert [len(page) async for page in snapshot.pages()] == [2, 2, 1]


async def test_a_snapshot_can_be_read_only_once() -> None:
    snapshot = Snapshot.of([configmap("a", 1)], "1")
    assert await snapshot.collect() == [configmap("a", 1)]
    with pytest.raises(RuntimeError, match="single-pass"):
        snapshot.pages()
    with pytest.raises(RuntimeError, match="single-pass"):
        aiter(snapshot)


async def test_the_length_is_unknown_until_the_end() -> None:
    snapshot = Snapshot.of([configmap("a", 1)], "1")
    with pytest.raises(TypeError, match="read to its end"):
        len(snapshot)


async def test_an_empty_snapshot_is_complete_once_read() -> None:
    snapshot = Snapshot.of([], "7")
    assert not snapshot.complete
    assert [item async for item in snapshot] == []
    assert snapshot.complete
    assert snapshot.resource_version == "7"


async def test_a_streamed_snapshot_learns_its_resource_version_from_the_last_page() -> None:
    async def pages() -> AsyncIterator[Page]:
        yield Page([raw_item("a", 3)], "")
        yield Page([raw_item("b", 5)], "")
        yield Page([], "12")  # the initial-events-end bookmark's RV

    snapshot = Snapshot(pages())
    assert snapshot.resource_version == ""
    assert [item.key async for item in snapshot] == ["default/a", "default/b"]
    assert snapshot.resource_version == "12"


async def test_a_list_error_comes_out_of_the_iteration_and_is_recorded() -> None:
    async def pages() -> AsyncIterator[Page]:
        yield Page([raw_item("a", 3)], "4", "token")
        raise ResourceExpired(410, "Expired", "continue token too old")

    snapshot = Snapshot(pages(), resource_version="4")
    read = []

    async def read_all() -> None:
        async for item in snapshot:
            read.append(item.key)

    with pytest.raises(ResourceExpired):
        await read_all()
    assert read == ["default/a"]
    assert isinstance(snapshot.failure, ResourceExpired)
    assert not snapshot.complete


async def test_items_stay_bytes_until_read() -> None:
    item = raw_item("a", 3)
    assert not item.decoded
    assert item.json == orjson.dumps(configmap("a", 3))
    assert not item.decoded
    assert item.object["metadata"]["name"] == "a"
    assert item.decoded


async def test_a_transform_shapes_both_the_object_and_its_json() -> None:
    def drop_kind(obj: dict[str, object]) -> dict[str, object]:
        return {k: v for k, v in obj.items() if k != "kind"}

    item = raw_item("a", 3).with_transform(drop_kind)
    assert "kind" not in item.object
    assert orjson.loads(item.json) == item.object


async def test_a_spliced_prefix_makes_one_valid_object() -> None:
    item = Item("default/a", "3", raw=b'{"metadata":{"name":"a"}}', prefix=b'{"kind":"Pod",')
    assert item.json == b'{"kind":"Pod","metadata":{"name":"a"}}'
    assert item.object == {"kind": "Pod", "metadata": {"name": "a"}}


async def test_bad_json_names_the_object_not_its_content() -> None:
    item = Item("default/secret", "3", raw=b'{"data":{"password":"hunter2"')
    with pytest.raises(ValueError, match="default/secret") as caught:
        _ = item.object
    assert "hunter2" not in str(caught.value)
