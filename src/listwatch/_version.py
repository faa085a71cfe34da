"""listwatch's version, and the User-Agent every request to kube-apiserver carries.

The User-Agent is how an API server's audit log and its Priority and Fairness rules tell
one client from another (client-go sends ``<binary>/<version> (<os>/<arch>)
kubernetes/<commit>``); kubernetes_asyncio's default names only the generator of its code.
"""

from __future__ import annotations

import platform
import sys
from importlib import metadata

__all__ = ["USER_AGENT", "__version__"]

__version__ = "0.1.0"
"""Kept equal to ``pyproject.toml``'s version (a test holds them together)."""


def _user_agent() -> str:
    try:
        client = f" kubernetes_asyncio/{metadata.version('kubernetes_asyncio')}"
    except metadata.PackageNotFoundError:  # vendored or renamed: the rest still says who
        client = ""
    system = f"{platform.system().lower()}/{platform.machine().lower() or 'unknown'}"
    python = "python/" + ".".join(map(str, sys.version_info[:3]))
    return f"listwatch/{__version__} ({system}; {python}){client}"


USER_AGENT = _user_agent()
"""``listwatch/0.1.0 (linux/x86_64; python/3.11.7) kubernetes_asyncio/36.1.0``."""
