"""Ready-made receivers: pass a sink's ``on_list`` and ``on_batch`` to a ``Syncer``.

``listwatch.sinks.sqlite.SQLiteSink`` mirrors a resource into an SQLite file (it needs the
``sqlite`` extra: ``python -m pip install '.[sqlite]'`` in a clone of listwatch). Sinks are
imported from their own modules, so this package does not pull in the optional dependencies
of every sink.
"""

__all__: list[str] = []
