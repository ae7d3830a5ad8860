"""The self-contained demo: a replayed office day to scale against, served by real guests where it can be."""
