"""``listwatch mirror`` without kubernetes_asyncio's eager package imports.

``kubernetes_asyncio/client/__init__.py`` imports every API class and (through
``api_client``) ``client/models/__init__.py`` imports every model: ~36 MiB of RSS and ~1 s
of start-up that listwatch never uses (it parses raw JSON itself). Here those package
modules are replaced by empty packages with the real ``__path__`` before anything imports
them, so ``from kubernetes_asyncio.client import ApiClient, Configuration`` loads just those.
"""

from __future__ import annotations

import importlib.util
import sys
import types

_PACKAGES = {
    "kubernetes_asyncio": "",
    "kubernetes_asyncio.client": "/client",
    "kubernetes_asyncio.client.models": "/client/models",
    "kubernetes_asyncio.client.api": "/client/api",
}


def install() -> None:
    spec = importlib.util.find_spec("kubernetes_asyncio")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("kubernetes_asyncio is not installed")
    root = spec.submodule_search_locations[0]
    for name, sub in _PACKAGES.items():
        module = types.ModuleType(name)
        module.__path__ = [root + sub]
        sys.modules[name] = module
    client = sys.modules["kubernetes_asyncio.client"]
    from kubernetes_asyncio.client.configuration import Configuration  # noqa: PLC0415

    client.Configuration = Configuration  # type: ignore[attr-defined]
    from kubernetes_asyncio.client.api_client import ApiClient  # noqa: PLC0415

    client.ApiClient = ApiClient  # type: ignore[attr-defined]
    import kubernetes_asyncio.config  # noqa: F401, PLC0415


def main() -> None:
    install()
    from listwatch.cli import main as cli_main  # noqa: PLC0415

    sys.exit(cli_main(sys.argv[1:]))


if __name__ == "__main__":
    main()
