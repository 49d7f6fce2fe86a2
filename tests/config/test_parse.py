"""Reading config files and JSON overrides; messages match Triton 2.51's."""

from __future__ import annotations

from pathlib import Path

import pytest

from tritonx.config import (
    ConfigPollError,
    config_from_json,
    load_model_config,
    parse_config_text,
)
from tritonx.errors import InvalidArgumentError

from .conftest import MakeModel

IO = """
input [ { name: "IN0" data_type: TYPE_FP32 dims: [ 4 ] } ]
output [ { name: "OUT0" data_type: TYPE_FP32 dims: [ 4 ] } ]
"""


@pytest.mark.parametrize(
    "text",
    [
        'backend: "python"\nfoo: 1\n',  # unknown field
        'input [ { name: "IN0" data_type: TYPE_FOO dims: [ 4 ] } ]',  # bad enum
        'backend: "python"\ninput [ { name: "IN0" ',  # truncated
        "max_batch_size: 1.5",  # wrong scalar type
    ],
)
def test_text_parse_errors_name_the_file(make_model: MakeModel, text: str) -> None:
    model_dir = make_model("bad", text)
    with pytest.raises(ConfigPollError) as info:
        load_model_config(model_dir)
    assert str(info.value) == (
        f"failed to read text proto from {model_dir / 'config.pbtxt'}"
    )


def test_parse_config_text_roundtrip() -> None:
    config = parse_config_text('name: "a"\nmax_batch_size: 3\n' + IO, "x")
    assert config.name == "a"
    assert config.max_batch_size == 3
    assert [i.name for i in config.input] == ["IN0"]


def test_missing_config_without_auto_complete(make_model: MakeModel) -> None:
    model_dir = make_model("noconf")
    with pytest.raises(ConfigPollError) as info:
        load_model_config(model_dir, auto_complete=False)
    assert str(info.value) == (
        f"failed to open text file for read {model_dir / 'config.pbtxt'}: "
        "No such file or directory"
    )


def test_missing_config_with_auto_complete(make_model: MakeModel) -> None:
    config = load_model_config(make_model("noconf"))
    assert config.name == "noconf"
    assert config.backend == "python"
    assert config.default_model_filename == "model.py"
    assert config.max_batch_size == 0
    assert config.instance_group[0].name == "noconf"


def test_config_name_selects_configs_dir(make_model: MakeModel) -> None:
    model_dir = make_model("sel", 'backend: "python"\nmax_batch_size: 2\n')
    (model_dir / "configs").mkdir()
    (model_dir / "configs" / "alt.pbtxt").write_text(
        'backend: "python"\nmax_batch_size: 7\n'
    )
    assert load_model_config(model_dir, config_name="alt").max_batch_size == 7
    # A name without a file falls back to config.pbtxt.
    assert load_model_config(model_dir, config_name="other").max_batch_size == 2
    assert load_model_config(model_dir).max_batch_size == 2


def test_config_name_without_any_file_auto_completes(make_model: MakeModel) -> None:
    model_dir = make_model("only_other")
    (model_dir / "configs").mkdir()
    (model_dir / "configs" / "other.pbtxt").write_text("max_batch_size: 5\n")
    assert load_model_config(model_dir, config_name="alt").max_batch_size == 0


def test_no_backend_determinable(make_model: MakeModel) -> None:
    model_dir = make_model("f", "max_batch_size: 1\n", files={"1/x.bin": b""})
    with pytest.raises(ConfigPollError) as info:
        load_model_config(model_dir, auto_complete=False)
    assert str(info.value) == (
        "Invalid model name: Could not determine backend for model 'f' with no "
        "backend in model configuration. Expected model name of the form "
        "'model.<backend_name>'."
    )


def test_json_override_replaces_file(make_model: MakeModel) -> None:
    model_dir = make_model("ov", 'backend: "python"\nmax_batch_size: 2\n')
    config = load_model_config(
        model_dir,
        config_override='{"backend": "python", "max_batch_size": 3, "input": '
        '[{"name": "A", "data_type": "type_fp32", "dims": ["2"]}]}',
    )
    assert config.max_batch_size == 3
    assert config.input[0].data_type == 11  # TYPE_FP32, enum case-insensitive
    assert list(config.input[0].dims) == [2]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            '{"backend":"python","foo":1}',
            "Invalid config override: foo: Cannot find field.",
        ),
        ("[]", "Invalid config override: : Root element must be a message."),
        (
            '{"name":"zz","backend":"python"}',
            "unexpected directory name 'ov' for model 'zz', directory name must "
            "equal model name",
        ),
        (
            '{"backend":"python","max_batch_size":-1}',
            "'max_batch_size' must be non-negative value for ov",
        ),
    ],
)
def test_json_override_errors(
    make_model: MakeModel, override: str, message: str
) -> None:
    model_dir = make_model("ov")
    with pytest.raises(ConfigPollError) as info:
        load_model_config(model_dir, config_override=override)
    assert str(info.value) == message


def test_config_from_json_rejects_bad_values() -> None:
    with pytest.raises(InvalidArgumentError):
        config_from_json('{"max_batch_size": "abc"}')
    with pytest.raises(InvalidArgumentError):
        config_from_json('{"input": [{"name": "A", "data_type": "TYPE_XX"}]}')
    with pytest.raises(InvalidArgumentError):
        config_from_json("{not json")


def test_config_from_json_accepts_int_enums() -> None:
    config = config_from_json('{"input": [{"name": "A", "data_type": 7, "dims": [1]}]}')
    assert config.input[0].data_type == 7


def test_path_is_accepted_as_str(make_model: MakeModel) -> None:
    model_dir = make_model("strpath", 'backend: "python"\n')
    assert load_model_config(Path(str(model_dir))).name == "strpath"
