"""Benchmarks: each module runs as a script (`python bench/<name>.py`) and prints its tables."""
