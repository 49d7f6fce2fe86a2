"""Merging a backend's auto-completed config back (Triton's UpdateModelConfig)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from tritonx.config._pb import ModelConfig
from tritonx.config.normalize import normalize_model_config
from tritonx.config.parse import config_from_json
from tritonx.config.validate import validate_io_config
from tritonx.errors import InternalError

# Field numbers of ModelConfig.scheduling_choice members; Triton prints these.
_SCHEDULING_CASE = {
    None: 0,
    "dynamic_batching": 11,
    "sequence_batching": 13,
    "ensemble_scheduling": 15,
}


def apply_auto_complete_update(config: ModelConfig, updated: ModelConfig) -> None:
    """Take max_batch_size, inputs and outputs from ``updated``; the scheduling
    block only if ``config`` had none; the decoupled flag if ``updated`` sets a
    transaction policy. Then re-normalize and re-check the tensors."""
    config.max_batch_size = updated.max_batch_size
    del config.input[:]
    config.input.extend(updated.input)
    del config.output[:]
    config.output.extend(updated.output)

    current = config.WhichOneof("scheduling_choice")
    incoming = updated.WhichOneof("scheduling_choice")
    if current is None:
        if incoming is not None:
            getattr(config, incoming).CopyFrom(getattr(updated, incoming))
    elif incoming != current:
        # Triton's message prints the current case twice; kept as is.
        case = _SCHEDULING_CASE[current]
        raise InternalError(
            f"Cannot update scheduling choice from {case} to {case} when "
            "auto-completing."
        )
    if updated.HasField("model_transaction_policy"):
        decoupled = updated.model_transaction_policy.decoupled
        config.model_transaction_policy.decoupled = decoupled
    normalize_model_config(config)
    validate_io_config(config)


def apply_python_auto_complete(
    config: ModelConfig, model_dict: Mapping[str, Any]
) -> None:
    """Merge the dict a Python model's ``auto_complete_config`` produced.

    ``model_dict`` is the whole config in Triton's JSON shape (what
    pb_utils.ModelConfig holds: the config JSON the model started from, changed by
    set_max_batch_size/add_input/add_output/set_dynamic_batching/
    set_model_transaction_policy, which already reject conflicting edits). Only the
    fields Triton takes from a backend are merged; see apply_auto_complete_update.
    """
    updated = config_from_json(json.dumps(dict(model_dict)))
    apply_auto_complete_update(config, updated)
