"""Variants of ``listwatch mirror`` for the memory benchmark's A/B experiments.

Each module here runs the unchanged CLI (``listwatch.cli.main``) after one change made from
the outside, to measure what a change to the library *would* save before anyone makes it:

* ``bounded_reads``: ``ResourceClient._chunks`` reads at most ``_READ_CHUNK`` (256 KiB) per
  call instead of ``readany()``, which hands back everything aiohttp has buffered (up to
  4 MiB: kubernetes_asyncio's session uses ``read_bufsize=2**21``), joined into one copy.
* ``lean_imports``: kubernetes_asyncio's package ``__init__`` modules are not run, so its
  ~800 model classes and ~60 API classes are never imported; only ``Configuration``,
  ``ApiClient``, ``rest`` and ``config`` load, which is all listwatch uses.

They reach into private names of listwatch and kubernetes_asyncio on purpose: evidence,
not a way to run the mirror. ``python -m benchmarks.memory --variants`` runs them.
"""
