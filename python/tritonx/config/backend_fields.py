"""Filling name, backend, platform and default_model_filename (Triton's autofill).

Triton does this for every model, auto-complete on or off: the backend follows from
the platform, the default file name or the files in the first version directory
(directory names sorted as strings), and the platform and file name follow from the
backend.
"""

from __future__ import annotations

from pathlib import Path

from tritonx.config._pb import ModelConfig
from tritonx.errors import InvalidArgumentError

ENSEMBLE_PLATFORM = "ensemble"

TF_BACKEND = "tensorflow"
TF_SAVEDMODEL_PLATFORM = "tensorflow_savedmodel"
TF_GRAPHDEF_PLATFORM = "tensorflow_graphdef"
TF_SAVEDMODEL_FILE = "model.savedmodel"
TF_GRAPHDEF_FILE = "model.graphdef"
TRT_BACKEND = "tensorrt"
TRT_PLATFORM = "tensorrt_plan"
TRT_FILE = "model.plan"
ORT_BACKEND = "onnxruntime"
ORT_PLATFORM = "onnxruntime_onnx"
ORT_FILE = "model.onnx"
OPENVINO_BACKEND = "openvino"
OPENVINO_FILE = "model.xml"
PYTORCH_BACKEND = "pytorch"
PYTORCH_PLATFORM = "pytorch_libtorch"
PYTORCH_FILE = "model.pt"
# torch.export / AOTInductor artifacts; tritonx also recognises them unconfigured.
PYTORCH_EXPORTED_FILE = "model.pt2"
PYTHON_BACKEND = "python"
PYTHON_FILE = "model.py"

# Backends whose platform must agree with the backend (others accept any platform).
_BACKEND_KIND = {
    TF_BACKEND: "tf",
    TRT_BACKEND: "trt",
    ORT_BACKEND: "ort",
    PYTORCH_BACKEND: "torch",
}
_PLATFORM_KIND = {
    TF_SAVEDMODEL_PLATFORM: "tf",
    TF_GRAPHDEF_PLATFORM: "tf",
    TRT_PLATFORM: "trt",
    ORT_PLATFORM: "ort",
    PYTORCH_PLATFORM: "torch",
}


def backend_kind(backend: str) -> str | None:
    return _BACKEND_KIND.get(backend)


def platform_kind(platform: str) -> str | None:
    return _PLATFORM_KIND.get(platform)


def _first_version_dir(model_dir: Path | None) -> Path | None:
    if model_dir is None or not model_dir.is_dir():
        return None
    subdirs = sorted(p.name for p in model_dir.iterdir() if p.is_dir())
    return model_dir / subdirs[0] if subdirs else None


def autofill_backend_fields(
    config: ModelConfig, model_name: str, model_dir: Path | None
) -> None:
    """Fill name/backend/platform/default_model_filename in place."""
    version_dir = _first_version_dir(model_dir)
    contents = (
        {p.name for p in version_dir.iterdir()} if version_dir is not None else set()
    )

    def has_file(name: str) -> bool:
        return version_dir is not None and (version_dir / name).is_file()

    def has_dir(name: str) -> bool:
        return version_dir is not None and (version_dir / name).is_dir()

    if not config.name:
        config.name = model_name
    # The fill-ins below only apply when the corresponding field is empty.
    no_hint = not config.platform and not config.default_model_filename
    has_version = version_dir is not None

    # TensorFlow: the platform is decided from the file kind.
    if not config.platform and config.backend in ("", TF_BACKEND):
        if config.default_model_filename == TF_SAVEDMODEL_FILE:
            config.platform = TF_SAVEDMODEL_PLATFORM
        elif config.default_model_filename == TF_GRAPHDEF_FILE:
            config.platform = TF_GRAPHDEF_PLATFORM
        elif not config.default_model_filename and has_version:
            if has_dir(TF_SAVEDMODEL_FILE):
                config.platform = TF_SAVEDMODEL_PLATFORM
            if has_file(TF_GRAPHDEF_FILE):
                config.platform = TF_GRAPHDEF_PLATFORM
    if config.platform in (TF_SAVEDMODEL_PLATFORM, TF_GRAPHDEF_PLATFORM):
        config.backend = config.backend or TF_BACKEND
        if not config.default_model_filename:
            config.default_model_filename = (
                TF_SAVEDMODEL_FILE
                if config.platform == TF_SAVEDMODEL_PLATFORM
                else TF_GRAPHDEF_FILE
            )
        return

    # TensorRT
    if not config.backend:
        named = config.platform == TRT_PLATFORM or (
            config.default_model_filename == TRT_FILE
        )
        if named or (no_hint and has_file(TRT_FILE)):
            config.backend = TRT_BACKEND
    if config.backend == TRT_BACKEND:
        config.platform = config.platform or TRT_PLATFORM
        config.default_model_filename = config.default_model_filename or TRT_FILE
        return

    # ONNX Runtime: the model may be a file or a directory (large models).
    if not config.backend:
        named = config.platform == ORT_PLATFORM or (
            config.default_model_filename == ORT_FILE
        )
        if named or (no_hint and ORT_FILE in contents):
            config.backend = ORT_BACKEND
    if config.backend == ORT_BACKEND:
        config.platform = config.platform or ORT_PLATFORM
        config.default_model_filename = config.default_model_filename or ORT_FILE
        return

    # OpenVINO
    if not config.backend and (
        config.default_model_filename == OPENVINO_FILE
        or (no_hint and OPENVINO_FILE in contents)
    ):
        config.backend = OPENVINO_BACKEND
    if config.backend == OPENVINO_BACKEND:
        config.default_model_filename = config.default_model_filename or OPENVINO_FILE
        return

    # PyTorch
    if not config.backend:
        if (
            config.platform == PYTORCH_PLATFORM
            or config.default_model_filename == PYTORCH_FILE
        ):
            config.backend = PYTORCH_BACKEND
        elif no_hint and (has_file(PYTORCH_FILE) or has_file(PYTORCH_EXPORTED_FILE)):
            config.backend = PYTORCH_BACKEND
            config.platform = PYTORCH_PLATFORM
    if config.backend == PYTORCH_BACKEND:
        if not config.platform:
            config.platform = PYTORCH_PLATFORM
            config.default_model_filename = (
                config.default_model_filename or PYTORCH_FILE
            )
        return

    # Python
    if not config.backend and (
        config.default_model_filename == PYTHON_FILE
        or (no_hint and PYTHON_FILE in contents)
    ):
        config.backend = PYTHON_BACKEND
    if config.backend == PYTHON_BACKEND:
        config.default_model_filename = config.default_model_filename or PYTHON_FILE
        return

    # Custom backend named by the model: "model.<backend>".
    if not config.backend and no_hint:
        _, dot, backend = model_name.partition(".")
        if not dot:
            raise InvalidArgumentError(
                "Invalid model name: Could not determine backend for model "
                f"'{model_name}' with no backend in model configuration. Expected "
                "model name of the form 'model.<backend_name>'."
            )
        config.backend = backend
        config.default_model_filename = f"model.{backend}"
