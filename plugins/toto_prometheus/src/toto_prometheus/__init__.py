"""Prometheus metrics for Toto servers (see README.md); the hooks are in ``toto_prometheus.plugin``."""

__version__ = "0.1.0"
