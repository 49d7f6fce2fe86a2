"""Ensemble config differential fuzz: generated ensemble configs over small Python
models (ensemble_strategies.py), loaded by tritonx and by Triton 2.51, which must
answer alike: the load's status, then the served config, metadata and the answer
to an inference made from the metadata, or the error and the ensemble's index
entries (config_diff.observe). The composing models are loaded with the first
ensemble that names them and stay loaded.

Runs only when ``TRITONX_REFERENCE_CMD`` is set; ``TRITONX_ENSEMBLE_EXAMPLES``
examples (default 40: an ensemble loads without a stub of its own), derandomized
unless ``TRITONX_FUZZ_SEED`` is set. A reference that crashed or hung is replaced
and the example skipped (test_config_fuzz.Pair); an ensemble tritonx refuses as
cyclic is not sent (see _cyclic).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import pytest
from config_diff import Case
from ensemble_strategies import COMPOSING, ensemble_configs
from google.protobuf import text_format
from hypothesis import given, reject
from hypothesis import strategies as st
from serverutil import needs_reference
from test_config_fuzz import Pair, config_fuzz_settings

from tritonx._proto import model_config_pb2 as mc
from tritonx.config.ensemble import CYCLE, validate_ensemble_graph
from tritonx.errors import InvalidArgumentError

EXAMPLES = int(os.environ.get("TRITONX_ENSEMBLE_EXAMPLES", "40"))

pytestmark = needs_reference

_VALUES = {"FP": 0.5, "IN": 3, "UI": 3, "BY": "x", "BO": True}


def infer_body(metadata: Any) -> Any:
    """An infer request for every input the metadata names: each -1 dim as 2, the
    values by datatype (floats, integers, strings, booleans)."""
    inputs = []
    for tensor in (metadata or {}).get("inputs", []):
        shape = [2 if d == -1 else d for d in tensor.get("shape", [])]
        count = 1
        for dim in shape:
            count *= dim
        value = _VALUES.get(str(tensor.get("datatype"))[:2], 0)
        inputs.append({**tensor, "shape": shape, "data": [value] * max(count, 0)})
    return {"inputs": inputs}


# Where Triton 2.51's choice among several wrong things is arbitrary, the name it
# picks is blanked in both observations: which composing model with a missing
# version an ensemble names (its dependency graph walks a hash map keyed by
# pointers), and which of a step's wrong inputs the composing model names (the
# step's inputs follow a protobuf map, whose order is seeded per process).
_ARBITRARY = [
    (re.compile(r"depends on '[^']*' whose required version \d+"),
     "depends on '<model>' whose required version <n>"),
    (re.compile(r"(in ensemble '[^']*', .*? for input )'[^']*'"), r"\1'<input>'"),
]  # fmt: skip


def _blank_arbitrary(seen: Any) -> Any:
    if isinstance(seen, str):
        for pattern, replacement in _ARBITRARY:
            seen = pattern.sub(replacement, seen)
        return seen
    if isinstance(seen, dict):
        return {key: _blank_arbitrary(value) for key, value in seen.items()}
    if isinstance(seen, (list, tuple)):
        return type(seen)(_blank_arbitrary(value) for value in seen)
    return seen


def _raced(config: str) -> bool:
    """Whether a step writes an ensemble input: the client's value and the step's
    race to the steps reading it, in both servers, so no inference is compared."""
    parsed = text_format.Parse(config, mc.ModelConfig())
    written = {
        tensor
        for step in parsed.ensemble_scheduling.step
        for tensor in step.output_map.values()
    }
    return any(tensor.name in written for tensor in parsed.input)


def _cyclic(config: str) -> bool:
    """Whether tritonx refuses the ensemble as cyclic (a step writes a tensor it
    depends on, through an ensemble input): Triton 2.51 loads it and never answers
    a request (tests/ensemble/test_ensemble_cycles.py), so it is not sent."""
    parsed = text_format.Parse(config, mc.ModelConfig())
    try:
        validate_ensemble_graph(parsed)
    except InvalidArgumentError as error:
        return CYCLE in str(error)
    return False


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    repo = tmp_path_factory.mktemp("ensemble_fuzz") / "repo"
    repo.mkdir()
    for name, (config, model) in COMPOSING.items():
        Case(name, f'name: "{name}"\n' + config, {"1/model.py": model}).write(repo)
    with ExitStack() as stack:
        yield Pair(stack, repo)


@pytest.mark.replaces_crashed_reference
@pytest.mark.timeout(180 + 5 * EXAMPLES)
@config_fuzz_settings(EXAMPLES)
@given(data=st.data())
def test_generated_ensembles_load_as_in_triton(pair: Pair, data: st.DataObject) -> None:
    name = f"e{next(pair.names)}"
    config = data.draw(ensemble_configs(name), label="config.pbtxt")
    if _cyclic(config):
        reject()
    Case(name, config, {"1/.keep": ""}).write(pair.repo)
    ours, theirs = pair.observe(name, None if _raced(config) else infer_body)
    assert pair.ours.process.poll() is None, pair.ours.log_text()[-3000:]
    if theirs is None:
        print(f"ensemble fuzz: the reference died or hung on\n{config}")
        reject()
    ours, theirs = _blank_arbitrary(ours), _blank_arbitrary(theirs)
    differing = sorted(k for k in {*ours, *theirs} if ours.get(k) != theirs.get(k))
    assert not differing, f"config:\n{config}\n" + "\n".join(
        f"{k}:\n  tritonx {ours.get(k)!r}\n  Triton  {theirs.get(k)!r}"
        for k in differing
    )
