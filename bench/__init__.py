"""Benchmarks: each runs its own baseline in the same run and reports a ratio."""
