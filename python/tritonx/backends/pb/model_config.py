"""pb_utils.ModelConfig: what ``auto_complete_config`` receives and returns.

It edits Triton's JSON rendering of the config as a dict; the error messages are the
ones Triton raises (as ValueError) so that failing models report the same reasons.
"""

from __future__ import annotations

import json
from typing import Any

_INPUT_KEYS = ("name", "data_type", "dims", "optional")
_OUTPUT_KEYS = ("name", "data_type", "dims")


class ModelConfig:
    """A model configuration dict that ``auto_complete_config`` may extend."""

    def __init__(self, model_config: str | dict[str, Any]) -> None:
        config = (
            json.loads(model_config) if isinstance(model_config, str) else model_config
        )
        config.setdefault("name", "")
        config.setdefault("max_batch_size", 0)
        config.setdefault("input", [])
        config.setdefault("output", [])
        self._model_config: dict[str, Any] = config

    def as_dict(self) -> dict[str, Any]:
        return self._model_config

    @property
    def _name(self) -> str:
        return str(self._model_config["name"])

    def set_max_batch_size(self, max_batch_size: int) -> None:
        current = self._model_config["max_batch_size"]
        if current > max_batch_size:
            raise ValueError(
                f"configuration specified max_batch_size {current}, but in "
                f"auto-complete-config function for model '{self._name}' specified "
                f"max_batch_size {max_batch_size}"
            )
        self._model_config["max_batch_size"] = max_batch_size

    def set_dynamic_batching(self) -> None:
        for other in ("sequence_batching", "ensemble_scheduling"):
            if other in self._model_config:
                raise ValueError(
                    f"Configuration specified scheduling_choice as '{other}', but "
                    f"auto-complete-config function for model '{self._name}' tries to "
                    "set scheduling_choice as 'dynamic_batching'"
                )
        self._model_config.setdefault("dynamic_batching", {})

    def add_input(self, input: dict[str, Any]) -> None:
        self._add_tensor("input", input, _INPUT_KEYS)

    def add_output(self, output: dict[str, Any]) -> None:
        self._add_tensor("output", output, _OUTPUT_KEYS)

    def _add_tensor(
        self, kind: str, tensor: dict[str, Any], keys: tuple[str, ...]
    ) -> None:
        model = self._name
        tname = tensor.get("name", "")
        for key in tensor:
            if key not in keys:
                allowed = (
                    "'name', 'data_type', 'dims' and 'optional'"
                    if kind == "input"
                    else "'name', 'data_type' and 'dims'"
                )
                raise ValueError(
                    f"{kind} '{tname}' in auto-complete-config function for model "
                    f"'{model}' contains property other than {allowed}."
                )
        if "name" not in tensor:
            raise ValueError(
                f"{kind} in auto-complete-config function for model '{model}' is "
                "missing 'name' property."
            )
        for key in ("data_type", "dims"):
            if key not in tensor:
                raise ValueError(
                    f"{kind} '{tname}' in auto-complete-config function for model "
                    f"'{model}' is missing '{key}' property."
                )
        for current in self._model_config[kind]:
            if current["name"] != tname:
                continue
            have_type = current.get("data_type", "TYPE_INVALID")
            if have_type != "TYPE_INVALID" and have_type != tensor["data_type"]:
                raise ValueError(
                    f"unable to load model '{model}', configuration expects datatype "
                    f"{have_type} for {kind} '{tname}', model provides "
                    f"{tensor['data_type']}"
                )
            if current.get("dims") and current["dims"] != tensor["dims"]:
                raise ValueError(
                    f"model '{model}', tensor '{tname}': the model expects dims "
                    f"{tensor['dims']} but the model configuration specifies dims "
                    f"{current['dims']}"
                )
            if (
                "optional" in current
                and "optional" in tensor
                and current["optional"] != tensor["optional"]
            ):
                raise ValueError(
                    f"model '{model}', tensor '{tname}': the model expects optional "
                    f"{tensor['optional']} but the model configuration specifies "
                    f"optional {current['optional']}"
                )
            current["data_type"] = tensor["data_type"]
            current["dims"] = tensor["dims"]
            if "optional" in tensor:
                current["optional"] = tensor["optional"]
            return
        self._model_config[kind].append(tensor)

    def set_model_transaction_policy(
        self, transaction_policy_dict: dict[str, Any]
    ) -> None:
        for key in transaction_policy_dict:
            if key != "decoupled":
                raise ValueError(
                    "model transaction property in auto-complete-config function for "
                    f"model '{self._name}' contains property other than 'decoupled'."
                )
        policy = self._model_config.setdefault("model_transaction_policy", {})
        if "decoupled" in transaction_policy_dict:
            wanted = transaction_policy_dict["decoupled"]
            if "decoupled" in policy and policy["decoupled"] != wanted:
                raise ValueError(
                    "trying to change decoupled property in auto-complete-config for "
                    f"model '{self._name}', which is already set to "
                    f"'{policy['decoupled']}'."
                )
            policy["decoupled"] = wanted
