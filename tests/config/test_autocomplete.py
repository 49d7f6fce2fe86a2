"""Merging a backend's auto-completed config (Python models' auto_complete_config)."""

from __future__ import annotations

from typing import Any

import pytest

from tritonx.config import (
    apply_python_auto_complete,
    config_to_json_dict,
    load_model_config,
)
from tritonx.errors import InternalError, InvalidArgumentError

from .conftest import MakeModel


def _as_dict(make_model: MakeModel, text: str | None) -> tuple[Any, dict[str, Any]]:
    config = load_model_config(make_model("ac", text))
    return config, config_to_json_dict(config)


def test_python_auto_complete_fills_io_and_batching(make_model: MakeModel) -> None:
    config, doc = _as_dict(make_model, None)
    doc["max_batch_size"] = 4
    doc["input"] = [{"name": "IN", "data_type": "TYPE_FP32", "dims": [4]}]
    doc["output"] = [{"name": "OUT", "data_type": "TYPE_FP32", "dims": [4]}]
    doc["dynamic_batching"] = {}
    doc["model_transaction_policy"] = {"decoupled": True}
    doc["parameters"] = {"ignored": {"string_value": "x"}}  # not merged, as in Triton
    apply_python_auto_complete(config, doc)
    assert config.max_batch_size == 4
    assert [i.name for i in config.input] == ["IN"]
    assert [o.name for o in config.output] == ["OUT"]
    assert list(config.dynamic_batching.preferred_batch_size) == [4]
    assert config.model_transaction_policy.decoupled
    assert "ignored" not in config.parameters


def test_existing_scheduler_kept(make_model: MakeModel) -> None:
    config, doc = _as_dict(
        make_model, 'backend: "python"\nmax_batch_size: 2\ndynamic_batching { }\n'
    )
    doc["dynamic_batching"] = {"max_queue_delay_microseconds": 7}
    apply_python_auto_complete(config, doc)
    # Same scheduling kind: the config's own block stays.
    assert config.dynamic_batching.max_queue_delay_microseconds == 0


def test_scheduler_kind_change_rejected(make_model: MakeModel) -> None:
    config, doc = _as_dict(
        make_model, 'backend: "python"\nmax_batch_size: 2\ndynamic_batching { }\n'
    )
    del doc["dynamic_batching"]
    doc["sequence_batching"] = {}
    with pytest.raises(InternalError) as info:
        apply_python_auto_complete(config, doc)
    assert str(info.value) == (
        "Cannot update scheduling choice from 11 to 11 when auto-completing."
    )


def test_merged_tensors_are_validated(make_model: MakeModel) -> None:
    config, doc = _as_dict(make_model, 'backend: "python"\n')
    doc["input"] = [{"name": "IN", "data_type": "TYPE_FP32", "dims": [0]}]
    with pytest.raises(InvalidArgumentError) as info:
        apply_python_auto_complete(config, doc)
    assert str(info.value) == (
        "model input 'IN' dimension must be integer >= 1, or -1 to indicate a "
        "variable-size dimension for ac"
    )


def test_unknown_keys_rejected(make_model: MakeModel) -> None:
    config, doc = _as_dict(make_model, 'backend: "python"\n')
    doc["bogus"] = 1
    with pytest.raises(InvalidArgumentError, match=r"bogus: Cannot find field\."):
        apply_python_auto_complete(config, doc)
