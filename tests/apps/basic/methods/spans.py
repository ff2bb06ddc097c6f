"""Answers the finished spans of the in-memory exporter (TOTO_TEST_MEMORY_SPANS=1) and forgets them."""

import methods


def invoke(handler, parameters):
    exporter = methods.MEMORY_SPANS
    spans = exporter.get_finished_spans()
    exporter.clear()
    return [
        {
            "name": span.name,
            "kind": span.kind.name,
            "trace_id": format(span.context.trace_id, "032x"),
            "span_id": format(span.context.span_id, "016x"),
            "parent_id": format(span.parent.span_id, "016x") if span.parent else None,
            "status": span.status.status_code.name,
            "attributes": dict(span.attributes or {}),
        }
        for span in spans
    ]
