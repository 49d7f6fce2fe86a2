"""Writes the hand-made seed inputs of the fuzz targets into corpus/<target>/.

Run from the repository root with the dev build's protos on the path:
    PYTHONPATH=python python tests/cpp/fuzz/make_seeds.py
Each file follows its target's input layout (the comment at the top of the target).
Inputs found by fuzzing runs are added beside these by libFuzzer's -merge.
"""

from __future__ import annotations

import gzip
import json
import struct
import zlib
from pathlib import Path

from grpc_script_seeds import grpc_server_seeds

from tritonx._proto import grpc_service_pb2 as pb

CORPUS = Path(__file__).parent / "corpus"
BATCHING, PLAIN, SINGLE_FP32, SINGLE_BYTES = 0, 1, 2, 3  # fuzz_models.h's SpecFor


HEADER_LENGTH, HTTP_SHM = 4, 8  # fuzz_http_infer's flags
GRPC_SHM = 4  # fuzz_grpc_infer's


def bytes_elements(*items: bytes) -> bytes:
    return b"".join(struct.pack("<I", len(item)) + item for item in items)


def http_infer(flags: int, body: bytes, header_length: int = 0) -> bytes:
    return bytes([flags]) + struct.pack("<H", header_length) + body


def http_infer_seeds() -> dict[str, bytes]:
    json_request = {
        "id": "seed",
        "inputs": [
            {
                "name": "INPUT0",
                "datatype": "FP32",
                "shape": [1, 3],
                "data": [1, 2.5, -3],
            },
            {
                "name": "INPUT1",
                "datatype": "BYTES",
                "shape": [1, 2],
                "data": ["a", "bc"],
            },
            {"name": "RAGGED", "datatype": "INT64", "shape": [1, 2], "data": [7, 8]},
            {
                "name": "RESHAPED",
                "datatype": "UINT8",
                "shape": [1, 4],
                "data": [1, 2, 3, 4],
            },
        ],
        "outputs": [
            {"name": "OUTPUT0", "parameters": {"classification": 2}},
            {"name": "OUTPUT1", "parameters": {"binary_data": True}},
        ],
        "parameters": {
            "priority": 1,
            "timeout": 5,
            "sequence_id": 3,
            "sequence_start": True,
        },
    }
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "INPUT0",
                    "datatype": "FP32",
                    "shape": [2, 1],
                    "parameters": {"binary_data_size": 8},
                },
                {
                    "name": "INPUT1",
                    "datatype": "BYTES",
                    "shape": [2, 2],
                    "parameters": {"binary_data_size": 20},
                },
            ],
            "parameters": {"binary_data_output": True},
        }
    ).encode()
    binary = struct.pack("<2f", 1.0, 2.0) + bytes_elements(b"a", b"b", b"", b"cd")
    shm = json.dumps(
        {
            "inputs": [
                {
                    "name": "INPUT0",
                    "datatype": "FP32",
                    "shape": [1, 4],
                    "parameters": {
                        "shared_memory_region": "r",
                        "shared_memory_byte_size": 16,
                        "shared_memory_offset": 8,
                    },
                },
                {
                    "name": "INPUT1",
                    "datatype": "BYTES",
                    "shape": [1, 2],
                    "data": ["x", "y"],
                },
            ],
            "outputs": [
                {
                    "name": "OUTPUT0",
                    "parameters": {
                        "shared_memory_region": "r",
                        "shared_memory_byte_size": 64,
                    },
                },
            ],
        }
    ).encode()
    plain = json.dumps(
        {
            "inputs": [
                {
                    "name": "FLAGS",
                    "datatype": "BOOL",
                    "shape": [2, 1],
                    "data": [True, False],
                },
                {
                    "name": "HALF",
                    "datatype": "FP16",
                    "shape": [3],
                    "parameters": {"binary_data_size": 6},
                },
            ],
            "outputs": [{"name": "OUT", "parameters": {"binary_data": True}}],
        }
    ).encode()
    return {
        "json": http_infer(BATCHING, json.dumps(json_request).encode()),
        "binary": http_infer(BATCHING | HEADER_LENGTH, header + binary, len(header)),
        "shared_memory": http_infer(BATCHING | HTTP_SHM, shm),
        "plain_model": http_infer(
            PLAIN | HEADER_LENGTH, plain + b"\x00\x3c" * 3, len(plain)
        ),
        "raw_body": http_infer(
            SINGLE_FP32 | HEADER_LENGTH, struct.pack("<3f", 1, 2, 3), 0
        ),
        "raw_bytes_body": http_infer(SINGLE_BYTES, b"any bytes"),
        "empty_raw_body": http_infer(SINGLE_BYTES, b""),
        "raw_body_not_a_model_input": http_infer(BATCHING | HEADER_LENGTH, b"abc", 0),
    }


def http_generate_seeds() -> dict[str, bytes]:
    bodies = {
        "batching": (
            BATCHING,
            {"INPUT0": [1.5, 2], "INPUT1": ["a", "b"], "parameters": {"max_tokens": 3}},
        ),
        "scalars": (BATCHING, {"INPUT0": 2, "INPUT1": ["a", "b"], "id": "g"}),
        "single": (SINGLE_BYTES, {"RAW": ["x"], "parameters": {"flag": True}}),
        "plain_model": (PLAIN, {"FLAGS": [[True], [False]], "HALF": [1, 2, 3]}),
    }
    return {
        name: bytes([flags]) + json.dumps(body).encode()
        for name, (flags, body) in bodies.items()
    }


def http_inflate_seeds() -> dict[str, bytes]:
    text = json.dumps(http_generate_seeds()["batching"].decode("latin-1")).encode()
    return {
        "gzip": b"\x00" + gzip.compress(text, mtime=0),
        "deflate": b"\x01" + zlib.compress(text),
        "gzip_bomb": b"\x00" + gzip.compress(b"\x00" * (1 << 20), mtime=0),
        "deflate_truncated": b"\x01" + zlib.compress(text)[:-6],
    }


def grpc_infer(flags: int, piece: int, request: pb.ModelInferRequest) -> bytes:
    return bytes([flags, piece - 1]) + request.SerializeToString(deterministic=True)


def grpc_infer_seeds() -> dict[str, bytes]:
    raw = pb.ModelInferRequest(model_name="batching", id="seed")
    raw.inputs.add(name="INPUT0", datatype="FP32", shape=[2, 1])
    raw.inputs.add(name="INPUT1", datatype="BYTES", shape=[2, 2])
    raw.raw_input_contents.append(struct.pack("<2f", 1, 2))
    raw.raw_input_contents.append(bytes_elements(b"a", b"b", b"c", b""))
    raw.outputs.add(name="OUTPUT0").parameters["classification"].int64_param = 1
    raw.parameters["priority"].int64_param = 2
    raw.parameters["sequence_id"].string_param = "s"
    raw.parameters["sequence_start"].bool_param = True

    typed = pb.ModelInferRequest(model_name="batching")
    first = typed.inputs.add(name="INPUT0", datatype="FP32", shape=[1, 2])
    first.contents.fp32_contents.extend([0.5, 1.5])
    second = typed.inputs.add(name="INPUT1", datatype="BYTES", shape=[1, 2])
    second.contents.bytes_contents.extend([b"x", b"yz"])

    shm = pb.ModelInferRequest(model_name="batching")
    region = shm.inputs.add(name="INPUT0", datatype="FP32", shape=[1, 4])
    region.parameters["shared_memory_region"].string_param = "r"
    region.parameters["shared_memory_byte_size"].int64_param = 16
    region.parameters["shared_memory_offset"].int64_param = 32
    shm.inputs.add(name="INPUT1", datatype="BYTES", shape=[1, 2])
    shm.raw_input_contents.append(bytes_elements(b"p", b"q"))
    out = shm.outputs.add(name="OUTPUT0")
    out.parameters["shared_memory_region"].string_param = "r"
    out.parameters["shared_memory_byte_size"].int64_param = 128

    plain = pb.ModelInferRequest(model_name="plain")
    plain.inputs.add(name="FLAGS", datatype="BOOL", shape=[2, 2])
    plain.inputs.add(name="HALF", datatype="FP16", shape=[3])
    plain.raw_input_contents.extend([b"\x01\x00\x00\x01", b"\x00\x3c" * 3])
    return {
        "raw_contents": grpc_infer(BATCHING, 7, raw),
        "typed_contents": grpc_infer(BATCHING, 256, typed),
        "shared_memory": grpc_infer(BATCHING | GRPC_SHM, 3, shm),
        "plain_model": grpc_infer(PLAIN, 1, plain),
    }


# Stub ring messages (csrc/core/stub_wire.cc): little-endian fields, strings as a
# u32 length then bytes.
def wire_str(text: str | bytes) -> bytes:
    data = text.encode() if isinstance(text, str) else text
    return struct.pack("<I", len(data)) + data


def wire_tensor(
    name: str, datatype: str, shape: list[int], offset: int, size: int
) -> bytes:
    dims = struct.pack("<I", len(shape)) + b"".join(struct.pack("<q", d) for d in shape)
    return wire_str(name) + wire_str(datatype) + dims + struct.pack("<QQ", offset, size)


def wire_parameters() -> bytes:
    return (
        struct.pack("<I", 5)
        + wire_str("b")
        + b"\x00\x01"
        + wire_str("i")
        + b"\x01"
        + struct.pack("<q", -7)
        + wire_str("u")
        + b"\x02"
        + struct.pack("<Q", 2**64 - 1)
        + wire_str("d")
        + b"\x03"
        + struct.pack("<d", 0.5)
        + wire_str("s")
        + b"\x04"
        + wire_str("text")
    )


def wire_indices(*indices: int) -> bytes:
    return struct.pack("<I", len(indices)) + b"".join(
        struct.pack("<I", i) for i in indices
    )


def stub_wire_seeds() -> dict[str, bytes]:
    outputs = (
        b"\x01"
        + struct.pack("<I", 2)
        + wire_tensor("OUT0", "FP32", [2, 2], 0, 16)
        + wire_tensor("OUT1", "BYTES", [1], 64, 9)
        + wire_parameters()
    )
    error = b"\x00" + struct.pack("<I", 3) + wire_str("bad input")
    reply = (
        b"\x00"
        + struct.pack("<I", 2)
        + outputs
        + error
        + wire_indices(1)
        + wire_indices()
    )
    batch_error = (
        b"\x01" + struct.pack("<I", 13) + wire_str("execute raised") + wire_indices(0)
    )
    request = (
        struct.pack("<Q", 41)
        + wire_str("id")
        + b"\x01"
        + wire_str("sequence")
        + struct.pack("<IQQ", 3, 1000, 9)
        + wire_str("traceparent")
        + struct.pack("<I", 1)
        + wire_str("OUT0")
        + wire_parameters()
        + struct.pack("<I", 1)
        + wire_tensor("IN", "INT32", [1, 3], 0, 12)
    )
    requests = struct.pack("<I", 2) + request + request
    return {
        "reply": b"\x00" + reply,
        "batch_error": b"\x00" + batch_error,
        "requests": b"\x01" + requests,
    }


# fuzz_http_server: raw bytes on one connection to a server with model "m"
# (FP32 INPUT0 [-1], max_batch_size 8).
def http_request(method: str, path: str, body: bytes = b"", *headers: str) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: fuzz", *headers]
    if body and not any(h.lower().startswith("transfer-encoding") for h in headers):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def http_server_seeds() -> dict[str, bytes]:
    infer_json = json.dumps(
        {
            "id": "seed",
            "inputs": [
                {
                    "name": "INPUT0",
                    "datatype": "FP32",
                    "shape": [2, 2],
                    "data": [1, 2, 3, 4],
                }
            ],
            "outputs": [{"name": "OUTPUT0", "parameters": {"binary_data": True}}],
        }
    ).encode()
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "INPUT0",
                    "datatype": "FP32",
                    "shape": [1, 2],
                    "parameters": {"binary_data_size": 8},
                }
            ]
        }
    ).encode()
    binary = header + struct.pack("<2f", 1.5, 2.5)
    chunked = (
        b"".join(
            f"{len(part):x}\r\n".encode() + part + b"\r\n"
            for part in (infer_json[:10], infer_json[10:])
        )
        + b"0\r\n\r\n"
    )
    infer = "/v2/models/m/infer"
    return {
        "live": http_request("GET", "/v2/health/live"),
        "infer_json": http_request("POST", infer, infer_json),
        "infer_binary": http_request(
            "POST",
            "/v2/models/m/versions/1/infer",
            binary,
            f"Inference-Header-Content-Length: {len(header)}",
            "Accept-Encoding: gzip",
        ),
        "infer_gzip": http_request(
            "POST", infer, gzip.compress(infer_json, mtime=0), "Content-Encoding: gzip"
        ),
        "infer_chunked": http_request(
            "POST", infer, chunked, "Transfer-Encoding: chunked"
        ),
        "infer_raw": http_request(
            "POST",
            infer,
            struct.pack("<4f", 1, 2, 3, 4),
            "Inference-Header-Content-Length: 0",
        ),
        "generate": http_request(
            "POST", "/v2/models/m/generate", b'{"INPUT0": [1, 2, 3, 4], "id": "g"}'
        ),
        "pipelined": http_request("GET", "/v2/models/m/config")
        + http_request("POST", infer, infer_json)
        + http_request(
            "GET", "/v2/models/m/versions/1/stats", b"", "Connection: close"
        ),
        "too_large": http_request("POST", infer, b"{", "Content-Length: 99999999"),
    }


# fuzz_scheduler: 4 configuration bytes, then 3 bytes per request.
START, END = 1, 2
CANCELLED = 8  # fuzz_scheduler: the request is cancelled once queued


def scheduler_op(
    flags: int = 0,
    corr: int = 1,
    batch: int = 1,
    *,
    extra: int = 0,
    pause: bool = False,
) -> bytes:
    return bytes([flags | extra, corr - 1, (batch - 1) | (4 if pause else 0)])


def scheduler_seeds() -> dict[str, bytes]:
    plain = bytes([0, 0, 0, 0]) + b"".join(scheduler_op(corr=1) for _ in range(4))
    dynamic = bytes([1 | 4 | 16 | 32, 4, 100, 8 | 0x30]) + b"".join(
        scheduler_op(extra=(i % 4) << 4, batch=1 + i % 3) for i in range(8)
    )
    timeouts = bytes([1 | 64 | 128, 2, 200, 0x10]) + b"".join(
        scheduler_op(extra=64 | (8 if i % 3 == 0 else 0) | (128 if i == 5 else 0))
        for i in range(8)
    )
    direct = bytes([2, 2, 0, 0]) + b"".join(
        [
            scheduler_op(START, 1),
            scheduler_op(START, 2),
            scheduler_op(START, 3),
            scheduler_op(0, 1),
            scheduler_op(END, 2),
            scheduler_op(END, 1),
            scheduler_op(START | END, 4),
            scheduler_op(END, 3),
        ]
    )
    oldest = bytes([3 | 8, 4, 50, 2]) + b"".join(
        [scheduler_op(START, c) for c in range(1, 6)]
        + [scheduler_op(0, c, 1 + c % 2) for c in range(1, 6)]
        + [scheduler_op(END, c) for c in range(1, 6)]
    )
    return {
        "no_batching": plain,
        "dynamic_priorities": dynamic,
        "dynamic_timeouts": timeouts,
        "sequence_direct": direct,
        "sequence_oldest_backlog": oldest,
        # One slot; after a pause (the reaper asleep), a START cancelled while queued,
        # then another sequence, which must get the slot once the first has idled.
        "sequence_cancel_after_pause": bytes([2, 8, 0, 0])
        + scheduler_op(START | END, 4)
        + scheduler_op(START, 1, extra=CANCELLED, pause=True)
        + scheduler_op(START, 2),
    }


# Datatypes of fixed element size, with that size.
FIXED_SIZE_TYPES = [
    ("INT8", 1),
    ("UINT16", 2),
    ("INT64", 8),
    ("FP16", 2),
    ("BF16", 2),
    ("FP64", 8),
    ("UINT64", 8),
]


def cache_entry(
    outputs: list[tuple[str, str, list[int], bytes]], parameters: tuple[bytes, ...] = ()
) -> bytes:
    """A remote response cache entry (remote_response_cache.cc's layout): outputs as
    (name, datatype, shape, bytes); parameters already encoded (name, tag, value)."""

    def text(value: str | bytes) -> bytes:
        raw = value.encode() if isinstance(value, str) else value
        return struct.pack("<I", len(raw)) + raw

    out = b"TXRC\x01" + struct.pack("<I", len(outputs))
    for name, datatype, shape, data in outputs:
        out += text(name) + text(datatype) + struct.pack("<I", len(shape))
        out += b"".join(struct.pack("<q", d) for d in shape)
        out += struct.pack("<Q", len(data)) + data
    return out + struct.pack("<I", len(parameters)) + b"".join(parameters)


def cache_entry_seeds() -> dict[str, bytes]:
    def parameter(name: str, tag: int, value: bytes) -> bytes:
        return struct.pack("<I", len(name)) + name.encode() + bytes([tag]) + value

    floats = struct.pack("<4f", 1.0, 2.5, -3.0, float("nan"))
    strings = bytes_elements(b"one", b"", "\u00e9".encode(), b"\xff\xfe")
    return {
        "fp32": cache_entry([("OUTPUT0", "FP32", [1, 4], floats)]),
        "bytes_and_params": cache_entry(
            [("OUT", "BYTES", [2, 2], strings), ("FLAG", "BOOL", [2], b"\x01\x00")],
            (
                parameter("b", 0, b"\x01"),
                parameter("i", 1, struct.pack("<q", -5)),
                parameter("u", 2, struct.pack("<Q", 7)),
                parameter("d", 3, struct.pack("<d", 0.5)),
                parameter("s", 4, struct.pack("<I", 3) + b"abc"),
            ),
        ),
        "every_type": cache_entry(
            [
                (f"o{i}", datatype, [2], bytes(2 * size))
                for i, (datatype, size) in enumerate(FIXED_SIZE_TYPES)
            ]
        ),
        "empty_and_scalar": cache_entry(
            [("E", "FP32", [0, 3], b""), ("S", "INT32", [], b"\x01\x00\x00\x00")]
        ),
    }


def main() -> None:
    for target, seeds in {
        "fuzz_http_infer": http_infer_seeds(),
        "fuzz_http_generate": http_generate_seeds(),
        "fuzz_http_inflate": http_inflate_seeds(),
        "fuzz_grpc_infer": grpc_infer_seeds(),
        "fuzz_stub_wire": stub_wire_seeds(),
        "fuzz_scheduler": scheduler_seeds(),
        "fuzz_http_server": http_server_seeds(),
        "fuzz_grpc_server": grpc_server_seeds(),
        "fuzz_cache_entry": cache_entry_seeds(),
    }.items():
        folder = CORPUS / target
        folder.mkdir(parents=True, exist_ok=True)
        for name, data in seeds.items():
            (folder / f"seed_{name}").write_bytes(data)


if __name__ == "__main__":
    main()
