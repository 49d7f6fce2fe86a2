"""tritonx-server's command line: Triton's flags, defaults, errors and startup."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from serverutil import run_server

from tritonx.cli import UsageError, parse_args, parse_bool
from tritonx.server_options import ServerOptions

SRC = Path(__file__).resolve().parents[1] / "python"


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if os.environ.get("TRITONX_TEST_SOURCE_TREE"):
        env["PYTHONPATH"] = str(SRC) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run(
        [sys.executable, "-m", "tritonx", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )


def test_defaults_match_tritonserver() -> None:
    options, log, warnings = parse_args(["--model-repository=/models"])
    assert options.log == log
    expected = ServerOptions(model_repositories=[Path("/models")], log=log)
    assert options == expected
    assert (options.http_port, options.grpc_port, options.metrics_port) == (
        8000,
        8001,
        8002,
    )
    assert options.exit_on_error and options.strict_readiness
    assert options.exit_timeout_secs == 30
    assert options.model_control_mode == "none"
    assert options.model_load_thread_count == 4
    assert options.auto_complete
    assert options.server_id == "triton"
    assert options.metrics_address is None  # follows --http-address, like Triton
    assert (log.verbose, log.info, log.warning, log.error) == (0, True, True, True)
    assert warnings == []


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("true", True),
        ("TRUE", True),
        ("on", True),
        ("1", True),
        ("false", False),
        ("Off", False),
        ("0", False),
    ],
)
def test_boolean_spellings(text: str, value: bool) -> None:
    assert parse_bool(text) is value
    options, _, _ = parse_args(["--model-store=/m", f"--exit-on-error={text}"])
    assert options.exit_on_error is value
    options, _, _ = parse_args(["--model-store=/m", "--allow-grpc", text])
    assert options.allow_grpc is value


def test_repeatable_and_aliased_flags() -> None:
    options, _, _ = parse_args(
        [
            "--model-repository=/a",
            "--model-store",
            "/b",
            "--model-control-mode=explicit",
            "--load-model=x",
            "--load-model",
            "y",
            "--backend-config=python,shm-default-byte-size=1048576",
            "--backend-config=python,stub-timeout-seconds=5",
            "--backend-config=default-max-batch-size=8",
        ]
    )
    assert options.model_repositories == [Path("/a"), Path("/b")]
    assert options.startup_models == ["x", "y"]
    assert options.backend_config == {
        "python": {"shm-default-byte-size": "1048576", "stub-timeout-seconds": "5"},
        "": {"default-max-batch-size": "8"},
    }


def test_auto_complete_flags() -> None:
    options, _, _ = parse_args(["--model-store=/m", "--disable-auto-complete-config"])
    assert not options.auto_complete
    options, _, warnings = parse_args(
        ["--model-store=/m", "--strict-model-config=true"]
    )
    assert not options.auto_complete
    assert any("deprecated" in w for w in warnings)
    options, _, _ = parse_args(["--model-store=/m", "--strict-model-config=false"])
    assert options.auto_complete


def test_log_and_metrics_flags() -> None:
    options, log, _ = parse_args(
        [
            "--model-store=/m",
            "--log-verbose=1",
            "--log-info=false",
            "--log-format=ISO8601",
            "--log-file=/tmp/x.log",
            "--metrics-interval-ms=500",
            "--allow-cpu-metrics=0",
            "--http-address=127.0.0.1",
            "--id=edge",
        ]
    )
    assert (log.verbose, log.info, log.format) == (1, False, "ISO8601")
    assert log.file == Path("/tmp/x.log")
    assert options.metrics_interval_ms == 500.0
    assert not options.allow_cpu_metrics
    assert options.server_id == "edge"


def test_memory_pool_flags() -> None:
    options, _, warnings = parse_args(
        [
            "--model-store=/m",
            "--pinned-memory-pool-byte-size=0",
            "--cuda-memory-pool-byte-size=0:1024",
            "--cuda-memory-pool-byte-size=1:2048",
        ]
    )
    assert options.pinned_memory_pool_byte_size == 0
    assert options.cuda_memory_pool_byte_size == {0: 1024, 1: 2048}
    assert not any("pool" in w for w in warnings)  # no longer "ignored"
    defaults, _, _ = parse_args(["--model-store=/m"])
    assert defaults.pinned_memory_pool_byte_size is None  # the shared 256 MiB pool


def test_host_policy_flags() -> None:
    """Repeatable; the name ends at the first ',' and the setting at the next '='
    (so a value may hold commas and '='); a later value for a setting wins. Values
    are not read here: Triton reads them when an instance uses the policy."""
    options, _, warnings = parse_args(
        [
            "--model-store=/m",
            "--host-policy=gpu_0,numa-node=0",
            "--host-policy=gpu_0,cpu-cores=0-3,8-11",
            "--host-policy=cpu,cpu-cores=0-0",
            "--host-policy=cpu,cpu-cores=1-1",
            "--host-policy=odd,numa-node=not=checked",
        ]
    )
    assert options.host_policies == {
        "gpu_0": {"numa-node": "0", "cpu-cores": "0-3,8-11"},
        "cpu": {"cpu-cores": "1-1"},
        "odd": {"numa-node": "not=checked"},
    }
    assert not any("host-policy" in w for w in warnings)  # no longer "ignored"
    assert parse_args(["--model-store=/m"])[0].host_policies == {}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--host-policy=cpu"],
            'Bad option: "--host-policy".\n--host-policy option format is '
            "'<policy name>,<setting>=<value>'. Got cpu",
        ),
        (["--host-policy=cpu,=1"], "Got cpu,=1"),
        (["--host-policy=,cpu-cores=0-1"], "Got ,cpu-cores=0-1"),
        (["--host-policy=cpu,cpu-cores"], "Got cpu,cpu-cores"),
        (
            # every flag's shape is checked before any setting name, as in Triton
            ["--host-policy=cpu,threads=2", "--host-policy=x"],
            "format is '<policy name>,<setting>=<value>'. Got x",
        ),
        (
            ["--host-policy=cpu,threads=2"],
            "Failed to build Triton option:\nerror: setting host policy: "
            "Unsupported - Unsupported host policy setting 'threads' is specified, "
            "supported settings are 'numa-node', 'cpu-cores'",
        ),
    ],
)
def test_bad_host_policy_flags(args: list[str], message: str) -> None:
    with pytest.raises(UsageError) as error:
        parse_args(["--model-store=/m", *args])
    assert message in str(error.value)


def test_repoagent_directory_is_recorded() -> None:
    # Named in the error for an unknown repository agent (repository/agents.py).
    options, _, warnings = parse_args(["--model-store=/m", "--repoagent-directory=/a"])
    assert options.repoagent_directory == "/a"
    assert not any("repoagent" in w for w in warnings)
    defaults, _, _ = parse_args(["--model-store=/m"])
    assert defaults.repoagent_directory == "/opt/tritonserver/repoagents"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--exit-on-error=maybe"], "invalid value for bool option: maybe"),
        (["--http-port=abc"], "Invalid option value. Got abc"),
        (["--model-control-mode=auto"], "invalid argument for --model-control-mode"),
        (["--load-model=a"], "requires setting '--model-control-mode=explicit'"),
        (
            ["--model-control-mode=explicit", "--load-model=*", "--load-model=a"],
            "Wildcard model name '*' must be the ONLY startup model",
        ),
        (["--backend-config=python"], "'<backend name>,<setting>=<value>'"),
        (
            ["--cuda-memory-pool-byte-size=64"],
            "--cuda-memory-pool-byte-size option format is "
            "'<GPU device ID>:<pool byte size>'. Got 64",
        ),
        (["--cuda-memory-pool-byte-size=0:x"], "Invalid option value. Got x"),
        (["--pinned-memory-pool-byte-size=big"], "Invalid option value. Got big"),
        (["--grpc-max-stream-backlog-bytes=-1"], "Invalid option value. Got -1"),
    ],
)
def test_bad_values(args: list[str], message: str) -> None:
    with pytest.raises(UsageError, match=r".*") as error:
        parse_args(["--model-store=/m", *args])
    assert message in str(error.value)


def test_grpc_restriction_and_forwarding_flags() -> None:
    options, _, _ = parse_args(
        [
            "--model-store=/m",
            "--grpc-restricted-protocol=inference,health:infer-key=s=1",
            "--grpc-restricted-protocol=model-repository:admin=x",
            "--grpc-header-forward-pattern=x-.*",
        ]
    )
    # The value keeps everything after the first '=', like tritonserver.
    assert options.grpc_restricted_protocols == [
        ("inference", "infer-key", "s=1"),
        ("health", "infer-key", "s=1"),
        ("model-repository", "admin", "x"),
    ]
    assert options.grpc_header_forward_pattern == "x-.*"
    with pytest.raises(UsageError) as error:
        parse_args(["--model-store=/m", "--grpc-restricted-protocol=infer:k=v"])
    assert str(error.value) == (
        'Bad option: "--grpc-restricted-protocol".\n'
        "unknown restricted protocol 'infer'"
    )


def test_http_engine_and_thread_count() -> None:
    options, _, warnings = parse_args(["--model-store=/m"])
    assert options.http_engine == "auto"
    options, _, warnings = parse_args(
        ["--model-store=/m", "--http-engine=native", "--http-thread-count=3"]
    )
    assert (options.http_engine, options.http_thread_count) == ("native", 3)
    assert not warnings
    with pytest.raises(UsageError, match="--http-engine"):
        parse_args(["--model-store=/m", "--http-engine=rust"])


def test_unknown_flag_fails_with_clear_message() -> None:
    result = run_cli("--model-store=/m", "--no-such-flag=1")
    assert result.returncode != 0
    assert "unrecognized option '--no-such-flag=1'" in result.stderr
    assert "--help" in result.stderr


def test_unsupported_triton_flag_is_refused_not_ignored(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A tritonserver flag listed in UNSUPPORTED_FLAGS (none at present) is refused
    in words naming tritonx."""
    from tritonx import cli

    monkeypatch.setattr(cli, "UNSUPPORTED_FLAGS", frozenset({"--no-such-triton-flag"}))
    with pytest.raises(UsageError) as refused:
        parse_args(["--model-store=/m", "--no-such-triton-flag=1"])
    assert "'--no-such-triton-flag' of tritonserver is not supported" in str(
        refused.value
    )


def test_model_namespacing_flag() -> None:
    options, _, _ = parse_args(["--model-store=/m"])
    assert options.model_namespacing is False
    options, _, _ = parse_args(["--model-store=/m", "--model-namespacing=on"])
    assert options.model_namespacing is True
    with pytest.raises(UsageError, match="invalid value for bool option: maybe"):
        parse_args(["--model-store=/m", "--model-namespacing=maybe"])


def test_trace_flags() -> None:
    options, _, warnings = parse_args(
        [
            "--model-repository=/m",
            "--trace-config=triton,file=/t.json",
            "--trace-config=triton,log-frequency=5",
            "--trace-config=level=TIMESTAMPS",
            "--trace-config=level=TENSORS",
            "--trace-config=rate=7",
            "--trace-config=count=3",
            "--trace-config=opentelemetry,resource=service.name=x",
        ]
    )
    trace = options.trace
    assert (trace.file, trace.log_frequency, trace.rate, trace.count) == (
        "/t.json",
        5,
        7,
        3,
    )
    assert trace.level == 0x4 | 0x8
    assert trace.resource == {"service.name": "x"}
    assert warnings == []
    options, _, warnings = parse_args(["--model-repository=/m", "--trace-rate=2"])
    assert options.trace.rate == 2
    assert warnings == [
        "Warning: '--trace-rate' has been deprecated and will be removed in future "
        "releases. Please use '--trace-config rate=<rate value> instead."
    ]
    for flag, message in (
        (
            "--trace-config=level=BAD",
            'Bad option: "--trace-config level".\n'
            "invalid value for trace level option: bad",
        ),
        (
            "--trace-config=rate=abc",
            'Bad option: "--trace-config rate".\nInvalid option value. Got abc',
        ),
        (
            "--trace-config=level",
            'Bad option: "--trace-config".\n--trace-config '
            "option format is '<trace mode>,<setting>=<value>'. Got level",
        ),
        (
            "--trace-config=xx,file=a",
            'Bad option: "--trace-config".\ninvalid value '
            'for trace mode option: xx. Available options are "triton" and '
            '"opentelemetry"',
        ),
    ):
        with pytest.raises(UsageError) as info:
            parse_args(["--model-repository=/m", flag])
        assert str(info.value) == message


def test_http_restriction_forwarding_and_tls_flags() -> None:
    options, _, _ = parse_args(
        [
            "--model-store=/m",
            "--http-restricted-api=inference,health:infer-key=s=1",
            "--http-restricted-api=model-repository:admin=x",
            "--http-header-forward-pattern=(?-i)X-.*",
            "--http-use-ssl-mutual=true",
            "--http-server-cert=/c.pem",
            "--http-server-key=/k.pem",
            "--http-root-cert=/ca.pem",
        ]
    )
    assert options.http_restricted_apis == {
        "inference": ("infer-key", "s=1"),
        "health": ("infer-key", "s=1"),
        "model-repository": ("admin", "x"),
    }
    assert options.http_header_forward_pattern == "(?-i)X-.*"
    assert options.http_use_ssl and options.http_use_ssl_mutual  # mutual implies TLS
    assert options.http_root_cert == Path("/ca.pem")


@pytest.mark.parametrize(
    ("flag", "message"),
    [
        # tritonserver 2.51's answers, checked with the real binary.
        (
            "--http-restricted-api=bogus:k=v",
            "Bad option: \"--http-restricted-api\".\nunknown restricted api 'bogus'",
        ),
        (
            "--http-restricted-api=health",
            'Bad option: "--http-restricted-api".\n--http-restricted-api option '
            "format is '<config name>:<setting>=<value>'. Got health",
        ),
        (
            "--http-restricted-api=health,health:k=v",
            "Bad option: \"--http-restricted-api\".\nrestricted api 'health' can not "
            "be specified in multiple config groups",
        ),
        (
            "--http-header-forward-pattern=(",
            'Bad option: "--http-header-forward-pattern".\ninvalid regular expression',
        ),
    ],
)
def test_http_access_flag_errors(flag: str, message: str) -> None:
    with pytest.raises(UsageError) as error:
        parse_args(["--model-store=/m", flag])
    assert str(error.value).startswith(message)


def test_bad_boolean_exits_1() -> None:
    result = run_cli("--model-store=/m", "--strict-readiness=yes")
    assert result.returncode == 1
    assert 'Bad option: "--strict-readiness".' in result.stderr


def test_missing_repository_is_an_error() -> None:
    result = run_cli("--http-port=0", "--grpc-port=0", "--metrics-port=0")
    assert result.returncode == 1
    assert "--model-repository must be specified" in result.stderr


def test_help_lists_triton_flags() -> None:
    result = run_cli("--help")
    assert result.returncode == 0
    for flag in ("--model-repository", "--exit-timeout-secs", "--backend-config"):
        assert flag in result.stdout


# -- real server in a subprocess -------------------------------------------------


def test_smoke_serves_example_repository(example_repo: Path) -> None:
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient

    with run_server(example_repo, "--model-control-mode=explicit") as server:
        pass  # nothing loaded in explicit mode without --load-model
    assert server.process.returncode == 0

    with run_server(
        example_repo,
        "--model-control-mode=explicit",
        "--load-model=add_sub",
        "--load-model=identity",
        "--cache-directory=/opt/tritonserver/caches",
    ) as server:
        text = server.log_text()
        assert "--cache-directory has no effect" in text
        http = httpclient.InferenceServerClient(server.http_url)
        assert http.is_server_ready()
        assert http.is_model_ready("add_sub")
        a = np.arange(4, dtype=np.float32)
        b = np.ones(4, dtype=np.float32)
        inputs = [
            httpclient.InferInput("INPUT0", [4], "FP32"),
            httpclient.InferInput("INPUT1", [4], "FP32"),
        ]
        inputs[0].set_data_from_numpy(a)
        inputs[1].set_data_from_numpy(b)
        result = http.infer("add_sub", inputs)
        np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), a + b)
        np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), a - b)

        grpc = grpcclient.InferenceServerClient(server.grpc_url)
        x = np.arange(16, dtype=np.float32).reshape(1, 16)
        ginput = grpcclient.InferInput("INPUT0", [1, 16], "FP32")
        ginput.set_data_from_numpy(x)
        out = grpc.infer("identity", [ginput]).as_numpy("OUTPUT0")
        np.testing.assert_array_equal(out, x)
        grpc.close()
    assert server.process.returncode == 0


def test_frontends_can_be_disabled(example_repo: Path) -> None:
    with run_server(
        example_repo,
        "--model-control-mode=explicit",
        "--allow-grpc=false",
        "--allow-metrics=false",
    ) as server:
        assert set(server.ports) == {"http"}
    text = server.log_text()
    assert "Started GRPCInferenceService" not in text
    assert "Started Metrics Service" not in text


BAD_MODEL = """
class TritonPythonModel:
    def initialize(self, args):
        raise RuntimeError("boom in initialize")

    def execute(self, requests):
        return []
"""

GOOD_CONFIG = """
name: "{name}"
backend: "python"
max_batch_size: 0
input [ {{ name: "INPUT0", data_type: TYPE_FP32, dims: [ 1 ] }} ]
output [ {{ name: "OUTPUT0", data_type: TYPE_FP32, dims: [ 1 ] }} ]
"""

GOOD_MODEL = """
import triton_python_backend_utils as pb_utils

class TritonPythonModel:
    def execute(self, requests):
        return [
            pb_utils.InferenceResponse(output_tensors=[
                pb_utils.Tensor("OUTPUT0", pb_utils.get_input_tensor_by_name(
                    r, "INPUT0").as_numpy())])
            for r in requests
        ]
"""


def test_exit_on_error(write_model: Callable[..., Path]) -> None:
    write_model("good", GOOD_CONFIG.format(name="good"), GOOD_MODEL)
    repo = write_model("bad", GOOD_CONFIG.format(name="bad"), BAD_MODEL)

    with run_server(repo, expect_ready=False) as server:
        assert server.process.wait(timeout=60) == 1
    text = server.log_text()
    assert "boom in initialize" in text
    assert "error: creating server:" in text
    assert "Started HTTPService" not in text

    with run_server(repo, "--exit-on-error=false", "--strict-readiness=false") as srv:
        import tritonclient.http as httpclient

        http = httpclient.InferenceServerClient(srv.http_url)
        assert http.is_model_ready("good")
        assert not http.is_model_ready("bad")
        assert http.is_server_ready()
    assert srv.process.returncode == 0


def test_log_lines_use_tritons_shape(tmp_path: Path) -> None:
    import logging
    import re

    from tritonx.logging_setup import LogOptions, configure

    log_file = tmp_path / "server.log"
    root = logging.getLogger("tritonx")
    saved = (list(root.handlers), root.level, root.propagate)
    try:
        configure(LogOptions(file=log_file, warning=False))
        logging.getLogger("tritonx.server").info("Started HTTPService at 0.0.0.0:1")
        logging.getLogger("tritonx.server").warning("dropped by --log-warning=false")
        logging.getLogger("tritonx.server").debug("dropped without --log-verbose")
        configure(LogOptions(file=log_file, verbose=1, format="ISO8601"))
        logging.getLogger("tritonx.server").debug("verbose line")
        logging.getLogger("tritonx.server").error("an error")
    finally:
        # Leave the pytest process's logging as it was (caplog relies on it).
        for handler in list(root.handlers):
            root.removeHandler(handler)
            handler.close()
        root.handlers[:], root.level, root.propagate = saved
    lines = log_file.read_text().splitlines()
    assert len(lines) == 3, lines
    default = r'I\d{4} \d\d:\d\d:\d\d\.\d{6} \d+ test_cli\.py:\d+\] "(.*)"'
    assert re.fullmatch(default, lines[0])
    assert (
        re.fullmatch(default, lines[0]).group(1) == "Started HTTPService at 0.0.0.0:1"
    )
    iso = r'\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ ([IE]) \d+ test_cli\.py:\d+\] "(.*)"'
    assert re.fullmatch(iso, lines[1]).groups() == ("I", "verbose line")
    assert re.fullmatch(iso, lines[2]).groups() == ("E", "an error")


def test_log_settings_api_changes_live_logging(example_repo: Path) -> None:
    import tritonclient.grpc as grpcclient

    with run_server(example_repo, "--model-control-mode=explicit") as server:
        client = grpcclient.InferenceServerClient(server.grpc_url)
        settings = client.get_log_settings(as_json=True)["settings"]
        assert settings["log_info"]["bool_param"] is True
        client.update_log_settings({"log_info": False})
        settings = client.get_log_settings(as_json=True)["settings"]
        assert settings["log_info"]["bool_param"] is False
        client.close()
    # Info lines of the shutdown are gone; the server still stopped cleanly.
    assert server.process.returncode == 0
    assert "Waiting for in-flight requests" not in server.log_text()


def test_allow_client_shm() -> None:
    options, _, _ = parse_args(["--model-store=/m"])
    assert options.allow_client_shm is True  # Triton 2.51 always allows it
    options, _, _ = parse_args(["--model-store=/m", "--allow-client-shm=false"])
    assert options.allow_client_shm is False


def test_grpc_stream_backlog_bound() -> None:
    # tritonx's bound on a stream's unread responses; 0 lifts it (Triton has none).
    defaults, _, _ = parse_args(["--model-store=/m"])
    assert defaults.grpc_max_stream_backlog_bytes == 1 << 30
    options, _, _ = parse_args(
        ["--model-store=/m", "--grpc-max-stream-backlog-bytes=0"]
    )
    assert options.grpc_max_stream_backlog_bytes == 0
