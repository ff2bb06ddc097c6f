"""OpenTelemetry tracing for Toto servers (see README.md); the hooks are in ``toto_otel.plugin``."""

__version__ = "0.1.0"
