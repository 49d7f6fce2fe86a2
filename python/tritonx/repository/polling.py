"""Reading a model's config the way Triton's repository poll does.

Triton splits config problems in two: those found while polling the repository
(unreadable or invalid config, name mismatch, bad override, model missing) fail the
whole load with a fixed message and leave no version state behind; the rest are
reported on every version ("version N is at UNAVAILABLE state: ...").
"""

from __future__ import annotations

import logging
from pathlib import Path

from tritonx.config import ConfigPollError, ModelConfig, load_model_config
from tritonx.errors import InternalError, TritonXError, as_triton_error
from tritonx.repository.records import ManagerOptions

log = logging.getLogger("tritonx.repository")


class PollFailure(Exception):
    """A model that could not be polled; ``detail`` goes to the log only."""

    def __init__(self, name: str, detail: str, found: bool = True) -> None:
        super().__init__(detail)
        self.name = name
        self.detail = detail
        # False: no single directory to poll (missing, or in several
        # repositories), which Triton words differently.
        self.found = found

    def as_error(self) -> InternalError:
        if self.found:
            log.error(
                "Poll failed for model directory '%s': %s", self.name, self.detail
            )
        else:
            log.error("failed to poll model '%s': %s", self.name, self.detail)
        return InternalError(
            f"failed to load '{self.name}', failed to poll from model repository"
        )


def _load(
    model_dir: Path,
    options: ManagerOptions,
    override: str | None,
    mapped_name: str | None,
) -> ModelConfig:
    return load_model_config(
        model_dir,
        config_name=options.config_name,
        auto_complete=options.auto_complete,
        backend_config=options.backend_config,
        config_override=override,
        gpu_ids=options.gpu_ids,
        mapped_name=mapped_name,
    )


def _poll_stage_only(
    model_dir: Path,
    options: ManagerOptions,
    override: str | None,
    mapped_name: str | None,
) -> ModelConfig:
    # The config package has no public "poll stage only" entry point yet; these
    # are the two steps load_model_config starts with.
    from tritonx.config.loader import _read_config, poll_model_config

    config = _read_config(
        model_dir, options.config_name, options.auto_complete, override
    )
    if mapped_name:
        config.name = mapped_name
    poll_model_config(config, mapped_name or model_dir.name, model_dir)
    return config


def read_model_config(
    model_dir: Path,
    options: ManagerOptions,
    override: str | None,
    mapped_name: str | None = None,
) -> tuple[ModelConfig, TritonXError | None]:
    """The model's config and, if its load-stage checks failed, that error.

    Raises PollFailure for poll-stage problems. On a load-stage failure the config
    is still returned (poll stage only) so its version policy can say which
    versions carry the failure. ``mapped_name``: see load_model_config.
    """
    name = mapped_name or model_dir.name
    try:
        return _load(model_dir, options, override, mapped_name), None
    except ConfigPollError as exc:
        raise PollFailure(name, exc.message) from exc
    except Exception as exc:
        stage_error = as_triton_error(exc)
    try:
        return _poll_stage_only(model_dir, options, override, mapped_name), stage_error
    except Exception as exc:
        raise PollFailure(name, str(exc)) from exc
