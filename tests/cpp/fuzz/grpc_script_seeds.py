"""The hand-made seeds of fuzz_grpc_server: scripts of gRPC calls (see the comment
at the top of fuzz_grpc_server.cc for the layout). Written by make_seeds.py."""

from __future__ import annotations

# fuzz_grpc_server scripts: each call is an op byte (bits 0-1: 0/1 unary infer, 2
# stream, 3 control; bit 2: triton_grpc_error / the restricted header; bit 3: a
# forwarded header; control method (op >> 3) % 7; stream messages 1 + (op >> 4) % 5),
# a timing byte, then its payloads (see fuzz_grpc_server.cc's Script).
UNARY, STREAM, CONTROL = 0, 2, 3
SEQUENCE_MODEL = 2
SEQUENCE_START, SEQUENCE_END = 4, 8  # fuzz_grpc_server's sequence byte


def grpc_payload(
    model: int = 0,
    value: int = 0,
    width: int = 4,
    batch: int = 1,
    extras: int = 1,
    sequence: int = 0,
) -> bytes:
    """A ModelInferRequest the target builds: model 0 "m", 1 "d", 2 "s", 3 unknown;
    `value` the first input value (-2 .. 5) that picks the models' behaviour;
    `sequence` (model "s"): the sequence 1-3 | START 4 | END 8 | string id 16 |
    model "o" instead 32."""
    kind = 1 | model << 1
    shape = batch | width << 2 | 0x20
    out = (
        bytes([kind, shape]) + (bytes([value + 2]) if width else b"") + bytes([extras])
    )
    return out + (bytes([sequence]) if model == SEQUENCE_MODEL else b"")


def grpc_raw(data: bytes) -> bytes:
    return bytes([0, len(data)]) + data


def grpc_server_seeds() -> dict[str, bytes]:
    def stream(messages: list[bytes], timing: int = 0, flags: int = 0) -> bytes:
        return bytes([STREAM | flags | (len(messages) - 1) << 4, timing]) + b"".join(
            messages
        )

    def control(
        method: int, body: bytes = b"", restricted_header: bool = False
    ) -> bytes:
        return (
            bytes([CONTROL | (4 if restricted_header else 0) | method << 3, len(body)])
            + body
        )

    return {
        "unary_echo": bytes([UNARY, 0]) + grpc_payload(),
        "unary_decoupled": bytes([UNARY, 0]) + grpc_payload(model=1, value=2),
        "unary_unknown_model": bytes([UNARY | 8, 0]) + grpc_payload(model=3),
        "unary_failing": bytes([UNARY, 0]) + grpc_payload(value=-1),
        "unary_cancelled_while_running": bytes([UNARY, 2 | 5 << 2])
        + grpc_payload(value=1),
        "unary_deadline": bytes([UNARY, 1 | 3 << 2]) + grpc_payload(value=1),
        "unary_garbage": bytes([UNARY, 0]) + grpc_raw(b"\x0a\xff\x01garbage"),
        "stream_half_closed": stream(
            [grpc_payload(), grpc_payload(model=1, value=3), grpc_payload(model=3)]
        ),
        "stream_decoupled_empty_final": stream(
            [
                grpc_payload(model=1, value=2, extras=1 | 4),
                grpc_payload(model=1, value=0),
            ]
        ),
        "stream_cancel_after_write": stream(
            [grpc_payload(value=1), grpc_payload(model=1, value=3)], timing=1
        ),
        "stream_cancel_on_answer": stream(
            [grpc_payload(model=1, value=3), grpc_payload(value=1)], timing=2
        ),
        "stream_cancel_by_clock_open": stream(
            [grpc_payload(value=1), grpc_payload(model=1, value=1)], timing=3 | 5 << 3
        ),
        "stream_grpc_error_mode": stream(
            [
                grpc_payload(value=1),
                grpc_payload(value=-1),
                grpc_payload(model=1, value=3),
            ],
            flags=4,
        ),
        "stream_garbage_then_more": stream(
            [grpc_payload(), grpc_raw(b"\xff\xff\xff"), grpc_payload(model=1, value=2)]
        ),
        "stream_sequences": stream(
            [
                grpc_payload(model=2, sequence=1 | SEQUENCE_START),
                grpc_payload(model=2, sequence=2 | SEQUENCE_START | 16, value=1),
                grpc_payload(model=2, sequence=1),
                grpc_payload(model=2, sequence=1 | SEQUENCE_END),
                grpc_payload(model=2, sequence=2 | SEQUENCE_END | 16),
            ]
        ),
        "stream_oldest_sequences": stream(
            [
                grpc_payload(model=2, sequence=1 | 32 | SEQUENCE_START),
                grpc_payload(model=2, sequence=2 | 32 | SEQUENCE_START, value=1),
                grpc_payload(model=2, sequence=1 | 32),
                grpc_payload(model=2, sequence=2 | 32 | SEQUENCE_END),
                grpc_payload(model=2, sequence=1 | 32 | SEQUENCE_END),
            ]
        ),
        "stream_sequence_cancelled_midway": stream(
            [
                grpc_payload(model=2, sequence=3 | SEQUENCE_START, value=1),
                grpc_payload(model=2, sequence=3, value=1),
                grpc_payload(model=2, sequence=3 | SEQUENCE_END),
            ],
            timing=1 | 1 << 2,
        )
        + bytes([UNARY, 0])
        + grpc_payload(model=2, sequence=3),
        "control_calls": control(0)
        + control(2)
        + control(2, b"ab", True)
        + control(4)
        + control(5, b"x")
        + control(6),
        "mixed": bytes([UNARY, 2])
        + grpc_payload(value=1)
        + stream([grpc_payload(model=1, value=3)] * 4, timing=3 | 2 << 3)
        + control(1, b"abc")
        + bytes([UNARY, 1 | 1 << 2])
        + grpc_payload(model=1)
        + stream([grpc_payload(value=-1), grpc_payload()], flags=4 | 8)
        + bytes([UNARY, 0])
        + grpc_payload(batch=3, value=3)
        + stream([grpc_payload(value=1)] * 5, timing=1 | 2 << 2)
        + control(3),
    }
