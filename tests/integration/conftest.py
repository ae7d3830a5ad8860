"""The real libvirtd and Prometheus fixtures are registered once for the session in tests/conftest.py."""
