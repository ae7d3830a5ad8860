"""Tests of what `make install` and `make deb` deliver."""
