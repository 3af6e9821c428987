"""Sworker conformance kit: does real Grain run this specialized worker module?

A generic, self-contained pytest plugin. It drives any sworker module by its
dotted name the way Grain 0.17 does (trio, task-group start, msgpack'd fields,
teardown by cancellation) and fails with the number of the contract rule that
was broken, what was seen and how to fix it. Run it on its own with
``pytest tests/sworker_conformance`` or ``pytest -m conformance``, and on
another module with ``pytest tests/sworker_conformance --sworker some.module``.

This folder is copied verbatim into every generated package: change it in the
template, not here.
"""

from .rules import RULES, ContractViolation, Rule

__all__ = ["RULES", "ContractViolation", "Rule"]
