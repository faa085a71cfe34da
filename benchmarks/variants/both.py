"""``listwatch mirror`` with both changes: lean imports and bounded reads.

``lean_imports.install()`` must run before anything imports ``listwatch`` (its
``connect`` module imports kubernetes_asyncio), so ``bounded_reads`` is imported after it.
"""

from __future__ import annotations

import sys

from benchmarks.variants import lean_imports


def main() -> None:
    lean_imports.install()
    from benchmarks.variants import bounded_reads  # noqa: PLC0415
    from listwatch._kube import resource as apiclient  # noqa: PLC0415

    apiclient.ResourceClient._chunks = bounded_reads._bounded_chunks  # type: ignore[method-assign]
    from listwatch.cli import main as cli_main  # noqa: PLC0415

    sys.exit(cli_main(sys.argv[1:]))


if __name__ == "__main__":
    main()
