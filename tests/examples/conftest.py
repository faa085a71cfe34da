"""Fixtures for the example tests: each example runs against a ``FakeApiServer`` over HTTP.

The examples are scripts in ``examples/``, not a package: ``load_example`` imports one from
its file under a private module name (``examples/operator_loop.py`` run as ``operator`` would
shadow the standard library's ``operator``, which is why it is not called that).
"""

from __future__ import annotations
