"""--metrics-config: latency counters and summaries, against Triton 2.51.

The differential tests run each configuration on tritonx and, with
TRITONX_REFERENCE_CMD set, on the reference Triton, and compare which per-model
families appear (with HELP/TYPE), the quantile labels and the shape of the lines. The
distribution test makes a model sleep a duration chosen per request, so the summary's
quantiles are known from the traffic (not from the server's speed).
"""

from __future__ import annotations

import json
import math
import re
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from serverutil import RunningServer, infer_json, run_either

from tritonx.cli import UsageError, parse_args
from tritonx.metrics_config import DEFAULT_QUANTILES, MetricsConfig

SLEEPER_CONFIG = """
name: "{name}"
backend: "python"
max_batch_size: 0
input [ {{ name: "MS", data_type: TYPE_FP32, dims: [ 1 ] }} ]
output [ {{ name: "OUT", data_type: TYPE_FP32, dims: [ 1 ] }} ]
instance_group [ {{ count: 1, kind: KIND_CPU }} ]
{extra}
"""

# Sleeps the number of milliseconds it is sent.
SLEEPER_MODEL = """
import time

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            ms = pb_utils.get_input_tensor_by_name(request, "MS").as_numpy()
            time.sleep(float(ms[0]) / 1000.0)
            out = pb_utils.Tensor("OUT", ms)
            responses.append(pb_utils.InferenceResponse(output_tensors=[out]))
        return responses
"""

SUMMARIES = (
    "nv_inference_request_summary_us",
    "nv_inference_queue_summary_us",
    "nv_inference_compute_input_summary_us",
    "nv_inference_compute_infer_summary_us",
    "nv_inference_compute_output_summary_us",
)
CACHE_SUMMARIES = ("nv_cache_hit_summary_per_model", "nv_cache_miss_summary_per_model")
DURATION_COUNTERS = tuple(
    f"nv_inference_{kind}_duration_us"
    for kind in ("request", "queue", "compute_input", "compute_infer", "compute_output")
)


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("metrics_config")
    # "cached" enables the response cache in its config: Triton then gives it the
    # cache families and no request summary, with or without a server cache.
    for name, extra in (("sleeper", ""), ("cached", "response_cache { enable: true }")):
        (root / name / "1").mkdir(parents=True)
        (root / name / "config.pbtxt").write_text(
            SLEEPER_CONFIG.format(name=name, extra=extra)
        )
        (root / name / "1" / "model.py").write_text(SLEEPER_MODEL)
    return root


def _sleep(server: RunningServer, model: str, ms: float) -> None:
    inputs: list[dict[str, object]] = [
        {"name": "MS", "datatype": "FP32", "shape": [1], "data": [ms]}
    ]
    status, body = infer_json(server, model, inputs)
    assert status == 200, body


def _metrics(server: RunningServer) -> str:
    with urllib.request.urlopen(server.metrics_url, timeout=30) as response:
        return str(response.read().decode())


def _stats(server: RunningServer, model: str) -> dict[str, object]:
    url = f"http://{server.http_url}/v2/models/{model}/stats"
    with urllib.request.urlopen(url, timeout=30) as response:
        stats = json.loads(response.read())["model_stats"][0]
    assert isinstance(stats, dict)
    return stats


def _wait_success(server: RunningServer, model: str, count: int) -> None:
    """Triton counts a request just after answering it: wait for the count."""
    deadline = time.monotonic() + 30
    while True:
        stats = _stats(server, model)
        success = stats["inference_stats"]["success"]["count"]  # type: ignore[index]
        if success >= count or time.monotonic() > deadline:
            return
        time.sleep(0.05)


def _families(text: str) -> dict[str, tuple[str, str]]:
    """Per-model families (those with a model label) -> (HELP, TYPE)."""
    helps = dict(re.findall(r"^# HELP (\S+) (.*)$", text, re.MULTILINE))
    types = dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.MULTILINE))
    out = {}
    for name, typ in types.items():
        if re.search(rf'^{re.escape(name)}(_count|_sum)?{{model="', text, re.MULTILINE):
            out[name] = (helps.get(name, ""), typ)
    return out


def _lines(text: str, family: str, model: str) -> list[str]:
    """The family's lines for one model, numbers replaced by N (their shape)."""
    pattern = re.compile(rf'^{re.escape(family)}(_count|_sum)?{{model="{model}",')
    return [
        re.sub(r"\} (\d+|Nan)$", "} N", line)
        for line in text.splitlines()
        if pattern.match(line)
    ]


def _sample(text: str, name: str, model: str, quantile: str | None = None) -> float:
    labels = f'model="{model}",version="1"'
    if quantile is not None:
        labels += f',quantile="{quantile}"'
    match = re.search(
        rf"^{re.escape(name)}{{{re.escape(labels)}}} (\S+)$", text, re.MULTILINE
    )
    assert match, f"{name} {labels} missing"
    return float(match.group(1))


def _traffic(server: RunningServer) -> tuple[str, str]:
    """Metrics before any request (empty windows) and after a little traffic:
    three requests to sleeper, a miss and a hit to cached."""
    before = _metrics(server)
    for ms in (1, 2, 3):
        _sleep(server, "sleeper", ms)
    _sleep(server, "cached", 1)
    _sleep(server, "cached", 1)
    _wait_success(server, "sleeper", 3)
    _wait_success(server, "cached", 2)
    time.sleep(0.2)
    return before, _metrics(server)


CONFIGS = {
    "summaries": ["--metrics-config=summary_latencies=true"],
    # With a server cache the second request to "cached" is a hit.
    "summaries_only": [
        "--cache-config=local,size=1048576",
        "--metrics-config=counter_latencies=false",
        "--metrics-config=summary_latencies=true",
        "--metrics-config=summary_quantiles=0.5:0.05,0.99:0.001",
    ],
    # What 2.51 ignores: another spelling than exactly true/false, a later false,
    # histogram_latencies (no family in 2.51), unknown settings.
    "ignored": [
        "--metrics-config=summary_latencies=maybe",
        "--metrics-config=counter_latencies=False",
        "--metrics-config=histogram_latencies=true",
        "--metrics-config=no_such_setting=1",
    ],
}


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def config_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def observed(
    repo: Path, config_name: str
) -> Iterator[dict[str, tuple[str, str] | None]]:
    """(metrics before traffic, after) per server kind; None: no reference."""
    results: dict[str, tuple[str, str] | None] = {}
    for kind in ("tritonx", "reference"):
        try:
            with run_either(kind, repo, *CONFIGS[config_name]) as server:
                results[kind] = _traffic(server)
        except pytest.skip.Exception:
            results[kind] = None
    yield results


def test_families_match_reference(
    observed: dict[str, tuple[str, str] | None], config_name: str
) -> None:
    ours = observed["tritonx"]
    assert ours is not None
    families = _families(ours[1])
    summaries = {n for n, (_, typ) in families.items() if typ == "summary"}
    if config_name == "ignored":
        assert summaries == set()
        assert set(DURATION_COUNTERS) <= families.keys()
    else:
        assert summaries == set(SUMMARIES) | set(CACHE_SUMMARIES)
        has_counters = config_name == "summaries"
        assert (set(DURATION_COUNTERS) <= families.keys()) == has_counters
        assert ("nv_cache_num_hits_per_model" in families) == has_counters
    reference = observed["reference"]
    if reference is None:
        pytest.skip("TRITONX_REFERENCE_CMD is not set")
    theirs = _families(reference[1])
    # Same per-model families with the same HELP and TYPE lines (aside from
    # tritonx's own tritonx_* families and nv_model_load_duration_secs, which
    # Triton added after 2.51).
    ours_triton = {
        k: v
        for k, v in families.items()
        if not k.startswith("tritonx_") and k != "nv_model_load_duration_secs"
    }
    assert ours_triton == theirs


def test_summary_lines_have_tritons_shape(
    observed: dict[str, tuple[str, str] | None], config_name: str
) -> None:
    """Quantile labels in order, label order, _count/_sum first, 'Nan' for an
    empty window: line by line as the reference writes them (numbers aside)."""
    if config_name == "ignored":
        pytest.skip("no summaries")
    reference = observed["reference"]
    if reference is None:
        pytest.skip("TRITONX_REFERENCE_CMD is not set")
    ours = observed["tritonx"]
    assert ours is not None
    for ours_text, theirs_text in zip(ours, reference, strict=True):
        for family in (*SUMMARIES, *CACHE_SUMMARIES):
            for model in ("sleeper", "cached"):
                assert _lines(ours_text, family, model) == _lines(
                    theirs_text, family, model
                ), (family, model)
    before = ours[0]
    expected = ("0.5", "0.99") if config_name == "summaries_only" else None
    labels = re.findall(
        r'^nv_inference_queue_summary_us\{model="sleeper",version="1",'
        r'quantile="([^"]+)"\} Nan$',
        before,
        re.MULTILINE,
    )
    assert tuple(labels) == (expected or ("0.5", "0.9", "0.95", "0.99", "0.999"))


def test_summaries_agree_with_statistics(
    observed: dict[str, tuple[str, str] | None], config_name: str
) -> None:
    """Counts are the statistics API's; sums are its durations in µs (Triton sums
    whole µs per request, so they may be below the ns total by < 1 µs each)."""
    if config_name == "ignored":
        pytest.skip("no summaries")
    for kind in ("tritonx", "reference"):
        pair = observed[kind]
        if pair is None:
            continue
        text = pair[1]
        assert _sample(text, "nv_inference_request_summary_us_count", "sleeper") == 3
        assert (
            _sample(text, "nv_inference_compute_infer_summary_us_count", "sleeper") == 3
        )
        # The cached model: with a server cache the hit counts as queued, not
        # computed; without one both requests execute (and nothing is a hit).
        hits = 1 if config_name == "summaries_only" else 0
        assert _sample(text, "nv_inference_queue_summary_us_count", "cached") == 2
        computed = _sample(
            text, "nv_inference_compute_infer_summary_us_count", "cached"
        )
        assert computed == 2 - hits
        assert _sample(text, "nv_cache_hit_summary_per_model_count", "cached") == hits
        assert _sample(text, "nv_cache_miss_summary_per_model_count", "cached") == hits
        if config_name == "summaries":
            counter = _sample(text, "nv_inference_compute_infer_duration_us", "sleeper")
            total = _sample(
                text, "nv_inference_compute_infer_summary_us_sum", "sleeper"
            )
            assert counter - 3 <= total <= counter, kind


# Distribution test: 14 requests of 5 ms and 6 of 120 ms, sequentially. Of the 20
# compute-infer observations the rank-10 one (p50) is a 5 ms request and the rank-18
# and rank-19 ones (p90, p99) are 120 ms requests, however fast the machine is.
FAST_MS, SLOW_MS, FAST, SLOW = 5.0, 120.0, 14, 6


@pytest.mark.parametrize("kind", ["tritonx", "reference"])
def test_quantiles_follow_the_distribution(repo: Path, kind: str) -> None:
    args = [
        "--metrics-config=summary_latencies=true",
        "--metrics-config=summary_quantiles=0.5:0.05,0.9:0.01,0.99:0.001",
    ]
    with run_either(kind, repo, *args) as server:
        durations = [FAST_MS] * FAST + [SLOW_MS] * SLOW
        # Interleaved, so that warm-up effects do not line up with one class.
        order = sorted(range(len(durations)), key=lambda i: (i * 7) % len(durations))
        for i in order:
            _sleep(server, "sleeper", durations[i])
        _wait_success(server, "sleeper", len(durations))
        time.sleep(0.2)
        text = _metrics(server)
        stats = _stats(server, "sleeper")["inference_stats"]
    assert isinstance(stats, dict)
    name = "nv_inference_compute_infer_summary_us"
    count = _sample(text, f"{name}_count", "sleeper")
    total = _sample(text, f"{name}_sum", "sleeper")
    assert count == stats["compute_infer"]["count"] == len(durations)
    assert stats["compute_infer"]["ns"] // 1000 - count <= total
    assert total <= stats["compute_infer"]["ns"] // 1000
    p50, p90, p99 = (_sample(text, name, "sleeper", q) for q in ("0.5", "0.9", "0.99"))
    # Monotone, and within what was observed: each at least its sleep, and no
    # single observation exceeds the sum of all of them.
    assert p50 <= p90 <= p99 <= total
    assert FAST_MS * 1000 <= p50 < SLOW_MS * 1000
    assert p99 >= p90 >= SLOW_MS * 1000
    # Every request's total includes its compute: the request summary's p99 too.
    assert _sample(text, "nv_inference_request_summary_us", "sleeper", "0.99") >= (
        SLOW_MS * 1000
    )
    for q in ("0.5", "0.9", "0.99"):
        assert not math.isnan(
            _sample(text, "nv_inference_queue_summary_us", "sleeper", q)
        )


# --- settings (no server) ---------------------------------------------------------


def test_settings_are_read_as_triton_reads_them() -> None:
    def parse(*args: str) -> MetricsConfig:
        options, _, warnings = parse_args(
            ["--model-store=/m", *(f"--metrics-config={a}" for a in args)]
        )
        assert not any("metrics-config" in w for w in warnings)
        return options.metrics_config

    assert parse() == MetricsConfig()
    assert parse().summary_quantiles == DEFAULT_QUANTILES
    assert not parse("counter_latencies=false").counter_latencies
    assert parse("counter_latencies=False").counter_latencies  # exactly "false"
    assert parse("counter_latencies=0").counter_latencies
    assert parse("summary_latencies=true").summary_latencies
    assert not parse("summary_latencies=maybe").summary_latencies
    # Only "true" sets it: a later "false" changes nothing (Triton 2.51).
    assert parse("summary_latencies=true", "summary_latencies=false").summary_latencies
    assert parse("histogram_latencies=true", "x=y") == MetricsConfig()
    assert parse("summary_quantiles=0.25:0.01,0.333:0.01,1:0").summary_quantiles == (
        0.25,
        0.333,
        1.0,
    )
    # Bad entries are logged with Triton's text and skipped; none left: defaults.
    mixed = parse("summary_quantiles=0.5:0.05,abc,0.9:x,0.99:0.001")
    assert mixed.summary_quantiles == (0.5, 0.99)
    assert mixed.errors == (
        "Invalid option: [abc]. No ':' delimiter found. "
        "Expected format is <quantile>:<error>",
        "Invalid option: [0.9:x]. Error: stod",
    )
    assert parse("summary_quantiles=abc").summary_quantiles == DEFAULT_QUANTILES
    # std::stod reads the number at the start and ignores the rest.
    assert parse("summary_quantiles=0.75abc:0.1").summary_quantiles == (0.75,)
    # The value keeps everything after the first '='.
    assert parse("summary_quantiles=0.5:0.05,0.9:0.01=").summary_quantiles == (
        0.5,
        0.9,
    )


@pytest.mark.parametrize("value", ["foo", "a,b=c", "x=", "=y", "summary_quantiles="])
def test_malformed_setting_stops_the_start(value: str) -> None:
    with pytest.raises(UsageError) as error:
        parse_args(["--model-store=/m", f"--metrics-config={value}"])
    assert str(error.value) == (
        'Bad option: "--metrics-config".\n'
        f"--metrics-config option format is <setting>=<value>. Got {value}"
    )
