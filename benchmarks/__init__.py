"""Benchmarks of islandora_job and its pytest fixtures against the C gearman tools.

`python -m benchmarks` (what `make bench` runs) prints one table and writes
bench-results.json; `python -m benchmarks --help` lists the options.
"""
