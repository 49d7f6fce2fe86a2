"""Load-override differential fuzz: the same ``POST /v2/repository/models/<name>/load``
bodies to tritonx and to Triton 2.51 (both in EXPLICIT mode on one repository),
which must answer alike.

A body carries a ``config`` override (a config drawn by
config_strategies.model_configs, as JSON; now and then its protobuf text, which is
no JSON, or none) and 0-2 ``file:`` overrides (tests/overridefiles.py: model code
that loads, fails to parse, raises or is empty, at good and odd paths; now and then
content that is no base64). The model is new (nothing on disk) or one written to
the repository just before with a valid config. Observed as config_diff.observe
does: the load's status and error, then the served config and metadata, or the
model's index entries. ``TRITONX_LOAD_EXAMPLES`` examples (default 20: a load may
start a stub on each server), only with the reference.
"""

from __future__ import annotations

import base64
import json
import os
import re
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import PurePosixPath
from typing import Any

import pytest
from config_diff import BASE_IO, Case
from config_strategies import model_configs
from google.protobuf import json_format, text_format
from hypothesis import given, reject
from hypothesis import strategies as st
from overridefiles import FILE_KEYS, MODEL_FILES
from serverutil import needs_reference
from test_config_fuzz import Pair, config_fuzz_settings

from tritonx._proto import model_config_pb2 as mc

EXAMPLES = int(os.environ.get("TRITONX_LOAD_EXAMPLES", "20"))

pytestmark = needs_reference

# Where a server wrote a load's override files (each its own temporary directory).
_OVERRIDE_DIR = re.compile(r"/tmp/[^\s'\"]+?/(?=(?:\d+/)?model\.py)")


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    repo = tmp_path_factory.mktemp("load_override_fuzz") / "repo"
    repo.mkdir()
    with ExitStack() as stack:
        yield Pair(stack, repo)


def _as_json(config: str) -> str | None:
    """The config's JSON form (as a client sends an override), None when its text
    is no ModelConfig."""
    try:
        message = text_format.Parse(config, mc.ModelConfig())
    except text_format.ParseError:
        return None
    return json_format.MessageToJson(message, preserving_proto_field_name=True)


@st.composite
def load_bodies(draw: Any, name: str) -> dict[str, str]:
    parameters: dict[str, str] = {}
    form = draw(st.sampled_from(["json"] * 7 + ["text", "none", "none"]))
    if form != "none":
        config = draw(model_configs(name), label="config")
        as_json = _as_json(config) if form == "json" else None
        parameters["config"] = as_json if as_json is not None else config
    for key in draw(st.lists(st.sampled_from(FILE_KEYS), max_size=2, unique=True)):
        content = MODEL_FILES[draw(st.sampled_from(sorted(MODEL_FILES)))]
        encoded = base64.b64encode(content.encode()).decode()
        parameters[key] = "!not base64" if draw(st.integers(0, 9)) == 0 else encoded
    return parameters


def _escapes(key: str) -> bool:
    """A file path tritonx refuses: empty, leaving the model directory, or ending
    in '/' (naming no file)."""
    text = key.removeprefix("file:").lstrip("/")
    parts = PurePosixPath(text).parts
    return not parts or ".." in parts or text.endswith("/")


def _normalised(seen: dict[str, Any]) -> dict[str, Any]:
    return json.loads(_OVERRIDE_DIR.sub("<override>/", json.dumps(seen)))


@pytest.mark.replaces_crashed_reference
@pytest.mark.timeout(120 + 10 * EXAMPLES)  # a load may take a stub's start-up
@config_fuzz_settings(EXAMPLES)
@given(data=st.data())
def test_load_overrides_as_in_triton(pair: Pair, data: st.DataObject) -> None:
    name = next(pair.names).replace("fz", "lo")
    if data.draw(st.booleans(), label="on disk"):
        Case(name, f'name: "{name}"\nbackend: "python"\n{BASE_IO}').write(pair.repo)
    parameters = data.draw(load_bodies(name), label="parameters")
    body = json.dumps({"parameters": parameters}).encode()
    files = [key for key in parameters if key.startswith("file:")]
    if "config" in parameters and any(_escapes(key) for key in files):
        # tritonx refuses a file path that is empty, leaves the model directory or
        # names no file (docs/architecture.md); Triton 2.51 writes the first two
        # wherever they point and fails to poll the third.
        ours = pair.ours_load(name, body)
        assert ours[0] == 400 and ours[1].startswith("invalid file path '"), ours
        return
    ours, theirs = pair.observe(name, load_body=body)
    assert pair.ours.process.poll() is None, pair.ours.log_text()[-3000:]
    if theirs is None:
        print(f"load fuzz: the reference died or hung on\n{body[:2000]!r}")
        reject()
    assert _normalised(ours) == _normalised(theirs), f"load body:\n{body[:3000]!r}"
