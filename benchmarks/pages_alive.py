"""How many LIST pages are alive while a paged snapshot is consumed.

``python -m benchmarks.pages_alive [--pods N]``.

A streamed snapshot must hold one page at a time. This check consumes a paged snapshot as
the SQLite sink does (``async for page in snapshot.pages()``) against the benchmark's
cluster server, and after each page counts the ``Page`` objects the garbage collector can
see, and whether the *first* page is among them. Expected: 1 (the page in hand), or 2 while
the next is fetched. Measured on the commit this was written for: 2 at every page, one of
them the first page, kept by the ``first`` free variable of ``open_paged_list``'s
``pages()`` closure (``src/listwatch/loop.py``) until the snapshot is closed.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os

from benchmarks import memory


async def count_pages(url: str, token: str, page_size: int) -> list[tuple[int, int, bool]]:
    """``(page number, Page objects alive, first page alive)`` after each page."""
    from kubernetes_asyncio.client import ApiClient, Configuration  # noqa: PLC0415

    from listwatch._backoff import Backoff  # noqa: PLC0415
    from listwatch._models import Page, Snapshot  # noqa: PLC0415
    from listwatch._reflector import open_paged_list  # noqa: PLC0415
    from listwatch._source import ListWatch  # noqa: PLC0415

    configuration = Configuration(
        host=url, api_key={"BearerToken": token}, api_key_prefix={"BearerToken": "Bearer"}
    )
    seen: list[tuple[int, int, bool]] = []
    async with ApiClient(configuration=configuration) as api:
        source = ListWatch.from_client(api, "pods", version="v1")
        listing = await open_paged_list(source, page_size=page_size, backoff=Backoff())
        async with listing:
            snapshot = Snapshot(listing.pages, resource_version=listing.resource_version)
            first_key = ""
            async for items in snapshot.pages():
                first_key = first_key or items[0].key
                gc.collect()
                pages = [o for o in gc.get_objects() if type(o) is Page]
                alive = len(pages)
                has_first = any(p.items and p.items[0].key == first_key for p in pages)
                del pages  # or this list would keep them alive into the next count
                seen.append((snapshot.count // page_size, alive, has_first))
    return seen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--pods", type=int, default=10_000)
    parser.add_argument("--page-size", type=int, default=500)
    args = parser.parse_args()
    with memory.cluster_server(args.pods) as server:
        os.environ.pop("BENCH_TOKEN", None)
        seen = asyncio.run(
            count_pages(f"{server.url}/cluster{args.pods}", server.token, args.page_size)
        )
    for number, alive, has_first in seen:
        print(f"consuming page {number:4}: {alive} Page objects alive; first page: {has_first}")
    worst = max(alive for _, alive, _ in seen)
    pinned = all(has_first for _, _, has_first in seen)
    print(f"at most {worst} pages alive; the first page alive throughout: {pinned}")


if __name__ == "__main__":
    main()
