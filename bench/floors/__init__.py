"""Floors for the benchmarks: the least a sworker can cost on real Grain."""
