"""Loading a model's config from its directory: read, autofill, normalize, check.

Two stages, as in Triton. ``ConfigPollError`` is raised for problems Triton finds
while reading the repository: it logs the message and answers the load request with
"failed to load '<model>', failed to poll from model repository". Anything else
raised here is a per-version load failure ("load failed for model '<model>':
version N is at UNAVAILABLE state: Invalid argument: <message>").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from tritonx.config._pb import ModelConfig
from tritonx.config.backend_fields import (
    ORT_BACKEND,
    PYTHON_BACKEND,
    autofill_backend_fields,
)
from tritonx.config.checks import check_supported
from tritonx.config.normalize import normalize_instance_groups, normalize_model_config
from tritonx.config.onnx_complete import (
    DEFAULT_MAX_BATCH_SIZE,
    check_onnx_consistency,
    complete_from_onnx,
)
from tritonx.config.parse import config_from_json, read_config_file
from tritonx.config.settings import int_setting
from tritonx.config.validate import (
    validate_instance_groups,
    validate_io_config,
    validate_model_config,
)
from tritonx.errors import InvalidArgumentError, TritonXError

# backend name -> setting -> value, as given by --backend-config. Settings given
# without a backend name (e.g. default-max-batch-size) live under the key "".
BackendConfig = Mapping[str, Mapping[str, str]]


class ConfigPollError(InvalidArgumentError):
    """A config rejected while polling the repository (see module doc)."""


def _read_config(
    model_dir: Path,
    config_name: str | None,
    auto_complete: bool,
    config_override: str | None,
) -> ModelConfig:
    if config_override is not None:
        try:
            return config_from_json(config_override)
        except InvalidArgumentError as exc:
            raise InvalidArgumentError(
                f"Invalid config override: {exc.message}"
            ) from exc
    if config_name:
        named = model_dir / "configs" / f"{config_name}.pbtxt"
        if named.is_file():
            return read_config_file(named)
    path = model_dir / "config.pbtxt"
    if not path.exists() and auto_complete:
        return ModelConfig()
    return read_config_file(path)


def poll_model_config(
    config: ModelConfig, model_name: str, model_dir: Path | None = None
) -> None:
    """Repository-stage processing of a parsed config, in place."""
    autofill_backend_fields(config, model_name, model_dir)
    normalize_model_config(config)
    if config.name != model_name:
        raise InvalidArgumentError(
            f"unexpected directory name '{model_name}' for model '{config.name}', "
            "directory name must equal model name"
        )
    validate_model_config(config)


def finalize_model_config(
    config: ModelConfig, *, gpu_ids: Sequence[int] = (), tensor_checks: bool = True
) -> None:
    """Load-stage processing, in place: instance groups, then (unless
    ``tensor_checks`` is off: a backend completes the config later and the loader
    runs ``check_model_tensors`` after it) the checks of the tensors."""
    normalize_instance_groups(config, gpu_ids=gpu_ids)
    validate_instance_groups(config, gpu_ids)
    if tensor_checks:
        check_model_tensors(config)


def check_model_tensors(config: ModelConfig) -> None:
    """The checks that need the config's final tensors: inputs and outputs and
    tritonx's unsupported features (warmup samples are checked when an instance
    warms up, after its initialization, as in Triton). Triton runs them once the
    backend has initialised the model, after its auto-complete: a Python model's
    ``auto_complete_config`` may supply a tensor's missing dims or data type."""
    validate_io_config(config)
    check_supported(config)


def completed_by_backend(config: ModelConfig, auto_complete: bool) -> bool:
    """Whether the backend may still complete ``config`` when a version loads
    (the Python backend's ``auto_complete_config``; ONNX is completed here)."""
    return auto_complete and config.backend == PYTHON_BACKEND


def normalize_and_validate(
    config: ModelConfig,
    model_name: str,
    *,
    model_dir: Path | None = None,
    gpu_ids: Sequence[int] = (),
) -> None:
    """Both stages on an in-memory config (no backend auto-complete)."""
    try:
        poll_model_config(config, model_name, model_dir)
    except ConfigPollError:
        raise
    except TritonXError as exc:
        raise ConfigPollError(exc.message) from exc
    finalize_model_config(config, gpu_ids=gpu_ids)


def default_max_batch_size(backend_config: BackendConfig | None, backend: str) -> int:
    """default-max-batch-size for ``backend`` (its own setting, else the global
    one, else Triton's 4)."""
    for key in (backend, ""):
        value = int_setting(
            (backend_config or {}).get(key, {}), "default-max-batch-size"
        )
        if value is not None:
            return value
    return DEFAULT_MAX_BATCH_SIZE


def model_file_path(config: ModelConfig, model_dir: Path, version: int) -> Path:
    return model_dir / str(version) / config.default_model_filename


def _onnx_version_file(config: ModelConfig, model_dir: Path) -> Path | None:
    # The highest numbered version that has the model file.
    versions = sorted(
        (int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit()),
        reverse=True,
    )
    for version in versions:
        path = model_file_path(config, model_dir, version)
        if path.exists():
            return path
    return None


def load_model_config(
    model_dir: Path,
    *,
    config_name: str | None = None,
    auto_complete: bool = True,
    backend_config: BackendConfig | None = None,
    config_override: str | None = None,
    gpu_ids: Sequence[int] = (),
    mapped_name: str | None = None,
) -> ModelConfig:
    """Read ``<model_dir>/configs/<config_name>.pbtxt`` when it exists, else
    ``<model_dir>/config.pbtxt`` (may be absent with auto-complete on), or the
    load API's JSON ``config_override``; then autofill, normalize and validate.

    ONNX models are auto-completed here from their graph (with auto-complete on)
    and checked against it. Python models that implement auto_complete_config are
    completed later by the backend via ``apply_python_auto_complete``.

    ``mapped_name``: the name a repository registration gave the directory; the
    model takes it whatever its config says (Triton renames a mapped model).
    """
    model_dir = Path(model_dir)
    model_name = mapped_name or model_dir.name
    try:
        config = _read_config(model_dir, config_name, auto_complete, config_override)
        if mapped_name:
            config.name = mapped_name
        poll_model_config(config, model_name, model_dir)
    except ConfigPollError:
        raise
    except TritonXError as exc:
        raise ConfigPollError(exc.message) from exc

    onnx_file = (
        _onnx_version_file(config, model_dir) if config.backend == ORT_BACKEND else None
    )
    if onnx_file is not None and auto_complete:
        complete_from_onnx(
            config,
            onnx_file,
            default_max_batch_size=default_max_batch_size(backend_config, ORT_BACKEND),
        )
    finalize_model_config(
        config,
        gpu_ids=gpu_ids,
        tensor_checks=not completed_by_backend(config, auto_complete),
    )
    if onnx_file is not None:
        check_onnx_consistency(config, onnx_file)
    return config
