"""``--trace-config mode=opentelemetry``: finished traces as OpenTelemetry spans,
exported over OTLP/HTTP with a batch span processor (the optional ``otel`` extra:
opentelemetry-sdk and opentelemetry-exporter-otlp-proto-http).

Spans as Triton makes them: one root ``InferRequest`` span per trace (the child of
the request's ``traceparent`` context when it came with one, keeping its
``tracestate``), a span named after
the model per request (an ensemble step's under its ensemble's), and a ``compute``
span under each executed request; every timestamp is an event on its span (the
frontend's receive and send stamps and INFER_RESPONSE_COMPLETE on the root span).
Timestamps come from the core's monotonic clock and are moved to wall-clock time
with one offset taken at start.

The trace id and the ids of the root and model spans are the core's, chosen when
the request was sampled (trace.h): a python model was told its span's context
(``request.trace().get_context()``) while it ran, long before its spans are made
here, so that the spans it makes itself are children of the one exported for it.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from tritonx.errors import InvalidArgumentError
from tritonx.tracing.settings import Setting, TraceConfig

_COMPUTE = {"COMPUTE_START", "COMPUTE_INPUT_END", "COMPUTE_OUTPUT_START", "COMPUTE_END"}
_REQUEST = {"REQUEST_START", "QUEUE_START", "REQUEST_END"}
# The frontend's stamps: events of the root InferRequest span, as in Triton.
_FRONTEND = {
    "HTTP_RECV_START",
    "HTTP_RECV_END",
    "HTTP_SEND_START",
    "HTTP_SEND_END",
    "GRPC_WAITREAD_START",
    "GRPC_WAITREAD_END",
    "GRPC_SEND_START",
    "GRPC_SEND_END",
    "INFER_RESPONSE_COMPLETE",
}


def _preset_ids() -> Any:
    """The SDK's random id generator, but handing out the id set for the next
    span (and trace) when there is one: the core's. Per thread (the trace writer
    has one). A subclass, so that it answers whatever else the SDK asks of its
    generator (made here: the SDK is an optional extra)."""
    from opentelemetry.sdk.trace.id_generator import RandomIdGenerator

    class PresetIds(RandomIdGenerator):
        def __init__(self) -> None:
            self._next = threading.local()

        def preset(self, span_id: int, trace_id: int = 0) -> None:
            self._next.span_id = span_id
            self._next.trace_id = trace_id

        def generate_span_id(self) -> int:
            preset, self._next.span_id = getattr(self._next, "span_id", 0), 0
            return preset or super().generate_span_id()

        def generate_trace_id(self) -> int:
            preset, self._next.trace_id = getattr(self._next, "trace_id", 0), 0
            return preset or super().generate_trace_id()

    return PresetIds()


class OtelSink:
    """Exports each finished trace; thread safe (the SDK's processor is)."""

    def __init__(self, config: TraceConfig, exporter: Any = None) -> None:
        try:
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor
            from opentelemetry.sdk.trace.sampling import ALWAYS_ON
            from opentelemetry.trace.propagation.tracecontext import (
                TraceContextTextMapPropagator,
            )
        except ImportError:
            raise InvalidArgumentError(
                "--trace-config mode=opentelemetry needs the OpenTelemetry SDK: "
                "pip install 'tritonx[otel]'"
            ) from None
        if exporter is None:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
                OTLPSpanExporter,
            )

            exporter = OTLPSpanExporter(endpoint=config.url)
        attributes = {"service.name": "triton-inference-server"}
        attributes.update(config.resource)
        self._ids = _preset_ids()
        # Always on, as Triton's provider: a request is traced by the trace rate or
        # because it came with a context, never dropped for its caller's unsampled
        # flag; its spans keep the caller's tracestate (the sampler hands it on).
        self._provider = TracerProvider(
            resource=Resource.create(attributes),
            id_generator=self._ids,
            sampler=ALWAYS_ON,
        )
        processor = BatchSpanProcessor(
            exporter,
            max_queue_size=config.bsp.get("bsp_max_queue_size", 2048),
            schedule_delay_millis=config.bsp.get("bsp_schedule_delay", 5000),
            max_export_batch_size=config.bsp.get("bsp_max_export_batch_size", 512),
        )
        self._provider.add_span_processor(processor)
        self._tracer = self._provider.get_tracer("triton-server")
        self._propagator = TraceContextTextMapPropagator()
        self._offset = time.time_ns() - time.monotonic_ns()

    def register(self, setting: Setting) -> None:
        pass

    def write(
        self,
        setting_id: int,
        records: list[dict[str, Any]],
        parent: dict[str, str] | None = None,
        otel_ids: tuple[str, int] | None = None,
    ) -> None:
        from opentelemetry import trace

        stamps = [ns for r in records for _, ns in r["timestamps"]]
        if not stamps:
            return
        wall = self._offset
        # The W3C headers the request came with (the core checked the tracestate
        # by the propagator's rule, as it told the model).
        context = self._propagator.extract(parent) if parent else None
        if otel_ids is not None:
            # The trace id is used only when no valid traceparent came (the core
            # took the traceparent's by the SDK's rule otherwise).
            self._ids.preset(otel_ids[1], int(otel_ids[0], 16))
        root = self._tracer.start_span(
            "InferRequest",
            context=context,
            kind=trace.SpanKind.SERVER,
            start_time=min(stamps) + wall,
        )
        root_context = trace.set_span_in_context(root)
        spans: dict[int, Any] = {}
        # Parents before their children: a trace id is taken when its request is
        # sampled or spawned, so a parent's is always the smaller (children are
        # queued in the order they finished).
        records = sorted(records, key=lambda r: int(r["id"]))
        for record in records:
            parent = spans.get(record["parent_id"])
            ctx = trace.set_span_in_context(parent) if parent else root_context
            own = [
                (n, ns)
                for n, ns in record["timestamps"]
                if n not in _COMPUTE and n not in _FRONTEND
            ]
            for name, ns in record["timestamps"]:
                if name in _FRONTEND and not record["parent_id"]:
                    root.add_event(name, timestamp=ns + wall)
            # The model's span covers its own stamps (the root span the frontend's).
            inner = [ns for n, ns in record["timestamps"] if n not in _FRONTEND]
            start = min(inner, default=min(stamps))
            self._ids.preset(record.get("span_id", 0))
            span = self._tracer.start_span(
                record["model_name"],
                context=ctx,
                kind=trace.SpanKind.SERVER,
                start_time=start + wall,
            )
            span.set_attribute("triton.model_name", record["model_name"])
            span.set_attribute("triton.model_version", record["model_version"])
            span.set_attribute("triton.trace_id", record["id"])
            span.set_attribute("triton.trace_parent_id", record["parent_id"])
            if record["request_id"]:
                span.set_attribute("triton.request_id", record["request_id"])
            for name, ns in own:
                span.add_event(name, timestamp=ns + wall)
            compute = [(n, ns) for n, ns in record["timestamps"] if n in _COMPUTE]
            if compute:
                child = self._tracer.start_span(
                    "compute",
                    context=trace.set_span_in_context(span),
                    kind=trace.SpanKind.SERVER,
                    start_time=compute[0][1] + wall,
                )
                for name, ns in compute:
                    child.add_event(name, timestamp=ns + wall)
                child.end(end_time=compute[-1][1] + wall)
            spans[record["id"]] = span
        for record in reversed(records):
            span = spans[record["id"]]
            inner = [ns for n, ns in record["timestamps"] if n not in _FRONTEND]
            end = max(inner, default=max(stamps))
            span.end(end_time=end + wall)
        root.end(end_time=max(stamps) + wall)

    def close(self) -> None:
        self._provider.shutdown()  # flushes the batch processor
