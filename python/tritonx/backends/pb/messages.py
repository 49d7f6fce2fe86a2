"""pb_utils.InferenceRequest / InferenceResponse / InferenceResponseSender.

Requests handed to ``execute`` wrap the core's ``Request``; every accessor reads it
directly, so building the list costs a few attribute reads per request.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from tritonx.backends.pb import binding_args
from tritonx.backends.pb.errors import TritonError, TritonModelException
from tritonx.backends.pb.tensor import Tensor

TRITONSERVER_REQUEST_FLAG_SEQUENCE_START = 1
TRITONSERVER_REQUEST_FLAG_SEQUENCE_END = 2
TRITONSERVER_RESPONSE_COMPLETE_FINAL = 1
TRITONSERVER_REQUEST_RELEASE_ALL = 1
TRITONSERVER_REQUEST_RELEASE_RESCHEDULE = 2
TRITONSERVER_MEMORY_CPU = 0
TRITONSERVER_MEMORY_CPU_PINNED = 1
TRITONSERVER_MEMORY_GPU = 2

# The one signature of Triton's bound constructor, for its TypeError.
_REQUEST_SIGNATURE = (
    "c_python_backend_utils.InferenceRequest(request_id: str = '', correlation_id: "
    "object = 0, inputs: List[triton::backend::python::PbTensor], "
    "requested_output_names: List[str], model_name: str, model_version: int = -1, "
    "flags: int = 0, timeout: int = 0, preferred_memory: "
    "c_python_backend_utils.PreferredMemory = PreferredMemory(), trace: "
    "c_python_backend_utils.InferenceTrace = InferenceTrace(), parameters: object = "
    "None)"
)


# (tritonx also takes ``parameters``, as later Triton releases do.)
_RESPONSE_SIGNATURE = (
    "c_python_backend_utils.InferenceResponse(output_tensors: "
    "List[c_python_backend_utils.Tensor] = [], error: "
    "c_python_backend_utils.TritonError = None, parameters: object = None)"
)


def _params_json(parameters: Mapping[str, Any] | str | None) -> str:
    if parameters is None:
        return "{}"
    if isinstance(parameters, str):
        json.loads(parameters)  # reject malformed JSON early, like Triton
        return parameters
    # Triton renders parameters compactly: {"a":1,"b":"x"}.
    return json.dumps(dict(parameters), separators=(",", ":"))


def _checked_parameters(parameters: Mapping[Any, Any]) -> dict[str, Any]:
    for key, value in parameters.items():
        if not isinstance(key, str):
            raise TritonModelException(
                f"Expect parameters keys to have type str, found type {type(key)}"
            )
        if not isinstance(value, bool | int | str):
            raise TritonModelException(
                "Expect parameters values to have type bool/int/str, found type "
                f"{type(value)}"
            )
    return dict(parameters)


class PreferredMemory:
    """Where BLS outputs should live: TRITONSERVER_MEMORY_CPU brings GPU outputs to
    the host; without one (or with GPU) they stay where the model produced them."""

    def __init__(
        self, preferred_memory_type: int, preferred_device_id: int = 0
    ) -> None:
        self.preferred_memory_type = preferred_memory_type
        self.preferred_device_id = preferred_device_id


class InferenceTrace:
    """Triton's trace handle. ``request.trace()`` of a request handed to
    ``execute`` refers to that request's trace (``triton_trace``: its trace id, 0
    when the request is not traced); a BLS request given it as ``trace=`` is traced
    as its child (Triton's ``parent_id``), as an ensemble step is."""

    def __init__(self, triton_trace: int = 0, trace_context: str = "") -> None:
        self.triton_trace = triton_trace
        self.trace_context = trace_context
        # The core request whose trace this is (in-process), else None.
        self._core: Any = None

    @classmethod
    def _of(cls, core: Any) -> InferenceTrace:
        from tritonx import _native

        if not isinstance(core, _native.Request):  # a stub process's lookalike
            return cls(
                int(getattr(core, "trace_id", 0)), getattr(core, "trace_context", "")
            )
        trace = cls(int(_native.trace_id(core)), _native.trace_context(core))
        if trace.triton_trace:
            trace._core = core
        return trace

    def get_context(self, mode: str = "opentelemetry") -> str | None:
        """The request's OpenTelemetry span context as Triton hands it to a model,
        JSON ``{"traceparent": "00-<trace id>-<span id>-01"}``: the span the server
        exports for this request, so that spans the model makes can be its
        children. None when the request is not traced or traces in Triton mode."""
        return self.trace_context or None


class InferenceResponse:
    """The result for one request: output tensors, or an error."""

    __slots__ = ("_error", "_parameters", "_tensors")

    def __init__(
        self,
        output_tensors: Sequence[Tensor] = (),
        error: TritonError | None = None,
        parameters: Mapping[str, Any] | str | None = None,
    ) -> None:
        # The common case (a list of tensors, nothing else) needs none of the
        # binding's checks below; they cost more than the rest of a response.
        if (
            type(output_tensors) is list
            and error is None
            and parameters is None
            and all(type(t) is Tensor for t in output_tensors)
        ):
            self._tensors = list(output_tensors)
            self._error = None
            self._parameters = "{}"
            return
        try:
            tensors = binding_args.sequence(output_tensors)
            if not all(t is None or isinstance(t, Tensor) for t in tensors):
                raise binding_args.Refused
            if error is not None and not isinstance(error, TritonError):
                raise binding_args.Refused
        except binding_args.Refused:
            given = {"output_tensors": output_tensors, "error": error}
            raise binding_args.incompatible(
                "__init__",
                _RESPONSE_SIGNATURE,
                ["kwargs: " + ", ".join(f"{k}={v!r}" for k, v in given.items())],
                constructor=True,
            ) from None
        if any(t is None for t in tensors):
            # The binding lets None through as an empty tensor pointer; Triton's
            # constructor then refuses it with these words.
            raise TritonModelException(
                "Output tensor for inference response should not be empty."
            )
        if isinstance(parameters, Mapping):
            # Refused here, with the request's words (as later Tritons' constructor
            # does), not when the response is sent.
            parameters = _checked_parameters(parameters)
        self._tensors = tensors
        self._error = error
        self._parameters = _params_json(parameters)

    @classmethod
    def _from_parts(
        cls, tensors: list[Tensor], error: TritonError | None, parameters: str
    ) -> InferenceResponse:
        """A response built by tritonx itself (BLS results): nothing to check."""
        self = cls.__new__(cls)
        self._tensors = tensors
        self._error = error
        self._parameters = parameters
        return self

    def output_tensors(self) -> list[Tensor]:
        return self._tensors

    def has_error(self) -> bool:
        return self._error is not None

    def error(self) -> TritonError | None:
        return self._error

    def parameters(self) -> str:
        return self._parameters


class _ResponseSlot:
    """The one response a non-decoupled request may produce through its sender.

    ``deliver`` hands a response to the core at once (in a stub process through its
    response stream), also after ``execute`` returned; ``response`` keeps it for the
    instance's bookkeeping. Thread-safety: the lock orders sends from the model's
    threads against each other and against the instance's bookkeeping."""

    __slots__ = ("closed", "deliver", "handed_over", "lock", "response", "sent")

    def __init__(self, deliver: SendFn) -> None:
        self.deliver = deliver
        self.response: InferenceResponse | None = None
        self.sent = 0  # sends that passed the checks, FINAL alone included (Triton)
        self.closed = False
        # execute returned and left this request to its sender
        self.handed_over = False
        self.lock = threading.Lock()

    def close(self) -> None:
        with self.lock:
            self.closed = True


def _check_send_arguments(response: InferenceResponse | None, flags: int) -> bool:
    """The checks of a send that come before the sender's state (Triton's order);
    returns whether the send is FINAL."""
    if response is not None and not isinstance(response, InferenceResponse):
        raise TypeError(
            "send(): expected a pb_utils.InferenceResponse, found type "
            f"'{type(response)}'"
        )
    if flags not in (0, TRITONSERVER_RESPONSE_COMPLETE_FINAL):
        raise TritonModelException(
            "Unable to send response. Unsupported flag provided."
        )
    if flags == 0 and response is None:
        raise TritonModelException(
            "Inference Response object must be provided when the response flags is "
            "set to zero."
        )
    return flags == TRITONSERVER_RESPONSE_COMPLETE_FINAL


class InferenceResponseSender:
    """``request.get_response_sender()``: in default (non-decoupled) mode a model
    may send exactly one response, with or followed by the FINAL flag, during
    ``execute`` or after it returned None for the request (Triton's rules and
    messages, in Triton's order of checks)."""

    __slots__ = ("_request", "_slot")

    def __init__(self, request: InferenceRequest, slot: _ResponseSlot) -> None:
        self._request = request
        self._slot = slot

    def send(self, response: InferenceResponse | None = None, flags: int = 0) -> None:
        final = _check_send_arguments(response, flags)
        slot = self._slot
        with slot.lock:
            if response is not None and slot.sent > 0:
                raise TritonModelException(
                    "Unable to send response. Non-decoupled model cannot send more "
                    "than one response."
                )
            if response is None and final and slot.sent == 0:
                message = (
                    "Unable to send response. Non-decoupled model cannot send "
                    "complete final before sending a response."
                )
                # Triton leaves the request unanswered for good here; nothing else
                # answers it once execute returned, so it gets this error.
                orphaned = slot.handed_over and not slot.closed
                slot.closed = slot.closed or orphaned
                if orphaned:
                    slot.deliver(InferenceResponse(error=TritonError(message)), True)
                raise TritonModelException(message)
            if slot.closed:
                raise TritonModelException(
                    "Unable to send response. Response sender has been closed."
                )
            slot.sent += 1
            slot.closed = final
            if response is None:
                return
            slot.response = response
        # The one response answers the request: it is final for the core even when
        # the model sends its FINAL flag afterwards.
        try:
            slot.deliver(response, True)
        except Exception as error:  # the core refused it (e.g. cancelled)
            raise TritonModelException(f"Unable to send response. {error}") from None

    def is_cancelled(self) -> bool:
        return self._request.is_cancelled()


# What a decoupled request's sender hands the core: (response or None, final).
SendFn = Callable[["InferenceResponse | None", bool], None]


class DecoupledResponseSender:
    """``request.get_response_sender()`` of a decoupled model: any number of
    responses, from ``execute`` or from any thread after it returned, then the FINAL
    flag (with a last response or alone). Each response leaves at once."""

    __slots__ = ("_request", "_send")

    def __init__(self, request: InferenceRequest, send: SendFn) -> None:
        self._request = request
        self._send = send

    def send(self, response: InferenceResponse | None = None, flags: int = 0) -> None:
        final = _check_send_arguments(response, flags)
        # Closed is the request's state: every sender of one request shares it.
        if self._request._decoupled_closed:
            raise TritonModelException(
                "Unable to send response. Response sender has been closed."
            )
        if final:
            self._request._decoupled_closed = True
        try:
            self._send(response, final)
        except Exception as error:  # the core refused it (e.g. sent after FINAL)
            raise TritonModelException(f"Unable to send response. {error}") from None

    def is_cancelled(self) -> bool:
        return self._request.is_cancelled()


class InferenceRequest:
    """A request: the ones passed to ``execute``, or one built by the model (BLS)."""

    __slots__ = (
        "_core",
        "_correlation_id",
        "_decoupled",
        "_decoupled_closed",
        "_flags",
        "_inputs",
        "_iterative",
        "_model_name",
        "_model_version",
        "_param_values",
        "_parameters",
        "_preferred_memory",
        "_release_flags",
        "_request_id",
        "_requested",
        "_send",
        "_slot",
        "_timeout",
        "_trace",
    )

    def __init__(
        self,
        request_id: str = "",
        correlation_id: int | str = 0,
        inputs: Sequence[Tensor] = binding_args.REQUIRED,
        requested_output_names: Sequence[str] = binding_args.REQUIRED,
        model_name: str = binding_args.REQUIRED,
        model_version: int = -1,
        flags: int = 0,
        timeout: int = 0,
        preferred_memory: PreferredMemory | None = None,
        trace: InferenceTrace | None = None,
        parameters: Mapping[str, Any] | str | None = None,
    ) -> None:
        try:
            request_id = binding_args.std_string(request_id)
            tensors = binding_args.sequence(inputs)
            if not all(t is None or isinstance(t, Tensor) for t in tensors):
                raise binding_args.Refused
            requested = binding_args.string_list(requested_output_names)
            model_name = binding_args.std_string(model_name)
            model_version = binding_args.integer(model_version)
            flags = binding_args.integer(flags)
            timeout = binding_args.integer(timeout)
            if correlation_id is None:  # the binding's object argument refuses None
                raise binding_args.Refused
        except binding_args.Refused:
            given = {
                "request_id": request_id,
                "correlation_id": correlation_id,
                "inputs": inputs,
                "requested_output_names": requested_output_names,
                "model_name": model_name,
                "model_version": model_version,
                "flags": flags,
                "timeout": timeout,
            }
            shown = [
                f"{k}={v!r}" for k, v in given.items() if v is not binding_args.REQUIRED
            ]
            raise binding_args.incompatible(
                "__init__",
                _REQUEST_SIGNATURE,
                ["kwargs: " + ", ".join(shown)],
                constructor=True,
            ) from None
        if any(t is None for t in tensors):
            # None passes the binding as an empty tensor pointer; Triton's
            # constructor refuses it with these words.
            raise TritonModelException(
                f"Input tensor for request with id '{request_id}' and model name "
                f"'{model_name}' should not be empty."
            )
        if not isinstance(correlation_id, int | str):
            raise TritonModelException("Correlation ID must be integer or string")
        if isinstance(correlation_id, bool):
            correlation_id = int(correlation_id)  # Triton reads True back as 1
        if isinstance(correlation_id, int) and not 0 <= correlation_id < 1 << 64:
            raise RuntimeError(
                "InferenceRequest(): correlation_id must be an unsigned 64-bit integer"
            )
        self._core: Any = None
        self._slot: _ResponseSlot | None = None
        self._send: SendFn | None = None
        self._decoupled = False
        self._decoupled_closed = False  # a decoupled sender sent FINAL
        self._request_id = request_id
        self._correlation_id = correlation_id
        self._inputs: list[Tensor] | None = tensors
        self._requested: set[str] = set(requested)
        self._model_name = model_name
        self._model_version = model_version
        self._flags = flags
        self._timeout = timeout
        # None: not given (outputs stay where the model produced them, as Triton).
        self._preferred_memory = preferred_memory
        self._trace: InferenceTrace | None = trace or InferenceTrace()
        self._param_values: dict[str, bool | int | str] | None = None
        if parameters is None or isinstance(parameters, Mapping):
            # As Triton's constructor: bool/int/str values, rendered by json.dumps.
            self._param_values = _checked_parameters(parameters or {})
            self._parameters: str | None = json.dumps(self._param_values)
        else:
            self._parameters = _params_json(parameters)
        self._release_flags = TRITONSERVER_REQUEST_RELEASE_ALL
        self._iterative = False

    @classmethod
    def _from_core(
        cls,
        core: Any,
        model_name: str,
        model_version: int,
        all_outputs: Sequence[str],
        send: SendFn,
        iterative: bool = False,
        decoupled: bool = False,
    ) -> InferenceRequest:
        """A request handed to ``execute``. ``send`` answers it through the core, for
        its response senders (during execute or after it returned); ``iterative`` is
        set for models with iterative sequences (which may reschedule)."""
        self = cls.__new__(cls)
        self._core = core
        self._iterative = iterative
        self._slot = None
        self._send = send
        self._decoupled = decoupled
        self._decoupled_closed = False
        self._request_id = core.id
        self._correlation_id = core.correlation_id
        self._inputs = None  # built on first use
        # Triton hands every model output to the model when none were requested.
        self._requested = set(core.requested_outputs or all_outputs)
        self._model_name = model_name
        self._model_version = model_version
        self._flags = core.flags
        self._timeout = core.timeout_us
        self._preferred_memory = None
        self._trace = None  # looked up on first use
        self._parameters = None  # rendered on first use
        self._param_values = None
        self._release_flags = TRITONSERVER_REQUEST_RELEASE_ALL
        return self

    def inputs(self) -> list[Tensor]:
        if self._inputs is None:
            self._inputs = [Tensor._from_core(t) for t in self._core.inputs]
        return self._inputs

    def request_id(self) -> str:
        return self._request_id

    def correlation_id(self) -> int | str:
        return self._correlation_id

    def flags(self) -> int:
        return self._flags

    def set_flags(self, flags: int) -> None:
        self._flags = int(flags)

    def timeout(self) -> int:
        return self._timeout

    def parameters(self) -> str:
        if self._parameters is None:
            self._parameters = _params_json(self._core.parameters)
        return self._parameters

    def _parameter_values(self) -> dict[str, Any]:
        """The parameters as a dict (what a BLS call hands the core)."""
        if self._param_values is not None:
            return self._param_values
        if self._core is not None and self._parameters is None:
            return dict(self._core.parameters)
        value = json.loads(self.parameters())
        return value if isinstance(value, dict) else {}

    def requested_output_names(self) -> set[str]:
        return self._requested

    def model_name(self) -> str:
        return self._model_name

    def model_version(self) -> int:
        return self._model_version

    def trace(self) -> InferenceTrace:
        if self._trace is None:
            self._trace = InferenceTrace._of(self._core)
        return self._trace

    def preferred_memory(self) -> PreferredMemory:
        return self._preferred_memory or PreferredMemory(TRITONSERVER_MEMORY_CPU)

    def _keeps_device_outputs(self) -> bool:
        preferred = self._preferred_memory
        return preferred is None or preferred.preferred_memory_type == (
            TRITONSERVER_MEMORY_GPU
        )

    def is_cancelled(self) -> bool:
        return bool(self._core is not None and self._core.is_cancelled())

    def set_release_flags(self, flags: int) -> None:
        """RESCHEDULE: run this request again in a later batch of its iterative
        sequence instead of answering it now (a non-decoupled model returns None
        as its response); RELEASE_ALL takes that back."""
        again = bool(flags & TRITONSERVER_REQUEST_RELEASE_RESCHEDULE)
        core = self._core
        if again and core is None:
            raise TritonModelException(
                "set_release_flags() is only available on requests passed to execute"
            )
        if again and not self._iterative:
            # Triton 2.51 hangs the request here; a clear refusal instead.
            raise TritonModelException(
                "request rescheduling needs 'sequence_batching { iterative_sequence: "
                f"true }}' in the configuration of model '{self._model_name}'"
            )
        if core is not None:
            core.set_reschedule(again)
        self._release_flags = int(flags)

    def get_response_sender(self) -> InferenceResponseSender | DecoupledResponseSender:
        if self._core is None:
            raise TritonModelException(
                "get_response_sender() is only available on requests passed to execute"
            )
        if self._decoupled:
            # (Not kept here: a sender refers to its request, and a cycle would keep
            # the core request, and its trace, alive until a garbage collection.)
            assert self._send is not None
            return DecoupledResponseSender(self, self._send)
        if self._slot is None:
            assert self._send is not None
            # A stub process must keep this request's inputs past execute.
            keep_inputs = getattr(self._core, "keep_inputs", None)
            if keep_inputs is not None:
                keep_inputs()
            self._slot = _ResponseSlot(self._send)
        return InferenceResponseSender(self, self._slot)

    def exec(self, decoupled: bool = False) -> Any:
        """Run this request on ``model_name`` and wait: an InferenceResponse (a
        ResponseIterator with ``decoupled=True``); errors come back as responses."""
        from tritonx.backends.pb import bls

        return bls.execute(self, decoupled)

    def async_exec(self, decoupled: bool = False) -> Any:
        """Start this request now; returns an awaitable of what ``exec`` returns.
        Needs a running event loop (``async def execute``), as in Triton."""
        from tritonx.backends.pb import bls

        return bls.execute_async(self, decoupled)
