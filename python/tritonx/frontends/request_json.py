"""Request bodies read as JSON the way the native engine (and Triton) reads them, for
the Python HTTP engine and the control-plane routes.

The native engine's RapidJSON reader does the reading (``_native.native_json_loads``),
so both engines take and refuse the same text with the same words: RapidJSON's
("failed to parse the request JSON buffer: Invalid value. at 12"), NaN and infinities
allowed, a UTF-8 byte order mark skipped, strings that must be UTF-8, a lone UTF-16
surrogate escape refused as a client error, nesting bounded, an integer too long for
a double refused ("Number too big to be stored in double."), and a repeated member
name keeping its first value. Builds without the native engine (and so without
RapidJSON) read with Python's json module, with the same wording for its errors but
not every one of RapidJSON's verdicts.
"""

from __future__ import annotations

import json
from typing import Any

from tritonx import _native

Buffer = bytes | bytearray | memoryview


def loads(data: Buffer) -> Any:
    """The JSON document in ``data``; raises the native engine's parse error for
    text it refuses."""
    if _native.native_json_loads is not None:
        return _native.native_json_loads(data)
    try:
        # json accepts bytes and bytearray but not memoryview.
        return json.loads(bytes(data) if isinstance(data, memoryview) else data)
    except UnicodeDecodeError:
        raise _native.json_parse_error("encoding") from None
    except ValueError as exc:
        raise _native.json_parse_error("syntax", str(exc)) from None
    except RecursionError:
        raise _native.json_parse_error("depth") from None
