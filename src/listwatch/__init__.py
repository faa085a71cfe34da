"""listwatch: keep a downstream system in sync with Kubernetes objects.

A full LIST goes to ``on_list`` as one snapshot; watch events are merged by key and go to
``on_batch``; any error starts a new generation from a fresh LIST.
"""

from __future__ import annotations

__version__ = "0.1.0"
