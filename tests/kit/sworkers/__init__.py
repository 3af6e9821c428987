"""A corpus of sworker modules with known verdicts (see tests/kit/corpus.py for the table).

``good_server`` and ``good_backendless`` are conformant; every ``rNN_*`` module
breaks rule NN of the kit in one way and is otherwise one of the two good ones.
They import by dotted name (``tests.kit.sworkers.<module>``) with the template's
root on ``sys.path``; their server runs by file path, from anywhere.
"""
