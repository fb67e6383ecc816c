"""Serving benchmarks (load generation, metrics, reports) and the toolkit's own performance benchmarks."""
