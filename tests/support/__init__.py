"""Helpers the tests and the benchmarks share (`tests.support.<module>`; run from the
checkout, which pytest and `python -m bench.<name>` put on sys.path)."""
