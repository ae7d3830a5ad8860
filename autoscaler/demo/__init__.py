"""The self-contained demo: a replayed office-day load to scale against, without any real service."""
