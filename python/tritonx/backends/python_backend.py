"""The python backend: Triton ``model.py`` files run unchanged, in process.

Each instance gets its own ``TritonPythonModel`` object (and its own copy of the
module) and is executed on its own core worker thread. The GIL is held while Python
code runs, so instances overlap only where the model releases it (numpy, torch and
onnxruntime calls do).
"""

from __future__ import annotations

import contextlib
import inspect
import json
import logging
import os
from functools import partial
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import TYPE_CHECKING, Any

import numpy as np

from tritonx import _native
from tritonx.backends._pymodule import (
    format_exception,
    load_model_module,
    model_class,
    model_files,
    running_files,
    unload_model_module,
)
from tritonx.backends.base import (
    ExecuteResult,
    InstanceContext,
    ModelConfig,
    ModelContext,
    OutputValue,
)
from tritonx.backends.pb import bls, c_module
from tritonx.backends.pb.errors import TritonError, TritonModelException
from tritonx.backends.pb.event_loop import ModelEventLoop
from tritonx.backends.pb.messages import (
    TRITONSERVER_REQUEST_RELEASE_RESCHEDULE,
    TRITONSERVER_RESPONSE_COMPLETE_FINAL,
    InferenceRequest,
    InferenceResponse,
)
from tritonx.backends.pb.model_config import ModelConfig as PbModelConfig
from tritonx.backends.python_settings import python_settings
from tritonx.backends.readiness import ReadinessProbe, call_is_ready
from tritonx.errors import InternalError, TritonXError, UnsupportedError

if TYPE_CHECKING:
    from tritonx._native import Request

log = logging.getLogger("tritonx.backends.python")

# Model files may `import c_python_backend_utils`, the module Triton's stub builds in.
c_module.install()

DEFAULT_MODEL_FILENAME = "model.py"


class OutputMap(dict[str, OutputValue]):
    """Outputs of one response, plus the response parameters the model set."""

    parameters: dict[str, Any]

    def __init__(self, outputs: dict[str, OutputValue], parameters: dict[str, Any]):
        super().__init__(outputs)
        self.parameters = parameters


def run_python_auto_complete(
    model_file: Path, config_dict: dict[str, Any]
) -> dict[str, Any]:
    """Run ``TritonPythonModel.auto_complete_config`` on ``config_dict`` (Triton's JSON
    shape) and return the completed dict; unchanged when the model has none."""
    module = load_model_module(model_file)
    files = running_files.set(model_files(model_file, module))
    try:
        cls = model_class(module, model_file)
        complete = getattr(cls, "auto_complete_config", None)
        if complete is None:
            return config_dict
        try:
            result = complete(PbModelConfig(json.loads(json.dumps(config_dict))))
        except Exception as exc:
            raise InternalError(format_exception(exc)) from exc
        if not isinstance(result, PbModelConfig):
            raise InternalError(
                "auto_complete_config function in model "
                f"'{config_dict.get('name', '')}' must return a valid pb.ModelConfig "
                "object."
            )
        return result.as_dict()
    finally:
        running_files.reset(files)
        unload_model_module(module)


class EndedOnStream(Exception):
    """A decoupled execute failed with ``error`` in a stub process, which has sent
    that error to each request still open on its response stream: the server counts
    the failure (as Triton does) without answering those requests again."""

    def __init__(self, error: InternalError) -> None:
        super().__init__(str(error))
        self.error = error


class PythonInstance:
    """One ``TritonPythonModel`` object; called by its core worker thread."""

    gather_inputs = False
    allow_inline = True  # may run a request on the caller's thread (core decides)
    # Set by a stub process (stub/__main__.py). There a non-decoupled model's
    # sender has no way to the core but the execute's reply, and a decoupled one's
    # responses travel on the response stream, not in order with that reply.
    in_stub_process = False

    def __init__(self, model: PythonModel, ictx: InstanceContext) -> None:
        self._ctx = ictx
        self._model_name = model.ctx.name
        self._version = model.ctx.version
        self._outputs = tuple(o.name for o in model.ctx.config.output)
        self._decoupled = bool(model.ctx.config.model_transaction_policy.decoupled)
        # (An unset sequence_batching reads as its defaults: not iterative.)
        self._iterative = bool(model.ctx.config.sequence_batching.iterative_sequence)
        self._loop = ModelEventLoop(ictx.name)
        self._module: ModuleType = load_model_module(model.model_file)
        # BLS calls made by this instance's code go to its own server (bls.py).
        # (A stub process's model has no link: no registry in that process.)
        link = getattr(model, "bls_link", None)
        self._scope = bls.BlsScope(
            link or bls.ModelLink(None, model.ctx.name, model.ctx.version), ictx.name
        )
        init_args = model.initialize_args(ictx)
        # pb_utils.get_model_dir(): the version directory, as Triton's stub has it.
        self._scope.link.model_dir = os.path.join(
            init_args["model_repository"], init_args["model_version"]
        )
        self._scope.link.shm_bytes = model.settings.shm_default_byte_size
        setattr(self._module, bls.SCOPE_GLOBAL, self._scope)
        self._files = model_files(model.model_file, self._module)
        files = running_files.set(self._files)
        try:
            self._obj = model_class(self._module, model.model_file)()
            # An async execute runs on a loop of its own, which cannot run on a thread
            # that already runs one (the server's): keep it off callers' threads.
            self.allow_inline = not inspect.iscoroutinefunction(
                getattr(self._obj, "execute", None)
            )
            init = getattr(self._obj, "initialize", None)
            if init is not None:
                result = init(init_args)
                if inspect.isawaitable(result):
                    self._run(result)
            self._scope.ready = True
        except TritonXError:
            unload_model_module(self._module)
            raise
        except Exception as exc:
            unload_model_module(self._module)
            raise InternalError(format_exception(exc)) from exc
        finally:
            running_files.reset(files)
        # The model's own readiness check (is_ready), asked by readiness endpoints.
        self.readiness: ReadinessProbe | None = (
            ReadinessProbe(ictx.name, partial(call_is_ready, self._obj))
            if self.has_is_ready()
            else None
        )

    def has_is_ready(self) -> bool:
        return callable(getattr(self._obj, "is_ready", None))

    def _run(self, awaitable: Any) -> Any:
        """Runs a coroutine of the model on its event loop and waits for it."""
        return self._loop.run(self._scoped(awaitable))

    async def _scoped(self, awaitable: Any) -> Any:
        # On the loop's thread: BLS and lazy imports find this instance, in the
        # coroutine and in the tasks it starts (they copy this context).
        scope = bls.running_scope.set(self._scope)
        files = running_files.set(self._files)
        try:
            return await awaitable
        finally:
            running_files.reset(files)
            bls.running_scope.reset(scope)

    def _failure(self, detail: str) -> InternalError:
        message = (
            f"Failed to process the request(s) for model '{self._ctx.name}', "
            f"message: {detail}"
        )
        log.error("%s", message)
        return InternalError(message)

    def _requests(self, requests: list[Request]) -> list[InferenceRequest]:
        return [
            InferenceRequest._from_core(
                r,
                self._model_name,
                self._version,
                self._outputs,
                send=partial(self._send, r),
                iterative=self._iterative,
                decoupled=self._decoupled,
            )
            for r in requests
        ]

    def execute(self, requests: list[Request]) -> ExecuteResult | None:
        if self._decoupled:
            self._execute_decoupled(requests)
            return None
        pb_requests = self._requests(requests)
        scope = bls.running_scope.set(self._scope)
        files = running_files.set(self._files)
        try:
            result = self._obj.execute(pb_requests)
            if inspect.isawaitable(result):
                result = self._run(result)
        except Exception as exc:
            # A failed execute fails the whole batch; raising (rather than returning an
            # error per request) lets the core count it as Triton does: a BACKEND
            # failure per request and no inferences, where an error *response* counts
            # as a success. A response a sender already sent stays the answer.
            return self._failed(pb_requests, self._failure(format_exception(exc)))
        finally:
            running_files.reset(files)
            bls.running_scope.reset(scope)
        try:
            return self._results(result, pb_requests)
        except InternalError as error:
            return self._failed(pb_requests, error)

    def _failed(
        self, requests: list[InferenceRequest], error: InternalError
    ) -> ExecuteResult:
        """A failed execute: no sender may answer any more (Triton closes them all)
        and every request not answered yet gets the error. In process the core
        knows which were answered. A stub process marks them in its reply instead,
        as their answers may still be on the response stream behind it."""
        answered = []
        for request in requests:
            slot = request._slot
            if slot is not None:
                slot.close()
            answered.append(slot is not None and slot.response is not None)
        if not self.in_stub_process or not any(answered):
            raise error from None
        for request, done in zip(requests, answered, strict=True):
            if done:
                request._core.set_answered_by_sender()
        return [None if done else error for done in answered]

    def _results(self, result: Any, requests: list[InferenceRequest]) -> ExecuteResult:
        returned_none = result is None
        if returned_none:
            result = [None] * len(requests)
        elif not isinstance(result, list):
            raise self._failure(
                f"Expected a list in the execute return, found type '{c_module.type_text(result)}'."
            )
        if len(result) != len(requests):
            raise self._failure(
                "Number of InferenceResponse objects do not match the number of "
                "InferenceRequest objects. InferenceRequest(s) size is:"
                f"{len(requests)}, and InferenceResponse(s) size is:{len(result)}\n"
            )
        out: list[OutputMap | BaseException | None] = []
        for item, request in zip(result, requests, strict=True):
            # A rescheduled request runs again later (iterative sequences): its
            # response comes from a later execute, None stands for it now.
            rescheduled = (
                request._release_flags & TRITONSERVER_REQUEST_RELEASE_RESCHEDULE
            )
            slot = request._slot
            if rescheduled:
                if item is not None:
                    raise self._failure(  # (Triton's spelling)
                        "Expected a None object in the execute function return "
                        f"list for reschduled request, found type '{c_module.type_text(item)}'."
                    )
                out.append(None)
            elif isinstance(item, InferenceResponse):
                if slot is not None and slot.sent > 0:
                    raise self._failure(
                        "Unable to send response. Non-decoupled model cannot send "
                        "more than one response."
                    )
                out.append(self._convert(item))
            elif item is not None or (slot is None and not returned_none):
                raise self._failure(
                    "Expected an 'InferenceResponse' object in the execute function "
                    f"return list, found type '{c_module.type_text(item)}'."
                )
            elif slot is None:
                # Triton leaves such a request unanswered for good (it hangs).
                raise self._failure(
                    f"Expected a list in the execute return, found type '{type(None)}'."
                )
            else:
                # Its sender answers it, or already did.
                with slot.lock:
                    slot.handed_over = True
                request._core.set_answered_by_sender()
                out.append(None)
        return out

    def _execute_decoupled(self, requests: list[Request]) -> None:
        """A decoupled model answers through its senders, during execute or later;
        execute itself must return None. A coroutine execute runs in the background
        on the instance's loop, as in Triton: the next execute may start meanwhile."""
        pb_requests = self._requests(requests)
        scope = bls.running_scope.set(self._scope)
        files = running_files.set(self._files)
        try:
            result = self._obj.execute(pb_requests)
        except Exception as exc:
            self._decoupled_failed(pb_requests, self._failure(format_exception(exc)))
            return
        finally:
            running_files.reset(files)
            bls.running_scope.reset(scope)
        if inspect.isawaitable(result):
            self._loop.start(
                self._scoped(result), partial(self._background_done, pb_requests)
            )
            return
        if result is not None:
            self._decoupled_failed(
                pb_requests,
                self._failure(
                    f"Python model '{self._ctx.name}' is using the decoupled mode "
                    "and the execute function must return None."
                ),
            )

    def _decoupled_failed(
        self, requests: list[InferenceRequest], error: InternalError
    ) -> None:
        """In process the error is raised: the core ends every request not yet
        final with it (a BACKEND failure each, as Triton counts). A stub process
        sends it on the response stream instead, behind what the senders sent, so a
        request its sender already closed keeps its answer; the execute's reply
        then only reports the failure (EndedOnStream)."""
        if not self.in_stub_process:
            raise error from None
        _end_open_requests(requests, error)
        raise EndedOnStream(error) from None

    def _background_done(
        self, requests: list[InferenceRequest], result: Any, exc: BaseException | None
    ) -> None:
        """A decoupled coroutine execute ended. Triton only logs what it raised or
        returned; here its error also ends the requests it left open, which would
        otherwise never be answered."""
        if exc is None:
            if result is not None:
                log.error(
                    "Python model '%s' is using the decoupled mode and the execute "
                    "function must return None.",
                    self._ctx.name,
                )
            return
        _end_open_requests(requests, self._failure(format_exception(exc)))

    def _send(
        self, core: Request, response: InferenceResponse | None, final: bool
    ) -> None:
        payload = None if response is None else self._convert(response)
        _native.send_response(core, payload, final)

    @staticmethod
    def _convert(response: InferenceResponse) -> OutputMap | BaseException:
        error = response.error()
        if error is not None:
            return error.to_exception()
        try:
            outputs = {t.name(): t._output_value() for t in response.output_tensors()}
        except Exception as exc:
            return InternalError(format_exception(exc))
        text = response.parameters()
        # Most responses carry no parameters: skip the JSON round trip for those.
        params = json.loads(text) if text not in ("", "{}") else {}
        return OutputMap(outputs, params)

    def execute_batch(
        self, inputs: dict[str, np.ndarray], requests: list[Request]
    ) -> dict[str, OutputValue]:
        raise UnsupportedError("the python backend does not take gathered inputs")

    def finalize(self) -> None:
        self._scope.ready = False
        files = running_files.set(self._files)
        try:
            fin = getattr(self._obj, "finalize", None)
            if fin is not None:
                result = fin()
                if inspect.isawaitable(result):
                    self._run(result)
        finally:
            running_files.reset(files)
            self._loop.close()
            unload_model_module(self._module)


def _end_open_requests(requests: list[InferenceRequest], error: InternalError) -> None:
    """Sends ``error`` as the final response of each decoupled request whose sender
    is still open (one already closed was answered in full before the error)."""
    for request in requests:
        with contextlib.suppress(TritonModelException):
            request.get_response_sender().send(
                InferenceResponse(error=TritonError(str(error))),
                TRITONSERVER_RESPONSE_COMPLETE_FINAL,
            )


class PythonModel:
    """A loaded python model version; finalizes its instances on unload.

    Its instances may be created at once, each on its own thread (Triton's python
    backend allows parallel instance loading too): ``create_instance`` only appends
    to ``_instances``, which is atomic."""

    parallel_instance_creation = True

    def __init__(self, ctx: ModelContext, model_file: Path) -> None:
        self.ctx = ctx
        self.settings = python_settings(ctx.backend_config)  # refuses bad values
        self.model_file = model_file
        self._instances: list[Any] = []  # PythonInstance or stub.StubInstance
        registry = ctx.server.registry if ctx.server is not None else None
        self.bls_link = bls.ModelLink(
            registry, ctx.name, ctx.version, ctx.model_control
        )

    def initialize_args(self, ictx: InstanceContext) -> dict[str, str]:
        """The ``args`` dict Triton passes to ``initialize`` (all values strings)."""
        return {
            "model_config": self.ctx.config_json,
            "model_instance_kind": ictx.kind,
            "model_instance_name": ictx.name,
            "model_instance_device_id": str(ictx.device_id),
            "model_repository": str(self.ctx.model_dir),
            "model_version": str(self.ctx.version),
            "model_name": self.ctx.name,
            # tritonx: the instance's CUDA stream (a cudaStream_t as an integer, "0"
            # for CPU instances), for models that launch their own GPU work.
            "tritonx_cuda_stream": str(ictx.cuda_stream),
        }

    def create_instance(self, ictx: InstanceContext) -> Any:
        from tritonx.backends.stub.process import StubInstance, execution_mode

        instance: Any
        if execution_mode(self) == "process":
            instance = StubInstance(self, ictx)  # crash-isolated: its own process
        else:
            instance = PythonInstance(self, ictx)
        self._instances.append(instance)
        self.bls_link.instances = len(self._instances)
        return instance

    def unload(self) -> None:
        instances, self._instances = self._instances, []
        for instance in instances:
            self._finalize(instance)

    def remove_instance(self, instance: Any) -> None:
        """Finalizes one instance an instance update retired."""
        self._instances = [i for i in self._instances if i is not instance]
        self.bls_link.instances = len(self._instances)
        self._finalize(instance)

    def _finalize(self, instance: Any) -> None:
        try:
            instance.finalize()
        except Exception as exc:
            log.error(
                "finalize failed for model '%s': %s",
                self.ctx.name,
                format_exception(exc),
            )


class PythonBackend:
    """Backend ``python``."""

    name = "python"

    def model_file(self, ctx: ModelContext) -> Path:
        """The model's own ``model.py`` (or its default_model_filename)."""
        filename = ctx.config.default_model_filename or DEFAULT_MODEL_FILENAME
        if ctx.model_file and ctx.model_file.name == filename:
            return ctx.model_file
        return ctx.version_dir / filename

    def auto_complete_config(self, config: ModelConfig, ctx: ModelContext) -> None:
        """Run the model's ``auto_complete_config`` and merge what it filled in."""
        from tritonx.config import apply_python_auto_complete, config_to_json_dict

        model_file = self.model_file(ctx)
        if not model_file.is_file():
            return  # the load itself reports the missing file
        before = config_to_json_dict(config)
        from tritonx.backends.stub.process import (
            auto_complete_in_stub,
            execution_mode,
            model_python,
        )

        model = SimpleNamespace(ctx=ctx)  # what the mode helpers read
        if execution_mode(model) == "process":  # keep model code out of the server
            after = auto_complete_in_stub(
                ctx.name, model_python(model), model_file, before
            )
        else:
            after = run_python_auto_complete(model_file, before)
        if after is not before:
            apply_python_auto_complete(config, after)

    def load_model(self, ctx: ModelContext) -> PythonModel:
        return PythonModel(ctx, self.model_file(ctx))


def create_backend() -> PythonBackend:
    return PythonBackend()
