"""Fuzzing the HTTP frontend with requests mutated from valid ones.

Every example goes over a fresh loopback connection as raw bytes, followed by a
sentinel ``GET /v2/health/live`` with ``Connection: close``: the server must
answer (or refuse the framing with 400 and close) within 5 s, every answer must
pass ``fuzzutil.http_verdict``, and the server process must still run. Requests
that are incomplete by construction are sent with a half-close instead, and the
server must then close the connection within 5 s. A liveness prober checks
``/v2/health/live`` answers in < 50 ms throughout (conftest.py).
"""

from __future__ import annotations

import json

import pytest
from fuzzutil import (
    MAX_INPUT,
    SENTINEL,
    TALLY,
    Exchange,
    Target,
    exchange,
    fuzz,
    http_verdict,
    oversized_head_field,
    request_bytes,
)
from http_strategies import (
    InferCase,
    compress,
    control_paths,
    control_payload,
    dumps,
    infer_cases,
    json_values,
    mutate_binary_case,
    mutate_bytes,
    mutate_doc,
)
from hypothesis import given
from hypothesis import strategies as st


def judge(
    target: Target, ex: Exchange, sent: bytes, parts: list[bytes] | None = None
) -> None:
    """Counts the outcome of one fuzzed exchange; fails on a bad one. ``parts``:
    the pipelined requests ``sent`` is made of, to name the one answered badly."""
    shown = sent[:600]
    TALLY.timing(ex.seconds, shown)
    categories: list[str] = []
    problem = None
    if not target.alive():
        categories.append("crash")
        problem = f"server died on {shown!r}\n{target.log_tail()}"
    elif ex.timed_out:
        categories.append("hang")
        problem = f"no answer within 5 s to {shown!r}"
    elif ex.garbage:
        categories.append("malformed")
        problem = f"unparsable response {ex.garbage[:200]!r} to {shown!r}"
    elif not ex.answers:
        categories.append("reset" if ex.reset else "no-answer")
        if not ex.reset and not oversized_head_field(sent):
            problem = f"connection closed without an answer to {shown!r}"
    else:
        categories.append(f"{ex.answers[0].status // 100}xx")
        for i, answer in enumerate(ex.answers):
            verdict = http_verdict(answer.status, answer.body)
            if verdict is not None:
                categories.append("leak" if "leaks" in verdict else "bad-5xx")
                culprit = parts[i % len(parts)][:600] if parts else shown
                problem = f"{verdict}\nrequest: {culprit!r}"
                break
    TALLY.record("http", categories, problem)


def send(target: Target, request: bytes) -> Exchange:
    """One fuzzed request, then the sentinel; answers until close (at most 2)."""
    ex = exchange(target.http_port, request + SENTINEL, expect=2)
    judge(target, ex, request)
    return ex


def infer_request(case: InferCase, extra: dict[str, str] | None = None) -> bytes:
    body, headers = case.body_and_headers()
    headers.update(extra or {})
    return request_bytes("POST", case.path, body, headers)


# -- hypothesis: infer bodies ------------------------------------------------------------


@fuzz(0.2)
@given(data=st.data())
def test_infer_json_mutations(target: Target, data: st.DataObject) -> None:
    case = data.draw(infer_cases(binary=False), label="valid request")
    for _ in range(data.draw(st.integers(1, 3), label="mutations")):
        mutate_doc(case.doc, data)
    send(target, infer_request(case))


@fuzz(0.2)
@given(data=st.data())
def test_infer_binary_mutations(target: Target, data: st.DataObject) -> None:
    case = data.draw(infer_cases(binary=True), label="valid request")
    body, headers = mutate_binary_case(case, data)
    send(target, request_bytes("POST", case.path, body, headers))


@fuzz(0.15)
@given(data=st.data())
def test_infer_byte_mutations(target: Target, data: st.DataObject) -> None:
    case = data.draw(infer_cases(), label="valid request")
    body, headers = case.body_and_headers()
    for _ in range(data.draw(st.integers(1, 4), label="byte mutations")):
        body = mutate_bytes(body, data)
    send(target, request_bytes("POST", case.path, body, headers))


# -- hypothesis: control plane, framing ------------------------------------------------------


@fuzz(0.1)
@given(route=control_paths(), body=st.none() | json_values, params=json_values)
def test_control_plane(
    target: Target, route: tuple[str, str], body: object, params: object
) -> None:
    method, path = route
    payload = control_payload(path, body, params)
    send(target, request_bytes(method, path, payload))


# Header values by name (Hypothesis prints the name, not 70,000 x's).
HEADER_VALUES = {
    "<empty>": "",
    "<8190 x>": "x" * 8190,
    "<8191 x>": "x" * 8191,
    "<70000 x>": "x" * 70_000,
    "<latin-1>": "\xff\xfe",
    "<close>": "close",
    "<100-continue>": "100-continue",
}


# Damage to a chunked request: (head, chunks) -> (head, chunks). The server must
# refuse these with 400 (and may close), never wait for more.
BROKEN_CHUNKING = {
    "none": lambda h, w: (h, w),
    "bad hex": lambda h, w: (h, b"zz\r\n" + w),
    "negative size": lambda h, w: (h, b"-5\r\nabcde\r\n" + w),
    "size overflow": lambda h, w: (h, b"1" + b"0" * 20 + b"\r\nab\r\n" + w),
    "no CRLF after data": lambda h, w: (h, b"3\r\nabcX" + w),
    "bare LF": lambda h, w: (h, w.replace(b"\r\n", b"\n", 1)),
    "TE twice": lambda h, w: (
        h[:-2] + b"Transfer-Encoding: chunked\r\n\r\n",
        w,
    ),
    "TE and CL": lambda h, w: (h[:-2] + b"Content-Length: 3\r\n\r\n", w),
    "TE not last": lambda h, w: (
        h.replace(b"Transfer-Encoding: chunked", b"Transfer-Encoding: chunked, gzip"),
        w,
    ),
}


@fuzz(0.15)
@given(data=st.data())
def test_framing(target: Target, data: st.DataObject) -> None:
    """Headers, chunked transfer and compression around a valid infer body."""
    case = data.draw(infer_cases(), label="valid request")
    body, headers = case.body_and_headers()
    encoding = data.draw(
        st.sampled_from(["", "gzip", "deflate", "identity", "br", "x"])
    )
    if encoding:
        headers["Content-Encoding"] = encoding
        if data.draw(st.booleans()):
            body = compress(body, encoding)
    token = st.text(st.characters(codec="ascii", min_codepoint=33, max_codepoint=126))
    for _ in range(data.draw(st.integers(0, 3))):
        name = data.draw(
            token.filter(lambda n: ":" not in n and n != ""), label="header"
        )
        if name.lower() not in ("content-length", "transfer-encoding", "upgrade"):
            value = data.draw(st.sampled_from(sorted(HEADER_VALUES)) | token)
            headers[name] = HEADER_VALUES.get(value, value)
    if data.draw(st.booleans()):
        head = request_bytes("POST", case.path, b"", headers, content_length=False)
        head = head[:-2] + b"Transfer-Encoding: chunked\r\n\r\n"
        sizes = data.draw(st.lists(st.integers(1, 64), max_size=8))
        chunks, rest = [], body
        for size in sizes:
            if not rest:
                break
            chunks.append(rest[:size])
            rest = rest[size:]
        if rest:
            chunks.append(rest)
        ext = data.draw(st.sampled_from(["", ";a=b", ";" + "e" * 100]))
        wire = b"".join(b"%x%s\r\n%s\r\n" % (len(c), ext.encode(), c) for c in chunks)
        trailer = data.draw(st.sampled_from([b"", b"X-Trailer: 1\r\n"]))
        wire += b"0\r\n" + trailer + b"\r\n"
        broken = data.draw(st.sampled_from(sorted(BROKEN_CHUNKING)), label="damage")
        if broken != "none":
            head, wire = BROKEN_CHUNKING[broken](head, wire)
        send(target, head + wire)
    else:
        send(target, request_bytes("POST", case.path, body, headers))


@fuzz(0.1)
@given(data=st.data())
def test_pipelined_requests(target: Target, data: st.DataObject) -> None:
    """Valid and mutated requests pipelined on one connection, past the
    server's pipelining limit (128): every one answered, in order."""
    wires = []
    for _ in range(data.draw(st.integers(1, 12), label="distinct requests")):
        case = data.draw(infer_cases())
        if data.draw(st.booleans()):
            mutate_doc(case.doc, data)
        wires.append(infer_request(case))
    count = len(wires) * data.draw(st.sampled_from([1, 3, 20]), label="repeat")
    wire = b"".join(wires * (count // len(wires)))
    ex = exchange(target.http_port, wire, expect=count)
    judge(target, ex, wire, wires)
    assert len(ex.answers) == count or not target.alive(), (
        f"{len(ex.answers)} answers to {count} pipelined requests"
    )


@fuzz(0.1)
@given(data=st.data())
def test_incomplete_requests(target: Target, data: st.DataObject) -> None:
    """Bodies shorter than announced; the server must give up once we close."""
    case = data.draw(infer_cases(), label="valid request")
    body, headers = case.body_and_headers()
    kind = data.draw(st.sampled_from(["short", "huge", "chunk", "head"]))
    if kind == "short":
        extra = data.draw(st.integers(1, 1000))
        wire = request_bytes("POST", case.path, b"", headers, content_length=False)
        wire = wire[:-2] + b"Content-Length: %d\r\n\r\n" % (len(body) + extra) + body
    elif kind == "huge":
        length = data.draw(st.sampled_from([MAX_INPUT + 1, 10**12, 2**63 - 1]))
        wire = request_bytes("POST", case.path, b"", headers, content_length=False)
        wire = wire[:-2] + b"Content-Length: %d\r\n\r\n" % length + body
    elif kind == "chunk":
        wire = request_bytes("POST", case.path, b"", headers, content_length=False)
        wire = wire[:-2] + b"Transfer-Encoding: chunked\r\n\r\n%x\r\n" % (len(body) + 5)
        wire += body
    else:
        wire = infer_request(case)
        wire = wire[: data.draw(st.integers(0, wire.index(b"\r\n\r\n") + 2))]
    ex = exchange(target.http_port, wire, half_close=True)
    if not ex.timed_out and not ex.answers:
        ex.answers = []  # closed without an answer: what we expect here
        TALLY.record("http", ["closed"], None)
        assert target.alive(), f"server died on {wire[:300]!r}"
        return
    judge(target, ex, wire)


# -- fixed corpus: cases found by fuzzing and limits, run every time ------------------------

_A = '{"name":"INPUT0","datatype":"FP32","shape":[4],"data":[1,2,3,4]}'
_B = '{"name":"INPUT1","datatype":"FP32","shape":[4],"data":[1,2,3,4]}'
_GOOD = '{"inputs":[' + _A + "," + _B + "]}"


def _with(before: str = "", inputs: str = _A + "," + _B, after: str = "") -> str:
    """An add_sub body with members spliced in before/after ``inputs``."""
    return "{" + before + '"inputs":[' + inputs + "]" + after + "}"


def _input0(name: str = "INPUT0", shape: str = "[4]", data: str = "[1,2,3,4]") -> str:
    return (
        '{"name":"' + name + '","datatype":"FP32","shape":' + shape
        + ',"data":' + data + "}"
    )  # fmt: skip


NASTY = {
    "surrogate input name": _with(inputs=_input0(name="\\ud800") + "," + _B),
    "surrogate id": _with(before='"id":"\\ud800",'),
    "surrogate parameter key": _with(before='"parameters":{"\\ud800":1},'),
    "surrogate output name": _with(after=',"outputs":[{"name":"\\udfff"}]'),
    "parameter >= 2^64": _with(before='"parameters":{"p":18446744073709551616},'),
    "parameter < -2^63": _with(before='"parameters":{"p":-9223372036854775809},'),
    "dim >= 2^63": _with(inputs=_input0(shape="[9223372036854775808]") + "," + _B),
    "nesting 100000": "[" * 100_000 + "]" * 100_000,
    "nested inputs": '{"inputs":' + "[" * 50_000 + "]" * 50_000 + "}",
    "5000-digit int": _with(after=',"parameters":{"p":' + "9" * 5000 + "}"),
    "string data for FP32": _with(inputs=_input0(data='["a",2,3,4]') + "," + _B),
}


@pytest.mark.parametrize("name", sorted(NASTY))
def test_nasty_bodies(target: Target, name: str) -> None:
    body = NASTY[name].encode()
    send(target, request_bytes("POST", "/v2/models/add_sub/infer", body))


def test_surrogate_bytes_element(target: Target) -> None:
    body = {"inputs": [{"name": "INPUT0", "datatype": "BYTES", "shape": [1, 1]}]}
    body["inputs"][0]["data"] = ["\udc00"]  # type: ignore[index]
    send(target, request_bytes("POST", "/v2/models/fuzz_bytes/infer", dumps(body)))


@pytest.mark.parametrize(
    "path",
    [
        "/v2/repository/index",
        "/v2/repository/models/add_sub/load",
        "/v2/repository/models/add_sub/unload",
    ],
)
def test_deep_repository_bodies(target: Target, path: str) -> None:
    body = ("[" * 100_000 + "]" * 100_000).encode()
    send(target, request_bytes("POST", path, body))
    send(target, request_bytes("POST", path, b'{"parameters":' + body + b"}"))


def test_oversized_body_and_headers(target: Target) -> None:
    body = json.dumps({"inputs": [], "pad": "x" * (MAX_INPUT + 10)}).encode()
    ex = send(target, request_bytes("POST", "/v2/models/add_sub/infer", body))
    assert ex.answers and ex.answers[0].status == 400, ex.answers
    send(
        target, request_bytes("GET", "/v2/health/live", b"", {"X-Big": "y" * 1_000_000})
    )
    send(target, request_bytes("GET", "/v2/" + "a" * 1_000_000))


def test_half_closed_client_is_answered(target: Target) -> None:
    """A complete request followed by shutdown(SHUT_WR) still gets its answer.

    Clients such as ``nc -N`` and some proxies half-close after the request;
    Triton 2.51 answers them (checked against the real server). Ten tries per
    model: an answer computed after the EOF is read must not be dropped. tritonx
    may send an interim ``100 Continue`` first (its probe for a client that left
    rather than half-closed); HTTP/1.1 clients skip 1xx answers.
    """
    identity = (
        '{"inputs":[{"name":"INPUT0","datatype":"FP32","shape":[1,2],"data":[1,2]}]}'
    )
    for model, body in (("add_sub", _GOOD), ("identity", identity)):
        wire = request_bytes("POST", f"/v2/models/{model}/infer", body.encode())
        for attempt in range(10):
            ex = exchange(target.http_port, wire, half_close=True)
            assert not ex.timed_out, f"{model} try {attempt}: no answer, no close"
            statuses = [a.status for a in ex.answers if a.status >= 200]
            assert statuses == [200], f"{model} try {attempt}: {ex}"


def test_keep_alive_survives_errors(target: Target) -> None:
    """Error answers do not poison the connection: many requests, one socket."""
    good = _GOOD.encode()
    bodies = [good, b"{", b"[]", NASTY["string data for FP32"].encode(), good]
    wire = b"".join(
        request_bytes("POST", "/v2/models/add_sub/infer", b) for b in bodies * 4
    )
    ex = exchange(target.http_port, wire, expect=len(bodies) * 4)
    judge(target, ex, wire)
    statuses = [a.status for a in ex.answers]
    assert statuses == [200, 500, 500, 500, 200] * 4, statuses
