"""Benchmarks: `python -m bench.gas` measures the gas of every market operation."""
