"""pytest plugin: the ``fake_apiserver`` fixture. Opt in from your top-level conftest.py::

    pytest_plugins = ["listwatch.testing.pytest_plugin"]

It is not an installed entry point (``pytest11``): one would load it into every pytest run
of everyone who installs listwatch, whether they test against the fake server or not, and
tie their test runs to this plugin's imports. Opting in keeps it where it is asked for.

The fixture yields a running :class:`~listwatch.testing.FakeApiServer` and stops it after
the test. Options go through a marker::

    @pytest.mark.fake_apiserver(history_limit=10, bookmark_interval=0.1)
    async def test_relist(fake_apiserver): ...

Markers at every level apply (a module's ``pytestmark``, a class, the test), the closest
one winning for a keyword they share.

The plugin imports nothing heavy at load time (the server is imported when the fixture
first runs), and picks the async runner at configure time: pytest-asyncio's fixture when
that plugin is active (with its strict mode, mark the tests ``@pytest.mark.asyncio``),
otherwise a plain async fixture that anyio's pytest plugin (in the ``testing`` extra) runs
in ``@pytest.mark.anyio`` tests.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from listwatch.testing._server import FakeApiServer

__all__ = ["pytest_configure"]

MARKER = "fake_apiserver"


async def _running_server(request: pytest.FixtureRequest) -> AsyncIterator[FakeApiServer]:
    from listwatch.testing._server import FakeApiServer  # noqa: PLC0415 - lazy: keep pytest startup light

    # Every fake_apiserver marker applies (module, class, function), the closest winning.
    kwargs: dict[str, Any] = {}
    for marker in reversed(list(request.node.iter_markers(MARKER))):
        kwargs.update(marker.kwargs)
    async with FakeApiServer(**kwargs) as server:
        yield server


class _AnyioFixtures:
    """The fixture for runs without pytest-asyncio (anyio runs async fixtures)."""

    @pytest.fixture(name="fake_apiserver")
    async def fake_apiserver(self, request: pytest.FixtureRequest) -> AsyncIterator[FakeApiServer]:
        async for server in _running_server(request):
            yield server


def _asyncio_fixtures() -> object:
    """The fixture for runs with pytest-asyncio, built only when that plugin is active."""
    import pytest_asyncio  # noqa: PLC0415 - only when that plugin is active

    class _AsyncioFixtures:
        @pytest_asyncio.fixture(name="fake_apiserver")
        async def fake_apiserver(
            self, request: pytest.FixtureRequest
        ) -> AsyncIterator[FakeApiServer]:
            async for server in _running_server(request):
                yield server

    return _AsyncioFixtures()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(**kwargs): keyword arguments for the FakeApiServer of the "
        "fake_apiserver fixture",
    )
    if config.pluginmanager.has_plugin("asyncio"):
        fixtures = _asyncio_fixtures()
    else:
        fixtures = _AnyioFixtures()
    config.pluginmanager.register(fixtures, "listwatch-fake-apiserver-fixture")
