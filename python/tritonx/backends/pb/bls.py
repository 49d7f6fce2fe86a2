"""Business Logic Scripting: ``InferenceRequest.exec()`` / ``async_exec()`` from
inside a Python model, through the same core path as a request from the wire.

Which server a call goes to: every instance gets a ``BlsScope`` (its server's
``ModelRegistry`` from ``ModelContext.server``, its model's identity, whether
``execute`` may run BLS yet). A call finds the scope of the code making it: the
context variable set around ``execute`` (also inherited by the tasks of an
``async def execute``), else a global of the model's module found on the calling
stack (threads a model starts itself). Two servers in one process thus never see
each other's models, and nothing is process-wide.

How each call runs:
- ``exec()``: ``Model.infer`` (the caller waits, so the core may run the request on
  this thread when the target is idle and cheap; the GIL is released while waiting).
- ``async_exec()``: ``Model.submit(..., loop)``; the answer completes an asyncio
  future on the caller's loop. No thread per call.
- ``decoupled=True``: a ``ResponseIterator`` fed by the request's response stream
  (every response, then one more at FINAL, empty when FINAL came without data),
  iterable with ``for`` and ``async for``; ``cancel()`` cancels the request.

Errors are responses with ``has_error()``, as in Triton: a request that could not
be started reads "Model <name> - Error when running inference: <why>" (code
INTERNAL), an error the target answered with keeps its own message and code.
Triton blocks forever when a model calls itself and no other instance is free;
here that one call is answered with an error instead (see ``ModelLink``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import threading
from collections.abc import Callable
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from tritonx.backends.pb.dtypes import serialize_byte_tensor
from tritonx.backends.pb.errors import TritonError, TritonModelException
from tritonx.backends.pb.tensor import Tensor
from tritonx.errors import as_triton_error

if TYPE_CHECKING:
    from tritonx.backends.pb.messages import InferenceRequest, InferenceResponse

# Name of the module global through which threads a model starts find its scope.
SCOPE_GLOBAL = "__tritonx_bls_scope__"

_CODE_NUMBERS = {
    "UNKNOWN": TritonError.UNKNOWN,
    "INTERNAL": TritonError.INTERNAL,
    "NOT_FOUND": TritonError.NOT_FOUND,
    "INVALID_ARG": TritonError.INVALID_ARG,
    "UNAVAILABLE": TritonError.UNAVAILABLE,
    "UNSUPPORTED": TritonError.UNSUPPORTED,
    "ALREADY_EXISTS": TritonError.ALREADY_EXISTS,
    "CANCELLED": TritonError.CANCELLED,
}


class ModelLink:
    """What the instances of one loaded model version share for BLS: the server's
    registry and the count of instances that wait on a call to their own model.

    When every instance of a model is inside ``execute`` waiting for a request to
    that same model, nothing can ever run it (Triton hangs there). The call that
    would complete that circle is refused instead, so the others still finish.
    Thread safe (a lock around the waiting counts)."""

    def __init__(
        self, registry: Any, name: str, version: int, control: Any = None
    ) -> None:
        self.registry = registry
        # repository/model_control.ModelControl: pb_utils.load_model & co.
        self.control = control
        self.name = name
        self.version = version
        self.instances = 0  # set by the backend as instances are created
        # Set by the python backend from the model's initialize args and settings:
        # what pb_utils.get_model_dir() and c_python_backend_utils report.
        self.model_dir = ""
        self.shm_bytes = 0
        self._lock = threading.Lock()
        self._waiting: dict[int, int] = {}  # id(scope) -> self-calls in flight

    def enter_self_call(self, scope: BlsScope) -> bool:
        """False when this call would leave no instance free to run it."""
        key = id(scope)
        with self._lock:
            if key not in self._waiting and len(self._waiting) + 1 >= self.instances:
                return False
            self._waiting[key] = self._waiting.get(key, 0) + 1
            return True

    def leave_self_call(self, scope: BlsScope) -> None:
        key = id(scope)
        with self._lock:
            left = self._waiting.get(key, 0) - 1
            if left > 0:
                self._waiting[key] = left
            else:
                self._waiting.pop(key, None)


class BlsScope:
    """One instance's link to its server. ``ready`` is True between the end of
    ``initialize`` and the start of ``finalize`` (Triton allows BLS in ``execute``
    only). ``instance`` names it in model control errors."""

    __slots__ = ("__weakref__", "instance", "link", "ready")

    def __init__(self, link: ModelLink, instance: str = "") -> None:
        self.link = link
        self.instance = instance
        self.ready = False


# The scope of the instance whose execute runs in this context (see module doc).
running_scope: ContextVar[BlsScope | None] = ContextVar(
    "tritonx_bls_scope", default=None
)


def _find_scope() -> tuple[BlsScope | None, bool]:
    """(scope, inside execute) of the model code calling exec/async_exec."""
    scope = running_scope.get()
    if scope is not None:
        return scope, True
    return _find_scope_from(sys._getframe(2))


def _find_scope_from(frame: Any) -> tuple[BlsScope | None, bool]:
    """The scope of the first model module on the stack from ``frame`` outwards."""
    while frame is not None:
        found = frame.f_globals.get(SCOPE_GLOBAL)
        if found is None:
            # A module the model imported after load is kept under its model
            # module's name plus a dot (_pymodule.SiblingFinder): that module's.
            owner = sys.modules.get(
                str(frame.f_globals.get("__name__", "")).split(".")[0]
            )
            found = getattr(owner, SCOPE_GLOBAL, None)
        if found is not None:
            return found, False
        frame = frame.f_back
    return None, False


def calling_link() -> ModelLink | None:
    """The ModelLink of the model whose code calls the caller of this function."""
    scope = running_scope.get()
    if scope is None:
        scope, _ = _find_scope_from(sys._getframe(2))
    return scope.link if scope is not None else None


def _scope_or_raise() -> tuple[BlsScope, bool]:
    scope, executing = _find_scope()
    if scope is None or not scope.ready:
        raise TritonModelException(
            "BLS is only supported during the 'execute' function."
        )
    return scope, executing


# -- requests and responses ---------------------------------------------------------


def _input_of(t: Tensor) -> tuple[str, str, list[int], Any]:
    core = t._core
    if core is not None:  # a tensor the model received: pass its bytes on as they are
        return (t.name(), t.datatype(), list(core.shape), core.raw())
    value = t._output_value()
    array = value[1] if isinstance(value, tuple) else value
    if t.datatype() == "BYTES":
        data: Any = serialize_byte_tensor(array)
    else:
        data = array if array.flags.c_contiguous else array.copy(order="C")
    return (t.name(), t.datatype(), list(array.shape), data)


def _core_request(request: InferenceRequest, model: Any) -> Any:
    from tritonx import _native

    core = _native.Request(
        id=request.request_id(),
        inputs=[_input_of(t) for t in request.inputs()],
        requested_outputs=sorted(request.requested_output_names()),
        correlation_id=request.correlation_id(),
        flags=request.flags(),
        timeout_us=request.timeout(),
        custom_parameters=request._parameter_values(),
        # As Triton's BLS: without preferred_memory (or with GPU) outputs stay where
        # the model produced them (a GPU output's as_numpy() refuses; to_dlpack()
        # hands it on); TRITONSERVER_MEMORY_CPU brings them to the host.
        device_outputs=request._keeps_device_outputs(),
    )
    # trace=<a traced request's trace()>: a child of that trace, as in Triton
    # (without it the call is not traced: only frontends sample requests).
    trace = request._trace
    if trace is not None and trace._core is not None:
        _native.inherit_trace(core, trace._core)
    elif trace is not None and trace.triton_trace:  # from a stub process, by id
        _native.inherit_trace_id(core, model, trace.triton_trace)
    return core


def _response(core_response: Any) -> InferenceResponse:
    from tritonx.backends.pb.messages import InferenceResponse

    params = core_response.parameters
    return InferenceResponse._from_parts(
        [Tensor._from_core(t) for t in core_response.outputs],
        None,
        json.dumps(params, separators=(",", ":")) if params else "{}",
    )


def _error_response(message: str, code: int) -> InferenceResponse:
    from tritonx.backends.pb.messages import InferenceResponse

    return InferenceResponse._from_parts(
        [], TritonError._with_code(message, code), "{}"
    )


def _answered_with(error: BaseException) -> InferenceResponse:
    """The response for an error the target answered with."""
    err = as_triton_error(error)
    return _error_response(err.message, _CODE_NUMBERS.get(err.code, 0))


def _not_started(model_name: str, why: str) -> InferenceResponse:
    """The response for a request that could not be started (Triton's wording)."""
    return _error_response(
        f"Model {model_name} - Error when running inference: {why}",
        TritonError.INTERNAL,
    )


class _Refused(Exception):
    def __init__(self, response: InferenceResponse) -> None:
        self.response = response


def _prepare(
    scope: BlsScope, executing: bool, request: InferenceRequest, decoupled: bool
) -> tuple[Any, Any, bool]:
    """(model, core request, counted as a self-call) or _Refused."""
    name = request.model_name()
    version = request.model_version()
    link = scope.link
    if link.registry is None:
        raise _Refused(
            _not_started(
                name,
                f"BLS is not available to model '{link.name}': it was loaded "
                "outside a server",
            )
        )
    try:
        model = link.registry.find(name, str(version) if version > 0 else "")
    except Exception:
        raise _Refused(
            _not_started(
                name,
                f"Failed for execute the inference request. Model '{name}' is not "
                "ready.",
            )
        ) from None
    if model.decoupled and not decoupled:
        raise _Refused(
            _not_started(
                name,
                f"Model {name} is using the decoupled. The current BLS request call "
                "doesn't support models using the decoupled transaction policy. "
                "Please use 'decoupled=True' argument to the 'exec' or 'async_exec' "
                "calls for decoupled models.'",
            )
        )
    try:
        core = _core_request(request, model)
    except Exception as exc:
        raise _Refused(_not_started(name, as_triton_error(exc).message)) from None
    counted = False
    if executing and model.name == link.name and model.version == link.version:
        if not link.enter_self_call(scope):
            raise _Refused(
                _error_response(
                    f"Model {name} - Error when running inference: the request "
                    f"would never run: every instance of model '{name}' is "
                    "executing a request that waits for it",
                    TritonError.UNAVAILABLE,
                )
            )
        counted = True
    return model, core, counted


# -- exec / async_exec ----------------------------------------------------------------

# Set in a stub process (backends/stub), which runs one instance away from its
# server: calls are forwarded there over the stub's socket (``remote``: exec,
# ``remote_async``: a non-decoupled async_exec, answered on the caller's loop).
remote: Callable[[InferenceRequest, bool], Any] | None = None
remote_async: Callable[[InferenceRequest, asyncio.Future[Any]], None] | None = None


def execute(request: InferenceRequest, decoupled: bool) -> Any:
    """``InferenceRequest.exec()``."""
    if remote is not None:
        return remote(request, decoupled)
    scope, executing = _scope_or_raise()
    return execute_in(scope, executing, request, decoupled)


def execute_in(
    scope: BlsScope, executing: bool, request: InferenceRequest, decoupled: bool
) -> Any:
    """A call made by the instance of ``scope`` (``executing``: from inside its
    execute, holding the instance)."""
    if decoupled:
        return ResponseIterator._start(scope, executing, request)
    try:
        model, core, counted = _prepare(scope, executing, request, False)
    except _Refused as refused:
        return refused.response
    try:
        result = model.infer(core, errors_as_values=True)
    except Exception as exc:  # refused before it was queued (validation, overload)
        return _not_started(request.model_name(), as_triton_error(exc).message)
    finally:
        if counted:
            scope.link.leave_self_call(scope)
    if isinstance(result, BaseException):
        return _answered_with(result)
    return _response(result)


def execute_async(request: InferenceRequest, decoupled: bool) -> asyncio.Future[Any]:
    """``InferenceRequest.async_exec()``: a future on the running loop (Triton's
    ``async_exec`` also needs one), completed when the answer arrives."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()
    if decoupled:
        # Triton's future completes once the first response is in, so that a plain
        # ``for`` over the iterator does not stall the loop until then.
        if remote is not None:  # a stub process
            iterator = remote(request, True)
        else:
            scope, executing = _scope_or_raise()
            iterator = ResponseIterator._start(scope, executing, request)
        iterator._resolve_on_first(loop, future)
        return future
    if remote is not None:  # a stub process
        if remote_async is None:
            future.set_result(remote(request, False))
        else:
            remote_async(request, future)
        return future
    scope, executing = _scope_or_raise()
    try:
        model, core, counted = _prepare(scope, executing, request, False)
    except _Refused as refused:
        future.set_result(refused.response)
        return future

    def on_response(value: Any, final: bool) -> None:
        if future.done():  # the caller stopped waiting (cancelled)
            return
        if isinstance(value, BaseException):
            future.set_result(_answered_with(value))
        elif final:
            future.set_result(_response(value))

    try:
        model.submit(core, on_response, loop)
    except Exception as exc:
        if counted:
            scope.link.leave_self_call(scope)
        future.set_result(
            _not_started(request.model_name(), as_triton_error(exc).message)
        )
        return future

    def done(f: asyncio.Future[Any]) -> None:
        if counted:
            scope.link.leave_self_call(scope)
        if f.cancelled():
            model.cancel(core)  # nobody waits for it any more: drop it if queued

    future.add_done_callback(done)
    return future


class ResponseIterator:
    """The responses of a decoupled BLS request, as they arrive: ``for`` blocks
    (GIL released) until the next one, ``async for`` awaits it. Ends after the
    response that came with FINAL (an empty one when FINAL came alone). Iterating a
    finished iterator again starts from its first response, as in Triton.

    Fed on the delivering thread, never through an event loop, so a plain ``for``
    works on a loop's own thread too. Thread safe (a condition variable)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._responses: list[InferenceResponse] = []
        self._index = 0
        self._finished = False
        self._waiter: tuple[asyncio.AbstractEventLoop, asyncio.Future[None]] | None
        self._waiter = None
        # async_exec's future, completed with this iterator at its first response
        self._first: tuple[asyncio.AbstractEventLoop, asyncio.Future[Any]] | None
        self._first = None
        self._cancel: Callable[[], Any] | None = None

    @classmethod
    def _start(
        cls,
        scope: BlsScope,
        executing: bool,
        request: InferenceRequest,
        into: ResponseIterator | None = None,
        decoupled: bool = True,
    ) -> ResponseIterator:
        """Start the call; ``into``: an iterator (subclass) to feed instead of a new
        one (a stub's calls, forwarded as they arrive; ``decoupled`` False for its
        async_exec of a model that is not decoupled)."""
        self = into if into is not None else cls()
        try:
            model, core, counted = _prepare(scope, executing, request, decoupled)
        except _Refused as refused:
            self._push(refused.response, True)
            return self
        link = scope.link

        def on_response(value: Any, final: bool) -> None:
            if final and counted:
                link.leave_self_call(scope)
            if isinstance(value, BaseException):
                response = _answered_with(value)
            elif value is None:  # FINAL without data
                response = _empty()
            else:
                response = _response(value)
            self._push(response, final)

        try:
            model.submit(core, on_response)
        except Exception as exc:
            if counted:
                link.leave_self_call(scope)
            self._push(
                _not_started(request.model_name(), as_triton_error(exc).message), True
            )
            return self
        self._cancel = lambda: model.cancel(core)
        return self

    def _resolve_on_first(
        self, loop: asyncio.AbstractEventLoop, future: asyncio.Future[Any]
    ) -> None:
        with self._cond:
            if not self._responses:
                self._first = (loop, future)
                return
        future.set_result(self)

    def _push(self, response: InferenceResponse, final: bool) -> None:
        with self._cond:
            self._responses.append(response)
            self._finished = final
            waiter, self._waiter = self._waiter, None
            first, self._first = self._first, None
            self._cond.notify_all()
        # A closed loop (RuntimeError) has nobody waiting any more.
        if waiter is not None:
            with contextlib.suppress(RuntimeError):
                waiter[0].call_soon_threadsafe(_wake, waiter[1])
        if first is not None:
            with contextlib.suppress(RuntimeError):
                first[0].call_soon_threadsafe(_resolve, first[1], self)

    def __iter__(self) -> ResponseIterator:
        with self._cond:
            if self._finished and self._index >= len(self._responses):
                self._index = 0
        return self

    def __next__(self) -> InferenceResponse:
        with self._cond:
            while self._index >= len(self._responses) and not self._finished:
                self._cond.wait()
            if self._index < len(self._responses):
                self._index += 1
                return self._responses[self._index - 1]
        raise StopIteration

    def __aiter__(self) -> ResponseIterator:
        return self.__iter__()

    async def __anext__(self) -> InferenceResponse:
        while True:
            with self._cond:
                if self._index < len(self._responses):
                    self._index += 1
                    return self._responses[self._index - 1]
                if self._finished:
                    raise StopAsyncIteration
                loop = asyncio.get_running_loop()
                future: asyncio.Future[None] = loop.create_future()
                self._waiter = (loop, future)
            await future

    def cancel(self) -> None:
        """Cancel the request (a decoupled model sees ``is_cancelled()``; a queued
        request is answered CANCELLED). Responses already sent still arrive."""
        if not self._finished and self._cancel is not None:
            self._cancel()


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _resolve(future: asyncio.Future[Any], value: Any) -> None:
    if not future.done():  # (cancelled: the caller stopped waiting)
        future.set_result(value)


def _empty() -> InferenceResponse:
    from tritonx.backends.pb.messages import InferenceResponse

    return InferenceResponse._from_parts([], None, "{}")
