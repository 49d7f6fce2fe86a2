"""Comparing one request that carries a response-flow program (decoupled_strategies.Call)
on tritonx and Triton 2.51, over any of its protocols: the response-flow fuzz
(test_differential_decoupled.py) and the ensemble fuzz
(test_differential_ensemble_flow.py) use it.

For a stream, every message it carried is compared, in order (an in-band error's
text, or the whole response with its parameters such as ``triton_final_response``),
or the call's status; unary gRPC and HTTP infer as diffharness compares one answer;
for generate, the status and each event's JSON (keys sorted) or the error message.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import grpc
from decoupled_strategies import Call
from diffharness import (
    Pair,
    compare,
    compare_grpc,
    compare_http,
    first_answer,
    stream_replies,
)
from diffutil import Answer, Sent
from google.protobuf import text_format


def stream_answer(channel: grpc.Channel, wire: bytes) -> Answer:
    """Every message a ModelStreamInfer stream carried for one request, or the
    call's status."""
    replies = stream_replies(channel, wire)
    if isinstance(replies, Answer):
        return replies
    shown = []
    for message in replies:
        response = text_format.MessageToString(message.infer_response, as_one_line=True)
        # An in-band error comes with what its infer_response names (id, model,
        # whether it was the request's last response).
        error = f"error: {message.error_message} | " if message.error_message else ""
        shown.append(error + response)
    return Answer("OK", "\n".join(shown))


def generate_answer(port: int, wire: bytes) -> Answer:
    """The status and the error message, or each event's JSON (generate: one)."""
    answer = first_answer(port, wire)
    if isinstance(answer, Answer):
        return answer
    if b"/generate_stream " not in wire.split(b"\r\n", 1)[0]:
        events = [answer.body]
    else:
        events = [
            line[len(b"data: ") :]
            for line in answer.body.split(b"\n")
            if line.startswith(b"data: ")
        ]
    shown = []
    for event in events:
        try:
            shown.append(json.dumps(json.loads(event), sort_keys=True))
        except ValueError:
            shown.append(repr(event))
    return Answer(str(answer.status), "\n".join(shown))


def compare_call(
    pair: Pair, call: Call, normalize: Callable[[Answer], Answer] | None = None
) -> str:
    """Compares ``call`` on both servers; ``normalize`` applies to both answers of
    a gRPC stream (what may differ there by a race in both servers)."""
    kind = f"diff-flow-{call.protocol}"
    if call.protocol == "grpc":
        return compare_grpc(pair, call.grpc_request(), kind)
    if call.protocol == "http":
        wire, payload = call.http_wire()
        return compare_http(pair, wire, payload, kind)
    if call.protocol == "grpc-stream":
        request = call.grpc_request()

        def ask_stream(reference: bool, wire: bytes) -> Answer:
            channel = pair.reference.channel if reference else pair.ours_channel
            answer = stream_answer(channel, wire)
            return answer if normalize is None else normalize(answer)

        sent = Sent("grpc", request.SerializeToString(), grpc=request)
        sent.grpc_method = "ModelStreamInfer"
        return compare(pair, kind, sent, ask_stream, shown=call)
    wire, payload = call.http_wire()

    def ask_generate(reference: bool, request: bytes) -> Answer:
        server = pair.reference.server if reference else pair.ours
        return generate_answer(server.ports["http"], request)

    return compare(pair, kind, Sent("http", wire, payload), ask_generate, shown=call)
