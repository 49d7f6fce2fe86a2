"""The allowlist's predicates for the control plane and shared memory
(diff_allowlist.py holds the entries and why each exists): CUDA shared memory in a
build without CUDA, system shared memory registrations Triton 2.51 cannot make, a
shared memory range whose end wraps past 2^64 (registered or used), which of several bad load
parameters is named, and four of a Python model's response flows: the status of a
generate request the model failed, the final flag of a default-policy response sent
before FINAL, an error response sent before FINAL, and the code of an error a BLS
call got."""

from __future__ import annotations

import re

from diffutil import Answer, Sent, shm_references, shm_registration


def no_cuda(sent: Sent, ours: Answer, theirs: Answer | None) -> bool:
    """gRPC CudaSharedMemoryRegister: this build has no CUDA and says so, as a
    Triton built without GPUs does; Triton 2.51 (a GPU build) fails to open the
    handle on a machine without one, or refuses the request for another reason."""
    if sent.grpc_method != "CudaSharedMemoryRegister" or theirs is None:
        return False
    refused = (
        f"failed to register CUDA shared memory region: '{sent.grpc.name}', "
        "GPUs not supported"
    )
    return ours == Answer("INVALID_ARGUMENT", refused) and theirs.code != "OK"


def shm_key_reuse(sent: Sent, ours: Answer, theirs: Answer | None) -> bool:
    """A second region on a key already registered: tritonx maps it, or refuses it
    as it would on a fresh key (a range past the object); Triton 2.51 reuses the
    first region's descriptor, which it closed after mapping, and fails (or maps
    whatever file that descriptor number now is). Its fstat on the closed
    descriptor fails before its range check, so its refusal then names the key."""
    registration = shm_registration(sent)
    if (
        registration is None
        or registration.key not in sent.shm_keys
        or theirs is None
        or theirs.code in ("OK", "200")
    ):
        return False
    closed = f"Invalid shared memory region: '{registration.key}'"
    return ours.code in ("OK", "200") or (
        theirs.code in ("INTERNAL", "500") and theirs.text == closed
    )


PAGE_SIZE = 4096


def shm_unaligned_offset(sent: Sent, ours: Answer, theirs: Answer | None) -> bool:
    """An offset that is not page aligned: tritonx maps from the page below it;
    Triton 2.51's mmap refuses it (EINVAL), in these words."""
    registration = shm_registration(sent)
    if registration is None or theirs is None:
        return False
    refused = (
        f"failed to register shared memory region '{registration.name}': "
        "unable to process address spaceInvalid argument"
    )
    return (
        registration.offset % PAGE_SIZE != 0
        and ours.code in ("OK", "200")
        and theirs.code in ("INVALID_ARGUMENT", "400")
        and theirs.text in (refused, refused.split("\0")[0])
    )


def shm_register_range_wraps(sent: Sent, ours: Answer, theirs: Answer | None) -> bool:
    """A registration whose offset + byte_size is 2^64 or more: tritonx refuses the
    range (invalid args); Triton 2.51's end check wraps, so it goes on to map the
    range and its mmap fails (ENOMEM, EINVAL), in its words for a failed map."""
    registration = shm_registration(sent)
    if registration is None or registration.byte_size is None or theirs is None:
        return False
    prefix = f"failed to register shared memory region '{registration.name}': "
    return (
        registration.offset + registration.byte_size >= 2**64
        and ours.code in ("INVALID_ARGUMENT", "400")
        and ours.text == prefix + "invalid args"
        and theirs.code == ours.code
        and theirs.text.startswith(prefix + "unable to process address space")
    )


_LOAD_PARAMETER = re.compile(
    r"unrecognized load parameter '(.*)'\.|invalid value type for load parameter "
    r"'(.*)', expected (?:string|bytes)_param\.",
    re.S,
)


_LOAD_PARAMETER_CUT = re.compile(
    r"(?:unrecognized load parameter|invalid value type for load parameter) '(.*)",
    re.S,
)


def _triton_load_key(text: str, keys: list[str]) -> str | None:
    """The load parameter Triton's refusal names. Its messages are C strings: a
    key with a NUL ends the whole message there, quote and all."""
    found = _LOAD_PARAMETER.fullmatch(text)
    if found is not None:
        return found.group(1) if found.group(1) is not None else found.group(2)
    cut = _LOAD_PARAMETER_CUT.fullmatch(text)
    if cut is None:
        return None
    named = [k for k in keys if "\0" in k and k.split("\0")[0] == cut.group(1)]
    return named[0] if len(named) == 1 else None


def load_parameter_named(sent: Sent, ours: Answer, theirs: Answer | None) -> bool:
    """gRPC RepositoryModelLoad with several invalid parameters: Triton names the
    first of its protobuf map's order, tritonx the first in key order."""
    if sent.grpc_method != "RepositoryModelLoad" or theirs is None:
        return False
    if (ours.code, theirs.code) != ("INVALID_ARGUMENT", "INVALID_ARGUMENT"):
        return False
    mine = _LOAD_PARAMETER.fullmatch(ours.text)
    keys = list(sent.grpc.parameters)
    other = _triton_load_key(theirs.text, keys)
    if mine is None or other is None:
        return False
    named = mine.group(1) if mine.group(1) is not None else mine.group(2)
    return named in keys and other in keys and named < other


_OUT_OF_RANGE = re.compile(
    r"Invalid offset \+ byte size for shared memory region: '(.*)'", re.S
)


def shm_range_wraps(sent: Sent, ours: Answer, theirs: Answer | None) -> bool:
    """An infer request's shared memory range whose end, offset + byte_size, is
    past 2^64: tritonx refuses it as out of the region; Triton 2.51 computes the
    end modulo 2^64, finds it inside and goes on with the huge size (an input then
    fails the core's size check, an output is written). Only that refusal, for a
    region of the request with such a range."""
    match = _OUT_OF_RANGE.fullmatch(ours.text)
    if ours.code not in ("400", "INVALID_ARGUMENT") or match is None:
        return False
    return any(
        ref.region == match.group(1) and ref.offset + ref.byte_size > 2**64
        for ref in shm_references(sent)
    )


_GENERATE = re.compile(rb"POST /v2/models/[^ ]+/generate(?:_stream)? ")


def generate_model_error_status(
    sent: Sent, ours: Answer, theirs: Answer | None
) -> bool:
    """generate / generate_stream whose first response is the model's error: tritonx
    answers the status of the error's code (500 for INTERNAL, 503 for UNAVAILABLE,
    ...), as Triton's infer endpoint does; Triton 2.51's generate reads the code
    from the error after it freed it, and answers 400. Same message (or events)."""
    if theirs is None or not sent.is_http or not _GENERATE.match(sent.wire):
        return False
    return (
        theirs.code == "400"
        and ours.code in ("500", "501", "503")
        and ours.text == theirs.text
    )


_FINAL = 'key: "triton_final_response" value {{ bool_param: {} }}'


# A stream's empty final response: no outputs, no error, only the flag.
_EMPTY_FINAL = re.compile(
    r'model_name: "[^"]*" (model_version: "[^"]*" )?(id: "[^"]*" )?'
    r'parameters \{ key: "triton_final_response" value \{ bool_param: true \} \}'
)


def stream_default_policy_final(
    sent: Sent, ours: Answer, theirs: Answer | None
) -> bool:
    """A default-policy model sent its one response with flags 0, then FINAL
    alone: on a stream tritonx marks that response final (it ends the request);
    Triton 2.51 marks it not final and then sends nothing more (a FINAL alone is
    written only for decoupled models), so a client waiting for the final response
    waits forever. Only that flag of the last message differs. Where that model
    is the last step of a decoupled ensemble, Triton 2.51's ensemble may send its
    own empty final response after it (seen when the ensemble's first step had
    ended first)."""
    if theirs is None or sent.grpc_method != "ModelStreamInfer":
        return False
    if ours.code != "OK" or theirs.code != "OK":
        return False
    *before, last = ours.text.split("\n")
    if _FINAL.format("true") not in last:
        return False
    not_final = [*before, last.replace(_FINAL.format("true"), _FINAL.format("false"))]
    shown = theirs.text.split("\n")
    if shown == not_final:
        return True
    return shown[:-1] == not_final and _EMPTY_FINAL.fullmatch(shown[-1]) is not None


def error_before_final(sent: Sent, ours: Answer, theirs: Answer | None) -> bool:
    """Unary ModelInfer to a default-policy model that sent an error response with
    flags 0, then FINAL alone: tritonx answers the error; Triton 2.51 answers OK
    with an empty response (not even the model's name), the error lost."""
    return (
        sent.infer is not None
        and theirs == Answer("OK", "")
        and ours.code not in ("OK", "no answer")
    )


# An error code as test_differential_bls.py's model reports it: int, str, repr.
_BLS_CODE = re.compile(
    r'\[(\d), \\"__ErrorCode\.(\w+)\\", \\"<__ErrorCode\.\w+: \d>\\"\]'
)
_INTERNAL = '[1, \\"__ErrorCode.INTERNAL\\", \\"<__ErrorCode.INTERNAL: 1>\\"]'


def bls_error_code(sent: Sent, ours: Answer, theirs: Answer | None) -> bool:
    """An error response a BLS call got from its target: tritonx keeps the code the
    target answered with (as Triton does from 25.04 on); Triton 2.51 makes every
    such error INTERNAL. Excused when the answers are the same with every reported
    code taken as INTERNAL."""
    if theirs is None or ours.code != "200" or _BLS_CODE.search(ours.text) is None:
        return False
    return _BLS_CODE.sub(lambda _: _INTERNAL, ours.text) == theirs.text
