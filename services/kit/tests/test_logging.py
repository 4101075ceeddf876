import io
import json
import logging

import pytest
from opentelemetry.sdk.trace import TracerProvider

from emporium.kit.logging import JsonFormatter

pytestmark = pytest.mark.unit


def test_lines_inside_a_span_carry_its_trace_and_span_ids() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter("catalog", "test"))
    logger = logging.getLogger("test.logging")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("work") as span:
        logger.info("reserved stock", extra={"order_id": "o-1"})
    logger.info("outside")
    inside, outside = (json.loads(line) for line in stream.getvalue().splitlines())
    context = span.get_span_context()
    assert inside["trace_id"] == format(context.trace_id, "032x")
    assert inside["span_id"] == format(context.span_id, "016x")
    assert inside["service"] == "catalog"
    assert inside["level"] == "info"
    assert inside["order_id"] == "o-1"
    assert "trace_id" not in outside
