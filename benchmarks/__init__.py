"""listwatch's benchmark harness: ``nox -s bench`` or ``python -m benchmarks``.

``payloads`` builds realistic pods, ``server`` serves them pre-serialized from its own
process, ``clients`` is one measured client run per process, ``run`` drives it all and
writes ``results/``.
"""
