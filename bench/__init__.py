"""Bayport's benchmarks: measuring tools that print tables, never timed assertions."""
