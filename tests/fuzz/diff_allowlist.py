"""The allowlist of tritonx's deliberate deviations from Triton 2.51 (``ALLOWLIST``),
each tied to the requests it excuses by a predicate over the request and both
answers; diffharness.py asks it about each mismatch, test_diff_allowlist.py
checks each entry on requests it must and must not excuse."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from diff_allowlist_control import (
    bls_error_code,
    error_before_final,
    generate_model_error_status,
    load_parameter_named,
    no_cuda,
    shm_key_reuse,
    shm_range_wraps,
    shm_register_range_wraps,
    shm_unaligned_offset,
    stream_default_policy_final,
)
from diff_allowlist_http import (
    head_without_body,
    odd_target_refused,
    percent_escape,
    unknown_method,
)
from diffutil import (
    INT64_MAX,
    INVALID_ENCODING,
    PARSE,
    SURROGATE,
    TOO_DEEP,
    TRITONX_MAX_DEPTH,
    Answer,
    Sent,
    cut_at_nul,
    cut_message,
    cut_response,
    element_count,
    json_depth,
    json_leaves,
    lone_surrogates,
    nul_strings,
    request_inputs,
    string_not_utf8,
)
from google.protobuf import json_format, text_format
from tritonclient.grpc import service_pb2


@dataclass(frozen=True)
class Deviation:
    """A known, deliberate difference, and the test for a request it excuses."""

    name: str
    why: str
    excuses: Callable[[Sent, Answer, Answer | None], bool]
    # Excused from tritonx's answer alone: the reference is not asked (it may
    # crash or hang on such requests, which costs a restart).
    without_reference: bool = False


def _surrogate(sent: Sent, ours: Answer, theirs: Answer | None) -> bool:
    high, low = lone_surrogates(sent.json_text)
    if ours != Answer("400", SURROGATE) or not (high or low) or theirs is None:
        return False
    # Triton's rapidjson refuses a lone high surrogate (500, with the offset) but
    # takes a lone low one as is, and the request then fails (or not) elsewhere.
    return low or bool(re.fullmatch(re.escape(SURROGATE) + r" at \d+", theirs.text))


def _too_deep(sent: Sent, ours: Answer, theirs: Answer | None) -> bool:
    return ours == Answer("500", TOO_DEEP) and json_depth(sent.json_text) > (
        TRITONX_MAX_DEPTH
    )


# Triton's TritonJson messages for a member of the wrong type that tritonx answers
# with 400 (a client's mistake), keeping Triton's words: exactly these.
_TRITONJSON_400 = re.compile(
    r"Unable to parse '(?:shape|priority|timeout)': attempt to access JSON "
    r"non-unsigned-integer as unsigned-integer"
    r"|Unable to parse 'sequence_id': attempt to access JSON non-string as string"
    r"|Unable to parse 'sequence_(?:start|end)': attempt to access JSON "
    r"non-boolean as boolean"
    r"|Unable to set 'classification': attempt to access JSON "
    r"non-unsigned-integer as unsigned-integer"
)


# A trace setting of the wrong JSON type: TritonJson's bare words.
_TRACE_SETTING_400 = re.compile(
    r"attempt to access JSON non-(?:array as array|string as string)"
)


def _client_error_400(sent: Sent, ours: Answer, theirs: Answer | None) -> bool:
    if theirs is None or (ours.code, theirs.code) != ("400", "500"):
        return False
    if ours.text != theirs.text:
        return False
    if sent.path.split(b"?")[0].endswith(b"/trace/setting"):
        return _TRACE_SETTING_400.fullmatch(ours.text) is not None
    return _TRITONJSON_400.fullmatch(ours.text) is not None


_DIM_TOO_LARGE = re.compile(
    r"Unable to parse 'shape': dimension (\d+) of input '.*' is larger than the "
    rf"maximum of {INT64_MAX}",
    re.S,
)


def _dim_past_int64(sent: Sent, ours: Answer, theirs: Answer | None) -> bool:
    match = _DIM_TOO_LARGE.fullmatch(ours.text)
    if ours.code != "400" or match is None or theirs is None:
        return False
    dim = match.group(1).encode()
    literal = re.compile(rb"(?<![\d.eE+-])" + dim + rb"(?![\d.eE])")
    return (
        INT64_MAX < int(dim) < 2**64
        and literal.search(sent.json_text) is not None
        # Triton read the document: an earlier parse error would be a bug.
        and not theirs.text.startswith(PARSE)
    )


def _invalid_utf8(sent: Sent, ours: Answer, theirs: Answer | None) -> bool:
    return ours == Answer("500", INVALID_ENCODING) and string_not_utf8(sent.json_text)


# (generate prefixes the name of the body field it was converting)
_PARAMETER_NOT_FOUND = re.compile(
    r"(?:Converting keyword: '.*': )?parameter key '(.*)' was not found in the JSON",
    re.S,
)


# The control RPCs that change a server (registrations, loads, settings): the
# allowlist never sends one of them to tritonx again.
_CHANGES_STATE = frozenset(
    {
        "SystemSharedMemoryRegister",
        "SystemSharedMemoryUnregister",
        "CudaSharedMemoryRegister",
        "CudaSharedMemoryUnregister",
        "RepositoryModelLoad",
        "RepositoryModelUnload",
        "TraceSetting",
        "LogSettings",
    }
)


def _nul(sent: Sent, ours: Answer, theirs: Answer | None) -> bool:
    strings = nul_strings(sent)
    if theirs is None or not strings:
        return False
    if theirs.code == ours.code:
        # Names reach Triton's core cut at their NUL (C strings); its messages are
        # C strings too, cut at the first NUL of the whole message.
        cut = cut_at_nul(ours.text, strings)
        if ours.code == "200":  # an id cut to nothing is none: Triton leaves it out
            # (first in an infer answer, after the outputs in generate's)
            cut = cut.replace('{"id": "", ', "{", 1).replace(', "id": ""', "", 1)
        else:  # and an error's prefix names it as it names a request without an id
            cut = cut.replace("[request id: ] ", "[request id: <id_unknown>] ", 1)
        if theirs.text in (cut, ours.text.split("\0")[0], cut.split("\0")[0]):
            return True
        if ours.code == "OK" and theirs.text == cut_response(ours.text):
            return True
    # Where cutting changes what Triton checks (an input "\0" is then a second
    # input named ""): tritonx asked the request with its strings cut answers so.
    # Never for a call that changes the server: asking it would (a registration
    # "\0" refused by Triton left a region "" on tritonx alone).
    if (
        sent.grpc is not None
        and sent.ask_ours is not None
        and sent.grpc_method not in _CHANGES_STATE
    ):
        cut_request = type(sent.grpc)()
        cut_request.CopyFrom(sent.grpc)
        if cut_message(cut_request):
            return sent.ask_ours(cut_request.SerializeToString()) == theirs
    # Triton lists the request parameters' keys, then looks each one up by its C
    # string: a key cut at its NUL is not found.
    found = _PARAMETER_NOT_FOUND.fullmatch(theirs.text)
    if sent.is_http and theirs.code == "500" and found is not None:
        try:
            document = json.loads(sent.json_text)
            params = document.get("parameters")
        except (ValueError, RecursionError, AttributeError):
            return False
        keys = list(params) if isinstance(params, dict) else []
        if sent.path.split(b"?")[0].endswith((b"/generate", b"/generate_stream")):
            keys += list(document)  # generate's other fields are parameters too
        return any("\0" in key and key.split("\0")[0] == found.group(1) for key in keys)
    return False


def _server_metadata(sent: Sent, ours: Answer, theirs: Answer | None) -> bool:
    """GET /v2 or gRPC ServerMetadata: tritonx's own version; no CUDA shared memory
    in this build."""
    if theirs is None or (ours.code, theirs.code) not in (("200", "200"), ("OK", "OK")):
        return False
    if sent.is_http and sent.method == "GET" and sent.path.split(b"?")[0] == b"/v2":
        mine, triton = json.loads(ours.text), json.loads(theirs.text)
    elif sent.grpc_method == "ServerMetadata":
        mine, triton = (
            json_format.MessageToDict(
                text_format.Parse(text, service_pb2.ServerMetadataResponse())
            )
            for text in (ours.text, theirs.text)
        )
    else:
        return False
    triton["version"] = mine.get("version")
    extensions = triton.get("extensions", [])
    triton["extensions"] = [e for e in extensions if e != "cuda_shared_memory"]
    return bool(mine == triton)


_INVALID_DIM = re.compile(
    r"(?:\[request id: .*\] )?tensor '(.*)' contains an invalid dimension "
    r"(?:in shape )?\[(-?\d+(?:,-?\d+)*)?\]",
    re.S,
)


def _negative_dims(sent: Sent, ours: Answer, theirs: Answer | None) -> bool:
    match = _INVALID_DIM.fullmatch(ours.text)
    if sent.infer is None or ours.code != "INVALID_ARGUMENT" or match is None:
        return False
    dims = [int(d) for d in match.group(2).split(",")] if match.group(2) else []
    return any(
        tensor.name == match.group(1)
        and min(tensor.shape, default=0) < 0
        and list(tensor.shape[len(tensor.shape) - len(dims) :]) == dims
        for tensor in sent.infer.inputs
    )


_BATCH_TOO_BIG = re.compile(
    r"(?:\[request id: .*\] )?inference request batch-size must be <= \d+ for .*",
    re.S,
)


# An error answer's code, by protocol.
_INVALID = ("INVALID_ARGUMENT", "400")


def _batch_past_int32(sent: Sent, ours: Answer, theirs: Answer | None) -> bool:
    return (
        ours.code in _INVALID
        and _BATCH_TOO_BIG.fullmatch(ours.text) is not None
        and any(
            t.shape and 2**31 <= t.shape[0] <= INT64_MAX for t in request_inputs(sent)
        )
    )


_SHAPE_NOT_DATA = Answer(
    "500", "Unable to parse 'data': Shape does not match true shape of 'data' field"
)


def _count_wraps_to_zero(sent: Sent, ours: Answer, theirs: Answer | None) -> bool:
    """JSON ``data`` for a shape whose element count is a multiple of 2^64 (no dim
    0): Triton's int64 count wraps to 0, it reads no value and goes on; tritonx
    refuses the data. Only when every other input's data fits its shape (so the
    refusal is about such an input) and Triton read the document."""
    if not sent.is_http or ours != _SHAPE_NOT_DATA or theirs is None:
        return False
    if theirs.text.startswith(PARSE):
        return False
    wraps = 0
    for tensor in request_inputs(sent):
        if not tensor.has_data or not tensor.shape:
            continue
        count = element_count(tensor.shape)
        if all(0 < d <= INT64_MAX for d in tensor.shape) and count % 2**64 == 0:
            wraps += 1
        elif json_leaves(tensor.data) != count:
            return False
    return wraps > 0


_SIZE_TOO_BIG = re.compile(
    rf"(element count|byte size) for tensor '(.*)' exceeds maximum size of {INT64_MAX}",
    re.S,
)
# Bytes an element of each fixed-size datatype takes.
_ITEM_SIZE = {"BOOL": 1, "INT8": 1, "UINT8": 1, "INT16": 2, "UINT16": 2, "FP16": 2}
_ITEM_SIZE |= {"BF16": 2, "INT32": 4, "UINT32": 4, "FP32": 4}
_ITEM_SIZE |= {"INT64": 8, "UINT64": 8, "FP64": 8}


def _size_past_int64(sent: Sent, ours: Answer, theirs: Answer | None) -> bool:
    """A shape whose element count (BYTES) or byte size is past int64: tritonx
    refuses it; Triton's int64 arithmetic wraps (``Expected -28``)."""
    match = _SIZE_TOO_BIG.fullmatch(ours.text)
    if ours.code not in _INVALID or match is None:
        return False
    counted, name = match.groups()
    for tensor in request_inputs(sent):
        if tensor.name != name or not all(0 <= d <= INT64_MAX for d in tensor.shape):
            continue
        if counted == "element count":
            item = 1 if tensor.datatype == "BYTES" else None
        else:
            item = _ITEM_SIZE.get(tensor.datatype)
        if item is not None and element_count(tensor.shape) * item > INT64_MAX:
            return True
    return False


_PARAMETER_TYPE = re.compile(r"invalid value type for '(.*)' parameter, expected .*\.")
# A value a reserved parameter may not take ("invalid value for 'priority', expected
# value >= 0.").
_PARAMETER_VALUE = re.compile(r"invalid value for '(.*)', expected .*\.")
_ALLOWED_RESERVED = "triton_enable_empty_final_response"
_RESERVED_KEYS = (
    "parameter keys starting with 'triton_' are reserved for Triton usage. Only the "
    f"following keys starting with 'triton_' are allowed: {_ALLOWED_RESERVED}"
)


def _keys_named(text: str, keys: Iterable[str]) -> set[str]:
    """The request parameters an error is about: the one a type error names, or
    for the reserved-prefix refusal (which names none) every reserved key."""
    found = _PARAMETER_TYPE.fullmatch(text) or _PARAMETER_VALUE.fullmatch(text)
    if found is not None:
        return {found.group(1)} & set(keys)
    if text == _RESERVED_KEYS:
        return {k for k in keys if k.startswith("triton_") and k != _ALLOWED_RESERVED}
    return set()


def _alone(sent: Sent, key: str) -> Answer:
    """tritonx's answer to the request with only its parameter `key` kept."""
    assert sent.ask_ours is not None and sent.infer is not None
    alone = service_pb2.ModelInferRequest()
    alone.CopyFrom(sent.infer)
    for other in list(alone.parameters):
        if other != key:
            del alone.parameters[other]
    return sent.ask_ours(alone.SerializeToString())


# The value types Triton takes for each sequence control.
_SEQUENCE_CONTROLS = {
    "sequence_id": ("int64_param", "string_param"),
    "sequence_start": ("bool_param",),
    "sequence_end": ("bool_param",),
}


def _valid_sequence_control(key: str, value: Any) -> bool:
    return value.WhichOneof("parameter_choice") in _SEQUENCE_CONTROLS.get(key, ())


def _parameter_named(sent: Sent, ours: Answer, theirs: Answer | None) -> bool:
    """Of several invalid request parameters (a wrong value type, a value a
    reserved one may not take, a reserved 'triton_' key), Triton refuses the first
    of its protobuf map's order; tritonx the first in key order (deterministic).

    On a stream, diffharness.grpc_stream_answer puts an in-band error in unary
    terms by asking the unary call too, and Triton's two answers may name two
    different invalid parameters: its answer then stays "in-band" where tritonx's
    became INVALID_ARGUMENT, whichever parameter each names."""
    if sent.infer is None or theirs is None or sent.ask_ours is None:
        return False
    keys = list(sent.infer.parameters)
    mine, triton = _keys_named(ours.text, keys), _keys_named(theirs.text, keys)
    if not mine or not triton:
        return False
    named = min(mine)  # tritonx refuses the first in key order
    if ours.code == theirs.code:
        # The key tritonx refuses comes first and is invalid on its own.
        others = triton - {named}
        return bool(others) and named < min(others) and _alone(sent, named) == ours
    if {ours.code, theirs.code} != {"INVALID_ARGUMENT", "in-band"}:
        return False
    # Another key is invalid on its own too: Triton may have named either. A
    # sequence control of a valid type is not asked alone: it would run the
    # request on tritonx alone, into a sequence the two servers then hold
    # differently (and such a key is not the invalid one anyway).
    return _alone(sent, named) == ours and any(
        key != named
        and not _valid_sequence_control(key, sent.infer.parameters[key])
        and _keys_named(_alone(sent, key).text, keys)
        for key in keys
    )


ALLOWLIST = [
    Deviation(
        "lone-surrogate",
        # tritonx refuses a lone UTF-16 surrogate escape in any JSON string as a
        # client error, 400, without a parser offset; Triton answers 500 with
        # " at <offset>" appended for a lone high surrogate, and accepts a lone
        # low one (its rapidjson writes it out as invalid UTF-8), which then
        # reaches names, ids and data.
        "lone UTF-16 surrogate escape in a JSON string",
        _surrogate,
    ),
    Deviation(
        "too-deep",
        # tritonx refuses JSON nested deeper than TRITONX_MAX_DEPTH (500, "nested
        # too deeply") instead of recursing; Triton parses any depth and crashes
        # (stack overflow) on very deep documents, e.g. 100,000 levels.
        "JSON nested deeper than tritonx's limit",
        _too_deep,
        without_reference=True,
    ),
    Deviation(
        "client-error-400",
        # A JSON member of the wrong type (a shape dim, priority or timeout that is
        # no unsigned integer, ...): Triton's TritonJson message, which Triton
        # answers with 500; tritonx with 400, as a client's mistake (no 5xx for
        # those), keeping Triton's words. Only these messages, with the same text.
        "a JSON member of the wrong type: 400 where Triton answers 500",
        _client_error_400,
    ),
    Deviation(
        "dim-past-int64",
        # A shape dim in [2^63, 2^64): Triton reads it as uint64 and its core as a
        # negative int64 (then fails somewhere, or crashes); tritonx refuses it
        # where it reads the shape, with 400 and a message naming the dim. Only
        # that message, for a dim the JSON has, and not instead of a parse error.
        "a JSON shape dim past int64: refused as it is read",
        _dim_past_int64,
    ),
    Deviation(
        "invalid-utf8",
        # JSON must be UTF-8: tritonx refuses a string that is not (500, "Invalid
        # encoding in string.", as the parse errors); Triton takes its bytes as
        # they are. Being the first error tritonx meets, whatever Triton does with
        # the rest is not comparable.
        "a JSON string that is not UTF-8",
        _invalid_utf8,
        without_reference=True,
    ),
    Deviation(
        "nul-in-string",
        # Triton passes names, ids, parameter keys and string values to its core
        # as C strings, cut at a NUL character (so "INPUT1\u0000x" finds INPUT1, a
        # key "a\u0000b" is then not found), and its error messages are C strings
        # too; tritonx keeps every string whole. Excused when Triton's answer is
        # tritonx's with those strings, or the message, cut at the NUL.
        "a NUL character in a string",
        _nul,
    ),
    Deviation(
        "percent-escape",
        # tritonx decodes %XX in a URL's model name (tritonclient quotes names, so
        # names with such characters work); Triton takes the name as it is.
        # Excused when tritonx, asked for the name with its '%' kept (%25), answers
        # as Triton did.
        "a percent-escape in a URL's model name",
        percent_escape,
    ),
    Deviation(
        "unknown-method",
        # A method tritonx's HTTP parsers do not know (FOO): 400 Bad Request;
        # Triton: 405 on a route, 404 elsewhere.
        "an unknown HTTP method",
        unknown_method,
    ),
    Deviation(
        "odd-request-target",
        # A request target with bytes RFC 3986 does not allow ('{', '|', '"', DEL,
        # ...), or "//" and then no authority ("//]", "//a:b/"): tritonx's strict
        # parsers refuse the request (400 Bad Request), a guard against request
        # smuggling; Triton's evhtp routes it (404, 405, or an answer: a DEL in
        # the query of /v2/repository/index is served).
        "a request target that is no RFC 3986 URI",
        odd_target_refused,
    ),
    Deviation(
        "head-without-body",
        # HTTP forbids a body in an answer to HEAD: tritonx sends none, Triton
        # sends the error body; the statuses must be equal.
        "an answer to HEAD without its body",
        head_without_body,
    ),
    Deviation(
        "server-metadata",
        # GET /v2 and gRPC ServerMetadata: tritonx's own version, and no
        # cuda_shared_memory extension (this build has no CUDA); everything else
        # as Triton's.
        "server metadata: version and CUDA shared memory",
        _server_metadata,
    ),
    Deviation(
        "no-cuda-build",
        # gRPC CudaSharedMemoryRegister: refused with the words of a Triton built
        # without GPUs (this build has no CUDA), where Triton 2.51, built with
        # them, fails to open the handle ("invalid args") on this machine.
        "CUDA shared memory registration in a build without CUDA",
        no_cuda,
    ),
    Deviation(
        "grpc-negative-dim",
        # gRPC dims are int64: tritonx refuses a negative one, "tensor 'X' contains
        # an invalid dimension [...]"; Triton computes sizes with it (then fails
        # with odd numbers, or not at all). Only that message, for an input of the
        # request with that negative shape.
        "a negative dim in a gRPC shape",
        _negative_dims,
        without_reference=True,
    ),
    Deviation(
        "batch-past-int32",
        # A batch dim of 2^31 or more: Triton truncates it to 32 bits (4294967297
        # is a batch of 1, 2^31 a negative one), and hangs on some; tritonx refuses
        # it as larger than max_batch_size. Not sent to the reference.
        "a batch dim past 32 bits",
        _batch_past_int32,
        without_reference=True,
    ),
    Deviation(
        "count-wraps-to-zero",
        # JSON data for a shape of 2^32 x 2^32 elements: Triton's count wraps to 0,
        # it reads none of the data and names another error (another input's, or
        # the shape's); tritonx refuses the data that cannot fill the shape.
        "JSON data for a shape whose element count wraps to 0 in int64",
        _count_wraps_to_zero,
    ),
    Deviation(
        "size-past-int64",
        # A shape whose byte size (BYTES: element count) is past int64: tritonx
        # refuses it, naming the tensor; Triton wraps (a byte size mismatch with
        # "Expected -28", or a string count taken modulo 2^64) and may run the
        # model on such a shape. Not emulated, not sent to the reference.
        "a tensor size past int64",
        _size_past_int64,
        without_reference=True,
    ),
    Deviation(
        "shm-key-reuse",
        # A second system shared memory region on a key already registered:
        # tritonx maps it; Triton 2.51 reuses a descriptor it has closed and fails
        # (or maps whatever file now has that number). Undone on tritonx.
        "a second region on a registered shared memory key",
        shm_key_reuse,
    ),
    Deviation(
        "shm-unaligned-offset",
        # A region offset that is not page aligned: tritonx maps from the page
        # below; Triton 2.51's mmap refuses it. Undone on tritonx.
        "a shared memory offset that is not page aligned",
        shm_unaligned_offset,
    ),
    Deviation(
        "shm-register-range-wraps",
        # A region registered with offset + byte_size past 2^64: tritonx refuses
        # the range as it refuses any range past the object; Triton 2.51's check
        # wraps and its mmap then fails.
        "a shared memory registration whose end wraps past 2^64",
        shm_register_range_wraps,
    ),
    Deviation(
        "shm-range-wraps",
        # Infer with a shared memory offset + byte size past 2^64 (a gRPC size of
        # -1): tritonx refuses the range; Triton 2.51's end check wraps (later
        # Triton refuses it as an overflow).
        "a shared memory range whose end wraps past 2^64",
        shm_range_wraps,
        without_reference=True,
    ),
    Deviation(
        "load-parameter-named",
        # gRPC RepositoryModelLoad with several invalid parameters: Triton names
        # the first in its protobuf map's (hash) order, tritonx the first in key
        # order, every time.
        "which of several invalid load parameters is named",
        load_parameter_named,
    ),
    Deviation(
        "grpc-parameter-named",
        # Several invalid request parameters: Triton names the first in its
        # protobuf map's (hash) order, tritonx the first in key order, every time.
        # Excused when tritonx names an earlier key than Triton, one that is
        # invalid on its own (on a stream, also when Triton's stream and unary
        # answers named different keys: see _parameter_named).
        "which of several invalid gRPC request parameters is named",
        _parameter_named,
    ),
    Deviation(
        "generate-model-error-status",
        # A model's error as the first response of generate / generate_stream:
        # tritonx answers its code's status; Triton 2.51 answers 400 (it reads the
        # code of an error it already freed).
        "the status of a generate request the model answered with an error",
        generate_model_error_status,
    ),
    Deviation(
        "stream-default-policy-final",
        # A default-policy Python model's one response sent with flags 0, then
        # FINAL: tritonx's stream marks it final; Triton 2.51's marks it not final
        # and never sends a final one.
        "the final flag of a default-policy response sent before FINAL",
        stream_default_policy_final,
    ),
    Deviation(
        "error-before-final",
        # A default-policy Python model's error response sent with flags 0, then
        # FINAL: tritonx answers the error; Triton 2.51's unary gRPC answers an
        # empty OK response.
        "an error response a default-policy model sent before FINAL",
        error_before_final,
    ),
    Deviation(
        "bls-error-code",
        # The code of an error response a BLS call got: tritonx keeps the target's
        # (as later Triton does); Triton 2.51 reports INTERNAL for every one.
        "the code of an error a BLS call got from its target",
        bls_error_code,
    ),
]


def excused(sent: Sent, ours: Answer, theirs: Answer | None = None) -> Deviation | None:
    """The allowlist entry excusing this pair of answers, if any (``theirs`` None:
    only entries that need no reference answer)."""
    for deviation in ALLOWLIST:
        if (theirs is not None or deviation.without_reference) and deviation.excuses(
            sent, ours, theirs
        ):
            return deviation
    return None
