"""Tests of the conformance kit itself: a corpus of sworker modules with known verdicts."""
