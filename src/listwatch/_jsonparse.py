"""JSON parsing with the cyclic garbage collector paused for the parse.

Parsing one LIST page builds tens of thousands of dicts and lists at once. Each allocation
counts towards CPython's generation-0 threshold, so the collector runs again and again
*during* the parse, and every pass also walks the pages parsed before: measured here, 50k
pods parse in 9.4 s with the collector running and in 2.9 s with it paused for each page's
``orjson.loads`` call. Pausing it for the length of one C call changes nothing else: no
Python code runs in between, and cycles made elsewhere are collected at the next pass.
"""

from __future__ import annotations

import gc
from typing import Any

import orjson


def loads(data: bytes | bytearray | memoryview | str) -> Any:
    """``orjson.loads`` without collector passes during the call."""
    if not gc.isenabled():
        return orjson.loads(data)
    gc.disable()
    try:
        return orjson.loads(data)
    finally:
        gc.enable()
