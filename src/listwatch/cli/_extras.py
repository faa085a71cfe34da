"""Which optional dependencies a command needs, checked before it does anything.

``pip install .`` installs listwatch without extras, and then ``listwatch --help``,
``--version`` and every command's ``--help`` must still work: nothing on the way to the
argument parser imports an optional dependency. A command that needs one says so up front,
in one line naming the extra, before it connects to a cluster or creates a file: finding out
after the kubeconfig was read, or leaving an empty SQLite file behind, would waste the
user's time. The modules that use these dependencies import them where they run, and raise
``ImportError`` with the same advice should one be reached another way.
"""

from __future__ import annotations

import argparse
import importlib.util
from collections.abc import Sequence

from listwatch.cli._runtime import CliError

EXTRA = "cli"
INSTALL = "python -m pip install '.[cli]' in a clone of listwatch"

# (command, the option that needs them or None for the command itself) -> modules.
_NEEDS: dict[tuple[str, str | None], tuple[str, ...]] = {
    # The demo mirrors into SQLite from a fake API server it serves over HTTPS.
    ("demo", None): ("aiosqlite", "trustme"),
    ("mirror", "sqlite"): ("aiosqlite",),
    ("mirror", "postgres"): ("asyncpg",),
    ("receiver", "sqlite"): ("aiosqlite",),
    ("receiver", "postgres"): ("asyncpg",),
    # The fake API server over HTTPS makes its own CA, and applies kubectl's JSON patches.
    ("fake-cluster", None): ("trustme", "jsonpatch"),
}


def installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def check_extras(args: argparse.Namespace) -> None:
    """Raise ``CliError`` naming the extra when what ``args`` asks for is not installed."""
    for (command, option), modules in _NEEDS.items():
        if args.command != command:
            continue
        if option is not None and getattr(args, option, None) is None:
            continue
        missing = [module for module in modules if not installed(module)]
        if missing:
            raise CliError(missing_line(option, missing))


def missing_line(option: str | None, missing: Sequence[str]) -> str:
    """``--sqlite needs the 'cli' extra (aiosqlite is not installed): ...``; printed after
    ``listwatch COMMAND: error:``."""
    what = f"--{option}" if option else "this command"
    names = ", ".join(missing)
    verb = "is" if len(missing) == 1 else "are"
    return f"{what} needs the {EXTRA!r} extra ({names} {verb} not installed): {INSTALL}"
