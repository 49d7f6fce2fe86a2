"""Fixtures that load a model directory through a backend into a real core Model.

The path is the one the model manager takes: config layer (parse, auto-complete,
normalize), backend ``load_model``, one instance per instance-group entry, then
``tritonx._native.Model``. Requests go through ``Model.infer`` and come back as numpy.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tritonx import _native
from tritonx.backends.base import InstanceContext, ModelContext
from tritonx.backends.pb.dtypes import serialize_byte_tensor, wire_datatype_of
from tritonx.backends.registry import get_backend
from tritonx.config import (
    config_to_json,
    load_model_config,
    model_spec_from_config,
    scheduler_config_from_config,
)
from tritonx.config._pb import mc


@contextmanager
def _serve(
    model_dir: Path,
    version: int = 1,
    execution_mode: str = "in-process",
    context: Any = None,
) -> Iterator[Any]:
    """``context``: a ``_native.ServerContext`` the model joins (its registry is
    where the model's BLS calls look); the model is added to that registry."""
    config = load_model_config(model_dir)
    backend = get_backend(config.backend)
    ctx = ModelContext(
        name=config.name,
        version=version,
        config=config,
        config_json=config_to_json(config),
        model_dir=model_dir,
        version_dir=model_dir / str(version),
        model_file=model_dir / str(version) / config.default_model_filename,
        repository=model_dir.parent,
        backend_config={"execution-mode": execution_mode},
        server=context,
    )
    complete = getattr(backend, "auto_complete_config", None)
    if complete is not None:
        complete(config, ctx)
        ctx.config_json = config_to_json(config)
    backend_model = backend.load_model(ctx)
    instances = []
    try:
        for group in config.instance_group:
            kind = mc.ModelInstanceGroup.Kind.Name(group.kind).removeprefix("KIND_")
            for n in range(group.count):
                ictx = InstanceContext(f"{group.name}_{n}", len(instances), kind, 0, 0)
                instances.append(backend_model.create_instance(ictx))
        core = _native.Model(
            model_spec_from_config(config, version),
            scheduler_config_from_config(config),
            instances,
            context,
        )
    except BaseException:
        backend_model.unload()
        raise
    if context is not None:
        context.registry.add(core)
    try:
        yield core
    finally:
        if context is not None:
            context.registry.remove(config.name, version)
        core.stop()
        backend_model.unload()


def _request(
    inputs: Mapping[str, np.ndarray],
    outputs: Sequence[str] = (),
    parameters: Mapping[str, Any] | None = None,
    request_id: str = "",
) -> Any:
    items = []
    for name, array in inputs.items():
        datatype = wire_datatype_of(array)
        data = serialize_byte_tensor(array) if datatype == "BYTES" else array
        items.append((name, datatype, list(array.shape), data))
    return _native.Request(
        id=request_id,
        inputs=items,
        requested_outputs=list(outputs),
        parameters=dict(parameters or {}),
    )


def _infer(
    core: Any, inputs: Mapping[str, np.ndarray], **kwargs: Any
) -> dict[str, Any]:
    response = core.infer(_request(inputs, **kwargs))
    return {t.name: t.as_numpy() for t in response.outputs}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    # The python backend's tests run in both execution modes (in-process and stub
    # processes); other backends ignore the setting.
    if "serve" in metafunc.fixturenames and metafunc.module.__name__.endswith(
        "test_python_backend"
    ):
        metafunc.parametrize("execution_mode", ["in-process", "process"])


@pytest.fixture
def execution_mode() -> str:
    return "in-process"


@pytest.fixture
def serve(execution_mode: str) -> Callable[..., AbstractContextManager[Any]]:
    return partial(_serve, execution_mode=execution_mode)


@pytest.fixture
def infer() -> Callable[..., dict[str, Any]]:
    return _infer


@pytest.fixture
def make_request() -> Callable[..., Any]:
    return _request


@pytest.fixture
def python_model(tmp_path: Path) -> Callable[..., Path]:
    """python_model(name, config_pbtxt, model_py) -> the model directory."""

    def write(name: str, config: str, model_py: str) -> Path:
        model_dir = tmp_path / "repo" / name
        (model_dir / "1").mkdir(parents=True, exist_ok=True)
        (model_dir / "config.pbtxt").write_text(textwrap.dedent(config))
        (model_dir / "1" / "model.py").write_text(textwrap.dedent(model_py))
        return model_dir

    return write
