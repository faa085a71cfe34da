"""A "something changed" signal, so that everything waits on conditions instead of polling.

Watchers wait for the store to change, tests wait for a request to arrive or a watch to
start. The one implementation is ``listwatch._aio.Signal`` (a generic primitive, shared with
the core), re-exported here for the fake server's modules.
"""

from __future__ import annotations

from listwatch._aio import Signal

__all__ = ["Signal"]
