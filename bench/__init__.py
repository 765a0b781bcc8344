"""Benchmarks: each module runs one scenario on this machine and prints what it measured."""
