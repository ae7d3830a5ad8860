"""autoscaler: scales groups of KVM instances cloned from golden images, driven by YAML policies."""

__version__ = "0.1.0"
