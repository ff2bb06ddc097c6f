"""Methods of the shared test application.

With ``TOTO_TEST_MEMORY_SPANS=1`` the application sets its own OpenTelemetry tracer
provider with an in-memory exporter, as an application may; ``spans`` answers what it
holds (the toto-otel tests).
"""

import os

if os.environ.get("TOTO_TEST_MEMORY_SPANS") == "1":
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    MEMORY_SPANS = InMemorySpanExporter()
    _provider = TracerProvider()
    _provider.add_span_processor(SimpleSpanProcessor(MEMORY_SPANS))
    trace.set_tracer_provider(_provider)
