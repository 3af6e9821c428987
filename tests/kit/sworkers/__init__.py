"""A corpus of sworker modules with known verdicts (see tests/kit/corpus.py for the table).

- ``good_server`` and ``good_backendless`` are conformant; so are the shapes sworker
  authors write elsewhere: ``chem_*`` (a server run by a trio nursery, by
  ``anyio.open_process``, or by ``subprocess`` in threads), ``cloud_sdk_backendless``
  (a sync SDK configured at import), ``seed_example`` (the documentation page's
  shape, with its cleanup in ``finally:``), ``good_one_job`` (a server that runs one
  job at a time) and ``r09_slow_start`` (slow to start, within the default limit).
- Every ``rNN_*`` module breaks rule NN of the kit in one way and is otherwise one of
  the good ones; ``x_*`` modules keep the kit from judging at all.

They import by dotted name (``tests.kit.sworkers.<module>``) with the template's
root on ``sys.path``; their server (``echo_server.py``) runs by file path, from anywhere.
"""
