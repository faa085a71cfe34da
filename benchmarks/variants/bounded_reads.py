"""``listwatch mirror`` with ``ResourceClient._chunks`` reading at most 256 KiB per call."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator

import aiohttp

from listwatch._kube import resource as apiclient
from listwatch.errors import ConnectionLost, WatchIdle


async def _bounded_chunks(
    self: apiclient.ResourceClient, response: aiohttp.ClientResponse, *, what: str
) -> AsyncIterator[bytes]:
    """``apiclient.ResourceClient._chunks`` with ``read(_READ_CHUNK)`` for ``readany()``."""
    content = response.content
    while True:
        try:
            chunk = await content.read(apiclient._READ_CHUNK)
        except TimeoutError:
            raise WatchIdle(f"{what}: no data for too long") from None
        except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError, OSError) as exc:
            raise ConnectionLost(f"{what}: {type(exc).__name__}") from None
        if not chunk:
            return
        yield chunk


def main() -> None:
    apiclient.ResourceClient._chunks = _bounded_chunks  # type: ignore[method-assign]
    from listwatch.cli import main as cli_main  # noqa: PLC0415

    sys.exit(cli_main(sys.argv[1:]))


if __name__ == "__main__":
    main()
