"""Backend resolution: built-ins, unknown names, and a pip-installed plugin."""

from __future__ import annotations

import importlib
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from serverutil import pip_install_target

from tritonx.backends import registry
from tritonx.backends.onnxruntime_backend import OrtBackend
from tritonx.backends.python_backend import PythonBackend
from tritonx.errors import InvalidArgumentError

PLUGIN_SRC = Path(__file__).resolve().parents[1] / "plugins" / "tritonx_example_backend"


def test_builtins_resolve_and_are_shared() -> None:
    assert isinstance(registry.get_backend("python"), PythonBackend)
    assert isinstance(registry.get_backend("onnxruntime"), OrtBackend)
    assert registry.get_backend("python") is registry.get_backend("python")
    assert {"python", "onnxruntime"} <= set(registry.available_backends())


def test_unknown_backend_message() -> None:
    with pytest.raises(InvalidArgumentError) as info:
        registry.get_backend("nope")
    assert str(info.value) == (
        "unable to find backend library for backend 'nope', try specifying runtime "
        "on the model configuration."
    )


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example plugin pip-installed into a private --target directory."""
    target = pip_install_target(PLUGIN_SRC, tmp_path_factory.mktemp("plugin"))
    assert list(target.glob("tritonx_example_backend-*.dist-info"))
    return target


@pytest.fixture
def with_plugin(plugin_site: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # importlib.metadata scans sys.path, so the dist-info's entry point is found.
    monkeypatch.syspath_prepend(str(plugin_site))
    importlib.invalidate_caches()
    registry.clear_cache()
    yield
    registry.clear_cache()
    sys.modules.pop("tritonx_example_backend", None)


def test_plugin_entry_point_runs_through_the_core(
    with_plugin: None, tmp_path: Path, serve, infer
) -> None:
    assert "example" in registry.available_backends()
    model_dir = tmp_path / "scale"
    (model_dir / "1").mkdir(parents=True)
    (model_dir / "config.pbtxt").write_text(
        textwrap.dedent(
            """
            backend: "example"
            max_batch_size: 8
            input [ { name: "INPUT" data_type: TYPE_FP32 dims: [ -1 ] } ]
            output [ { name: "OUTPUT" data_type: TYPE_FP32 dims: [ -1 ] } ]
            parameters { key: "factor" value: { string_value: "2.5" } }
            """
        )
    )
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    with serve(model_dir) as core:
        np.testing.assert_allclose(infer(core, {"INPUT": x})["OUTPUT"], x * 2.5)
