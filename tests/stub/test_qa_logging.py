"""pb_utils.Logger lines under the server's log settings, after Triton's
L0_backend_python/logging QA, as a differential test: the same model logs at
every level while the settings change over /v2/logging (default, verbose level
1, info/warning/error off), and the model's lines in the server log (level,
source file and line, message; not the time or the thread) must match Triton
2.51's, in order.

No sleeps: after the last phase the test waits for an end marker the model logs
at error level, which follows every earlier line of the model in the log."""

from __future__ import annotations

import json
import re
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import tritonclient.http as httpclient
from grpcutil import wait_until
from serverutil import RunningServer, differential, run_either, split_glued_entries
from testmodels import write_model

CONFIG = """
name: "chatty"
backend: "python"
max_batch_size: 0
input [ { name: "TAG", data_type: TYPE_STRING, dims: [ 1 ] } ]
output [ { name: "OUT", data_type: TYPE_STRING, dims: [ 1 ] } ]
"""

MODEL = """
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        logger = pb_utils.Logger
        out = []
        for request in requests:
            tag = pb_utils.get_input_tensor_by_name(request, "TAG").as_numpy()
            tag = tag.reshape(-1)[0].decode()
            if tag == "end":
                logger.log_error("End Msg!")
            else:
                logger.log(tag + " Specific Msg!", logger.INFO)
                logger.log_info(tag + " Info Msg!")
                logger.log_warn(tag + " Warning Msg!")
                logger.log_error(tag + " Error Msg!")
                logger.log_verbose(tag + " Verbose Msg!")
                logger.log(tag + " Specific verbose Msg!", logger.VERBOSE)
            out.append(pb_utils.InferenceResponse(
                [pb_utils.Tensor("OUT", pb_utils.get_input_tensor_by_name(
                    request, "TAG").as_numpy())]))
        return out
"""

LINE = re.compile(r"^([IWEV])\d{4} [\d:.]+ +\d+ (\S+):(\d+)\] \"?(.*?)\"?$")


def _settings(server: RunningServer, settings: dict[str, Any]) -> None:
    request = urllib.request.Request(
        f"http://{server.http_url}/v2/logging",
        data=json.dumps(settings).encode(),
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 200


def _send(client: httpclient.InferenceServerClient, tag: str) -> None:
    inputs = [httpclient.InferInput("TAG", [1], "BYTES")]
    inputs[0].set_data_from_numpy(np.array([tag.encode()], dtype=np.object_))
    client.infer("chatty", inputs)


def _model_lines(server: RunningServer) -> list[tuple[str, ...]]:
    seen = []
    for line in split_glued_entries(server.log_text()).splitlines():
        match = LINE.match(line.strip())
        if match and match.group(4).endswith("Msg!"):
            seen.append(match.groups())
    return seen


def test_logger_lines_follow_the_log_settings(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    write_model(repo, "chatty", CONFIG, MODEL)

    def scenario(kind: str) -> dict[str, Any]:
        with run_either(kind, repo) as server:
            client = httpclient.InferenceServerClient(server.http_url)

            def step(tag: str, last: str = "Specific verbose") -> None:
                # Triton 2.51 logs a stub's lines from a queue, under the settings
                # of when it takes them: the step's last line (printed whatever
                # the settings) must be in the log before the settings change.
                _send(client, tag)
                wait_until(
                    lambda: (
                        (f"{tag} {last} Msg!",)
                        in {line[3:] for line in _model_lines(server)}
                    ),
                    f"the {tag} step's lines in the log",
                )

            step("default", last="Error")  # no verbose lines yet
            _settings(server, {"log_verbose_level": 1})
            step("verbose")
            _settings(server, {"log_info": False, "log_warning": False})
            step("quiet")
            _settings(server, {"log_error": False})
            step("silent")
            _settings(server, {"log_error": True})
            _send(client, "end")
            client.close()
            wait_until(
                lambda: any("End Msg!" in line[3] for line in _model_lines(server)),
                "the end marker in the log",
            )
            return {"lines": _model_lines(server)}

    seen = differential(scenario)
    # verbose lines print as "I" and only the verbose level gates them, not
    # log_info; the source line is the model's own
    info, warning, error, verbose, specific_verbose = (
        ("I", "16"), ("W", "17"), ("E", "18"), ("I", "19"), ("I", "20"),
    )  # fmt: skip
    expected = [
        ("I", "15", "default Specific Msg!"),
        (*info, "default Info Msg!"),
        (*warning, "default Warning Msg!"),
        (*error, "default Error Msg!"),
        ("I", "15", "verbose Specific Msg!"),
        (*info, "verbose Info Msg!"),
        (*warning, "verbose Warning Msg!"),
        (*error, "verbose Error Msg!"),
        (*verbose, "verbose Verbose Msg!"),
        (*specific_verbose, "verbose Specific verbose Msg!"),
        (*error, "quiet Error Msg!"),
        (*verbose, "quiet Verbose Msg!"),
        (*specific_verbose, "quiet Specific verbose Msg!"),
        (*verbose, "silent Verbose Msg!"),
        (*specific_verbose, "silent Specific verbose Msg!"),
        ("E", "13", "End Msg!"),
    ]
    assert seen["lines"] == [(lv, "model.py", ln, msg) for lv, ln, msg in expected]
