"""tritonx-perf on a sequence-batched model, end to end against a real tritonx server:
many sequences in flight at once (async, the default for sequence models, from one
worker thread), at a concurrency and at a request rate, over gRPC and HTTP, plus the
synchronous mode. The model logs every request it executes, so the test checks what
the server saw: whole sequences (START first, one END, no id reused while open),
ids from --sequence-id-range, several sequences open at once, all of them ended."""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from perfutil import (
    check_sequences,
    ok_run,
    one_error_line,
    perf,
    url,
    write_sequence_log_model,
)
from serverutil import RunningServer, run_server

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("perf_seq_log") / "requests.log"


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, log: Path
) -> Iterator[RunningServer]:
    repo = tmp_path_factory.mktemp("perf_seq_repo")
    write_sequence_log_model(repo, "seqlog", log)
    with run_server(repo) as running:
        yield running


def _size(log: Path) -> int:
    return log.stat().st_size if log.exists() else 0


def _lines_since(log: Path, offset: int) -> list[str]:
    with log.open("rb") as handle:
        handle.seek(offset)
        return handle.read().decode().splitlines()


LOADS = {
    # Four sequences in flight from one thread, ids 1000..1004 (five ids for four
    # sequences: a finished sequence's successor skips the ids still open).
    "async-concurrency": (["--concurrency-range", "4", "--max-threads", "1"], 4),
    # At a rate, three sequences (--num-of-sequences) share one thread's schedule.
    "async-rate": (
        [
            "--request-rate-range",
            "300",
            "--num-of-sequences",
            "3",
            "--max-threads",
            "1",
        ],
        3,
    ),
    # Four sequences on one gRPC stream.
    "async-stream": (
        ["--streaming", "--concurrency-range", "4", "--max-threads", "1"],
        4,
    ),
}
CASES = [
    ("grpc", "async-concurrency"),
    ("http", "async-concurrency"),
    ("grpc", "async-rate"),
    ("http", "async-rate"),
    ("grpc", "async-stream"),
]


@pytest.mark.parametrize(("protocol", "load"), CASES)
def test_async_sequences_reach_the_server_whole(
    server: RunningServer, log: Path, protocol: str, load: str, tmp_path: Path
) -> None:
    flags, in_flight = LOADS[load]
    export = tmp_path / "profile.json"
    offset = _size(log)
    text = ok_run(
        "-m", "seqlog", "-u", url(server, protocol), "-i", protocol,
        "--sequence-length", "5", "--sequence-id-range", "1000:1005",
        "--request-count", "60", "--profile-export-file", str(export), *flags,
    )  # fmt: skip
    assert "Using asynchronous calls for inference" in text
    assert re.search(r"Sequence count: \d+ \(", text), text
    lines = _lines_since(log, offset)
    ids, most = check_sequences(lines)
    # 60 requests, plus at most one END per sequence cut short by the count.
    assert 60 <= len(lines) <= 60 + in_flight
    assert set(ids) <= set(range(1000, 1005))
    # Ids were reused (60 requests of ~5 need ~12 sequences from 5 ids).
    assert len(ids) > 5
    # Several sequences were open at the server at once.
    assert 2 <= most <= in_flight
    # The client's records agree: each request's flags, ids in range.
    requests = json.loads(export.read_text())["experiments"][0]["requests"]
    # The count, and the ENDs that were answered before the window closed.
    assert 60 <= len(requests) <= len(lines)
    assert all(1000 <= r["sequence_id"] < 1005 for r in requests)
    # Requests of one sequence never overlapped in time (one in flight each).
    by_id: dict[int, list[tuple[int, int]]] = {}
    for r in requests:
        by_id.setdefault(r["sequence_id"], []).append(
            (r["timestamp"], r["end_timestamp"])
        )
    for spans in by_id.values():
        spans.sort()
        assert all(a[1] <= b[0] for a, b in itertools.pairwise(spans))


@pytest.mark.parametrize("how", ["sync-http", "sync-stream-grpc"])
def test_sync_sequences_and_windows(server: RunningServer, log: Path, how: str) -> None:
    """--sync (or --streaming: one gRPC stream per worker): one sequence per worker;
    count windows, so sequences are cut by the end of the step and get their END
    then."""
    flags = (
        ["-u", server.http_url, "--sync"]
        if how == "sync-http"
        else ["-u", server.grpc_url, "-i", "grpc", "--streaming", "--sync"]
    )
    offset = _size(log)
    text = ok_run(
        "-m", "seqlog", *flags, "--sequence-length", "4",
        "--concurrency-range", "3", "--measurement-mode", "count_windows",
        "--measurement-request-count", "20", "--max-trials", "3",
        "--stability-percentage", "100",
    )  # fmt: skip
    assert "Using synchronous calls for inference" in text
    ids, most = check_sequences(_lines_since(log, offset))
    assert len(ids) >= 3 and 1 <= most <= 3


def test_json_data_streams_one_per_sequence(
    server: RunningServer, log: Path, tmp_path: Path
) -> None:
    """perf_analyzer's JSON format for sequence models, a list of streams: each
    sequence walks one stream, its length the stream's own."""
    data = tmp_path / "streams.json"
    streams = [[1, 2, 3], [10, 20]]
    data.write_text(
        json.dumps({"data": [[{"INPUT": [v]} for v in s] for s in streams]})
    )
    offset = _size(log)
    ok_run(
        "-m", "seqlog", "-u", server.grpc_url, "-i", "grpc", "--input-data", str(data),
        "--concurrency-range", "2", "--request-count", "40",
    )  # fmt: skip
    lines = _lines_since(log, offset)
    check_sequences(lines)
    walked: dict[int, list[int]] = {}
    done = []
    for line in lines:
        corrid, start, end, value = (int(v) for v in line.split())
        walked[corrid] = [value] if start else [*walked[corrid], value]
        if end:
            done.append(walked.pop(corrid))
    # Whole streams only (a sequence cut short by the count ends early).
    assert len(done) >= 8
    for values in done:
        assert any(s[: len(values)] == values for s in streams), values
    assert sum(values in streams for values in done) >= len(done) - 2
    assert {tuple(v) for v in done if v in streams} == {(1, 2, 3), (10, 20)}


def test_sequence_flag_errors(server: RunningServer) -> None:
    cases = {
        "id range too small": (
            ["--concurrency-range", "4", "--sequence-id-range", "7:9"],
            "--sequence-id-range holds 2 ids, fewer than the 4 sequences",
        ),
        "batch": (["-b", "2"], "can not specify batch size > 1 when using a sequence"),
    }
    for name, (flags, expected) in cases.items():
        line = one_error_line(
            perf("-m", "seqlog", "-u", server.grpc_url, "-i", "grpc", *flags)
        )
        assert expected in line, (name, line)
