"""Benchmark kit for the gateway: ``python -m bench run [--quick]``.

See docs/benchmarks.md for the scenarios, how to run them and the figures.
"""
