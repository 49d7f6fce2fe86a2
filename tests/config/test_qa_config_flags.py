"""L0_backend_config and L0_custom_model_config, tritonx against Triton 2.51: the
command-line values the server refuses, and which config file
``--model-config-name`` picks.

A refused value ends the server before it starts (exit status 1) with
tritonserver's 'Bad option: "<flag>".' line and its reason; tritonx prints a
pointer to --help where tritonserver prints its whole usage text, so the two
outputs are compared on those two lines. L0_backend_config's other cases read
verbose log lines of the ONNX backend's default-max-batch-size, which Python
models do not use; the custom-config cases already in
tests/repository/test_qa_lifecycle.py (a named file wins over config.pbtxt, a
missing one falls back to it) are not repeated.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import tritonclient.http as httpclient
from config_diff import MODEL_PY
from serverutil import differential, reference_command, run_either

SRC = Path(__file__).resolve().parents[2] / "python"

# (flag, tritonserver's reason): each refused at start-up.
REFUSED = [
    (
        "--backend-config=,default-max-batch-size=3",
        "No backend specified. --backend-config option format is <backend "
        "name>,<setting>=<value> or <setting>=<value>. Got ,default-max-batch-size=3",
    ),
    (
        "--backend-config=default-max-batch-size=",
        "--backend-config option format is '<backend name>,<setting>=<value>'. Got "
        "default-max-batch-size=",
    ),
    (
        "--backend-config=default-max-batch-size",
        "--backend-config option format is '<backend name>,<setting>=<value>'. Got "
        "default-max-batch-size",
    ),
    (
        "--backend-config=python,=1",
        "--backend-config option format is '<backend name>,<setting>=<value>'. Got "
        "python,=1",
    ),
    ("--model-config-name=", "Error: empty argument for --model-config-name"),
]


def _start(command: list[str], repo: Path, flag: str) -> tuple[int, str]:
    """Exit status and output of a server given ``flag`` (ports 0: a server that
    wrongly starts binds nothing fixed, and is ended by the timeout)."""
    env = dict(os.environ)
    if os.environ.get("TRITONX_TEST_SOURCE_TREE"):
        env["PYTHONPATH"] = str(SRC) + os.pathsep + env.get("PYTHONPATH", "")
    args = [
        f"--model-repository={repo}",
        "--http-port=0",
        "--grpc-port=0",
        "--metrics-port=0",
        flag,
    ]
    try:
        done = subprocess.run(
            [*command, *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
    except subprocess.TimeoutExpired:
        return -1, "still running after 60 s"
    return done.returncode, done.stdout + done.stderr


def _refusal(output: str) -> list[str]:
    """The 'Bad option' line and the reason after it."""
    lines = output.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("Bad option: "):
            return lines[i : i + 2]
    return []


@pytest.mark.parametrize(("flag", "reason"), REFUSED, ids=[f for f, _ in REFUSED])
def test_refused_at_start_up(tmp_path: Path, flag: str, reason: str) -> None:
    name = flag.split("=", 1)[0]
    expected = (1, [f'Bad option: "{name}".', reason])
    status, output = _start([sys.executable, "-m", "tritonx"], tmp_path, flag)
    assert (status, _refusal(output)) == expected, output
    reference = reference_command()
    if reference is not None:
        status, output = _start(reference, tmp_path, flag)
        assert (status, _refusal(output)) == expected, output[-2000:]


def _model(repo: Path) -> None:
    """Versions 1-3; config.pbtxt serves 1 and 3, configs/config.pbtxt 3,
    configs/h100.pbtxt 1 (each also says so in a parameter)."""
    model = repo / "m"
    for version in (1, 2, 3):
        (model / str(version)).mkdir(parents=True)
        (model / str(version) / "model.py").write_text(MODEL_PY)
    (model / "configs").mkdir()
    for path, versions in (
        ("config.pbtxt", "1, 3"),
        ("configs/config.pbtxt", "3"),
        ("configs/h100.pbtxt", "1"),
    ):
        (model / path).write_text(
            'backend: "python"\n'
            f"version_policy: {{ specific: {{ versions: [ {versions} ] }} }}\n"
            'parameters { key: "file" value: { string_value: "' + path + '" } }\n'
            'input [ { name: "I" data_type: TYPE_FP32 dims: [ 1 ] } ]\n'
            'output [ { name: "O" data_type: TYPE_FP32 dims: [ 1 ] } ]\n'
        )


@pytest.mark.parametrize(
    ("config_name", "expected"),
    [("config", ("configs/config.pbtxt", [False, False, True]))],
)
def test_config_named_config(
    tmp_path: Path, config_name: str, expected: tuple[str, list[bool]]
) -> None:
    """--model-config-name=config takes configs/config.pbtxt, not the model's
    config.pbtxt of the same name."""
    repo = tmp_path / "repo"
    _model(repo)

    def scenario(kind: str) -> dict[str, object]:
        with (
            run_either(kind, repo, f"--model-config-name={config_name}") as server,
            httpclient.InferenceServerClient(server.http_url) as client,
        ):
            config = client.get_model_config("m")
            return {
                "file": config["parameters"]["file"]["string_value"],
                "versions": config["version_policy"],
                "ready": [client.is_model_ready("m", str(v)) for v in (1, 2, 3)],
            }

    seen = differential(scenario)
    assert (seen["file"], seen["ready"]) == expected
