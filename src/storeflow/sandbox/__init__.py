"""Faithful simulators of every external system (a product feature: demo, tests, benchmarks)."""
