"""Benchmarks: the product measured against raw baselines, side by side in one run (bench/README.md)."""
