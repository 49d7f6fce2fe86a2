"""How Triton's pb_utils classes take their arguments.

Triton's ``Tensor`` and ``InferenceRequest`` are C++ classes bound with pybind11,
so what a model may pass is what pybind11's converters accept, not what Python
duck typing would: a name is ``str`` or ``bytes`` (bytes are decoded as UTF-8, so
``request_input.as_numpy()[0]`` from a BYTES tensor names a model, as in NVIDIA's
BLS example); a list of names is any sequence but a string (a list, tuple or numpy
array, not a set or a generator); an integer is an ``int`` or anything with
``__index__`` (``np.int64``, ``bool``), never a float or a string. Anything else
is refused with pybind11's ``TypeError`` ("incompatible constructor arguments"),
which models and their tests may match on. Observed on Triton 2.51.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping, Sequence
from typing import Any

# The default of an argument the binding declares without one (``inputs``,
# ``requested_output_names`` and ``model_name`` of InferenceRequest).
REQUIRED: Any = object()


class Refused(Exception):
    """A value the binding's converter would not take (the caller words the error)."""


def std_string(value: Any) -> str:
    """A ``std::string`` argument: ``str`` as it is, ``bytes`` decoded as UTF-8
    (UnicodeDecodeError for other bytes, as Triton raises when it reads them back)."""
    if value is REQUIRED:
        raise Refused
    if isinstance(value, str):
        return str(value)
    if isinstance(value, bytes):
        return value.decode("utf-8")
    raise Refused


def sequence(value: Any) -> list[Any]:
    """A ``std::vector`` argument's items (converted by the caller)."""
    # PySequence_Check: indexable and not a mapping (a dict, a set and a
    # generator are refused).
    if value is REQUIRED:
        raise Refused
    if isinstance(value, str | bytes | Mapping) or not hasattr(value, "__getitem__"):
        raise Refused
    return list(value)


def string_list(value: Any) -> list[str]:
    """A ``std::vector<std::string>`` argument."""
    return [std_string(item) for item in sequence(value)]


def integer(value: Any) -> int:
    """An integer argument (``int64_t``, ``uint32_t``...)."""
    if isinstance(value, float):
        raise Refused
    try:
        return operator.index(value)
    except TypeError:
        raise Refused from None


def incompatible(
    callable_name: str, signature: str, invoked: Sequence[str], constructor: bool
) -> TypeError:
    """pybind11's refusal: the one signature the binding has, and the call."""
    kind = "constructor" if constructor else "function"
    return TypeError(
        f"{callable_name}(): incompatible {kind} arguments. The following argument "
        f"types are supported:\n    1. {signature}\n\nInvoked with: {', '.join(invoked)}"
    )
