"""Request bodies read as JSON the way Triton's RapidJSON reads them, for the Python
HTTP engine (the native engine parses with RapidJSON itself).

``loads`` takes the fast way, Python's json module, whenever that gives what RapidJSON
would: valid UTF-8 text without a number RapidJSON refuses. Everything else goes
through ``_Reader``, a port of RapidJSON 1.1.0's recursive reader (the one Triton 2.51
parses requests with; made iterative here) with Triton's flags (NaN and infinities
allowed) and the native engine's checks (strings must be UTF-8; nesting is bounded,
which only matters where json.loads gave up). It finds the error RapidJSON reports
first, at RapidJSON's offset, worded as RapidJSON words it ("Invalid value. at 12"),
or else reads the document: RapidJSON also takes some text Python's json refuses
(``Inf``, ``-NaN``, ``NaN.5``, a UTF-8 byte order mark, anything after a NUL byte).
Numbers are checked as RapidJSON checks them: ``1e999999``, or an integer of 309
digits from 2e308 up, is "Number too big to be stored in double."; Python's json
would take the first as Infinity and refuse an integer of more than 4,300 digits
with a message about ``sys.set_int_max_str_digits``.

Values are Python's: a number RapidJSON accepts is converted as json.loads converts
it (correctly rounded), on both ways, so the two ways read the same document alike.
An object whose member name repeats keeps its first member, as RapidJSON's
FindMember finds it (json.loads alone keeps the last). Errors are the native
engine's (``_native.json_parse_error``): INTERNAL "failed to parse the request JSON
buffer: <RapidJSON's message> at <offset>", without the offset for invalid UTF-8 in
a string and for nesting past the native engine's bound; a lone UTF-16 high
surrogate escape is INVALID_ARG, as in the native engine (a lone low one is read:
the infer walk refuses it, other routes take it, as Triton's do).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from tritonx import _native
from tritonx.errors import InvalidArgumentError

Buffer = bytes | bytearray | memoryview

# The native engine's bound on nesting (kMaxDepth in csrc/http/http_infer_codec.cc):
# a document nested deeper fails to parse.
MAX_DEPTH = 900

# RapidJSON's messages (rapidjson/error/en.h), by what went wrong.
_MESSAGES = {
    "empty": "The document is empty.",
    "root": "The document root must not be followed by other values.",
    "value": "Invalid value.",
    "name": "Missing a name for object member.",
    "colon": "Missing a colon after a name of object member.",
    "object": "Missing a comma or '}' after an object member.",
    "array": "Missing a comma or ']' after an array element.",
    "hex": "Incorrect hex digit after \\u escape in string.",
    "surrogate": "The surrogate pair in string is invalid.",
    "escape": "Invalid escape character in string.",
    "quote": "Missing a closing quotation mark in string.",
    "big": "Number too big to be stored in double.",
    "fraction": "Miss fraction part in number.",
    "exponent": "Miss exponent in number.",
}

# Text that may hold a number RapidJSON refuses: a run of 200 digits (an integer part
# that big, or digits that make one when an exponent adds up to 99), or an exponent
# of three digits. Only then does the fast way check each number (parse hooks cost).
# The test runs on the text with every digit made '0', 'E' 'e', '-' '+' and any other
# byte ' ' (a regular expression over the text itself takes longer than json.loads).
_NUMBER_CLASSES = bytes(
    0x30 if 0x30 <= c <= 0x39 else 0x65 if c in b"eE" else 0x2B if c in b"+-" else 0x20
    for c in range(256)
)
_LONG_DIGITS = b"0" * 200
_LONG_EXPONENT = re.compile(rb"e\+?000")

# A number certainly valid and far from too big: the json module's value is right.
_PLAIN_NUMBER = re.compile(
    rb"-?(?:0|[1-9]\d{0,15})(?:\.\d{1,16})?(?:[eE][-+]?\d{1,2})?"
)
_NUMBER_GOES_ON = frozenset(b"0123456789.eE")
# String content up to the next quote, escape, control character or byte that does
# not start valid UTF-8 (RFC 3629: no overlong forms, surrogates or code points past
# U+10FFFF; what RapidJSON's UTF8::Validate accepts).
_STRING_RUN = re.compile(
    rb"(?:[\x20\x21\x23-\x5b\x5d-\x7f]+"
    rb"|[\xc2-\xdf][\x80-\xbf]"
    rb"|\xe0[\xa0-\xbf][\x80-\xbf]"
    rb"|[\xe1-\xec\xee\xef][\x80-\xbf]{2}"
    rb"|\xed[\x80-\x9f][\x80-\xbf]"
    rb"|\xf0[\x90-\xbf][\x80-\xbf]{2}"
    rb"|[\xf1-\xf3][\x80-\xbf]{3}"
    rb"|\xf4[\x80-\x8f][\x80-\xbf]{2})*"
)
_WHITESPACE = re.compile(rb"[ \t\n\r]*")
_HEX = re.compile(rb"[0-9A-Fa-f]{4}")
_SIMPLE_ESCAPES = {
    ord('"'): '"',
    ord("\\"): "\\",
    ord("/"): "/",
    ord("b"): "\b",
    ord("f"): "\f",
    ord("n"): "\n",
    ord("r"): "\r",
    ord("t"): "\t",
}
_BOM = b"\xef\xbb\xbf"
_DIGITS = range(ord("0"), ord("9") + 1)
# RapidJSON's Pow10 table: 1e0 .. 1e308 as doubles.
_POW10 = [float(f"1e{k}") for k in range(309)]


class _Refused(Exception):
    """RapidJSON refuses the text: ``what`` (a ``_MESSAGES`` key, "encoding" or
    "depth") at byte ``offset``."""

    def __init__(self, what: str, offset: int = 0) -> None:
        super().__init__(what, offset)
        self.what = what
        self.offset = offset


def loads(data: Buffer) -> Any:
    """The JSON document in ``data`` as Triton reads it (see the module docstring);
    raises the native engine's error for text it refuses."""
    raw = data if isinstance(data, bytes) else bytes(data)
    try:
        text = raw.decode("utf-8")
        if _maybe_too_big(raw):
            doc = json.loads(
                text,
                object_pairs_hook=_first_wins,
                parse_int=_checked_int,
                parse_float=_checked_float,
            )
        else:
            doc = json.loads(text, object_pairs_hook=_first_wins)
        # RapidJSON refuses a lone high surrogate escape where it meets it (a lone
        # low one it takes: what reads the document refuses it or not).
        if (b"\\ud" not in raw and b"\\uD" not in raw) or not _lone_high(doc):
            return doc
    except (ValueError, RecursionError, _Refused):
        pass  # UnicodeDecodeError is a ValueError
    try:
        return _Reader(raw).document()
    except _Refused as refused:
        raise _error(refused) from None


def _lone_high(doc: Any) -> bool:
    """Whether a string of the document (a name or a value) holds a UTF-16 high
    surrogate: json.loads joins the pairs, so any one left had no low one."""
    stack = [doc]
    while stack:
        value = stack.pop()
        if isinstance(value, str):
            try:
                value.encode("utf-8")  # fails on any surrogate
            except UnicodeEncodeError:
                if any(0xD800 <= ord(c) <= 0xDBFF for c in value):
                    return True
        elif isinstance(value, dict):
            stack.extend(value)
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    return False


def _maybe_too_big(raw: bytes) -> bool:
    classes = raw.translate(_NUMBER_CLASSES)
    return _LONG_DIGITS in classes or _LONG_EXPONENT.search(classes) is not None


def _first_wins(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object whose name repeats keeps its first member, as RapidJSON's
    FindMember finds it (json.loads keeps the last)."""
    obj = dict(pairs)
    if len(obj) != len(pairs):
        obj = {}
        for key, value in pairs:
            obj.setdefault(key, value)
    return obj


def _error(refused: _Refused) -> Exception:
    if refused.what in ("encoding", "depth"):
        return _native.json_parse_error(refused.what)
    detail = _MESSAGES[refused.what]
    if refused.what == "surrogate":
        # Not UTF-8, so never a string for the core: a client error (the native
        # engine's InvalidSurrogate, without RapidJSON's offset).
        return InvalidArgumentError(str(_native.json_parse_error("syntax", detail)))
    return _native.json_parse_error("syntax", f"{detail} at {refused.offset}")


def _checked_int(literal: str) -> int:
    """``parse_int`` of the fast way: refuses what RapidJSON refuses."""
    if len(literal) > 300:
        _number(literal.encode(), 0)  # raises _Refused when too big
    return int(literal)


def _checked_float(literal: str) -> float:
    """``parse_float`` of the fast way: refuses what RapidJSON refuses."""
    if len(literal) > 300 or "e" in literal or "E" in literal:
        _number(literal.encode(), 0)
    return float(literal)


def _number(text: bytes, pos: int) -> tuple[Any, int]:
    """RapidJSON 1.1.0's GenericReader::ParseNumber (kParseNanAndInfFlag, normal
    precision) from ``pos``: (value, end). The value of an accepted integer or
    decimal number is Python's (see the module docstring); NaN and infinities, which
    Python's json spells otherwise, are RapidJSON's."""
    size = len(text)

    def peek(at: int) -> int:
        return text[at] if at < size else 0

    start = pos
    minus = peek(pos) == 0x2D
    if minus:
        pos += 1
    i = i64 = significant = 0
    use64 = nan_or_inf = False
    d = 0.0
    c = peek(pos)
    if c == 0x30:
        pos += 1
    elif 0x31 <= c <= 0x39:
        i = c - 0x30
        pos += 1
        limit, last = (214748364, 0x38) if minus else (429496729, 0x35)
        while peek(pos) in _DIGITS:
            if i >= limit and (i != limit or peek(pos) > last):
                i64, use64 = i, True
                break
            i = i * 10 + peek(pos) - 0x30
            pos += 1
            significant += 1
    elif c in (0x49, 0x4E):  # 'I', 'N'
        # Consume('N') && Consume('a') && Consume('N'), else Consume('I') && ...:
        # each Consume takes its byte when it matches, so a failed NaN leaves what
        # it took behind.
        nan_or_inf = True
        taken = _consumed(text, pos, b"NaN")
        pos += taken
        if taken == 3:
            d = math.nan
        else:
            taken = _consumed(text, pos, b"Inf")
            pos += taken
            if taken < 3:
                raise _Refused("value", pos)
            d = -math.inf if minus else math.inf
            if peek(pos) == 0x69:  # 'i': then it must spell Infinity
                taken = _consumed(text, pos, b"inity")
                pos += taken
                if taken < 5:
                    raise _Refused("value", pos)
    else:
        raise _Refused("value", pos)

    use_double = False
    if use64:
        limit, last = (
            (0x0CCCCCCCCCCCCCCC, 0x38) if minus else (0x1999999999999999, 0x35)
        )
        while peek(pos) in _DIGITS:
            if i64 >= limit and (i64 != limit or peek(pos) > last):
                d, use_double = float(i64), True
                break
            i64 = i64 * 10 + peek(pos) - 0x30
            pos += 1
            significant += 1
    if use_double:  # an integer past 64 bits
        while peek(pos) in _DIGITS:
            if d >= 1.7976931348623157e307:
                raise _Refused("big", start)
            d = d * 10 + (peek(pos) - 0x30)
            pos += 1

    exp_frac = 0
    if peek(pos) == 0x2E:  # '.'
        pos += 1
        if peek(pos) not in _DIGITS:
            raise _Refused("fraction", pos)
        if not use_double:
            if not use64:
                i64 = i
            while peek(pos) in _DIGITS:
                if i64 > 0x1FFFFFFFFFFFFF:
                    break
                i64 = i64 * 10 + peek(pos) - 0x30
                pos += 1
                exp_frac -= 1
                if i64 != 0:
                    significant += 1
            d, use_double = float(i64), True
        while peek(pos) in _DIGITS:
            if significant < 17:
                d = d * 10.0 + (peek(pos) - 0x30)
                exp_frac -= 1
                if d > 0.0:
                    significant += 1
            pos += 1

    exp = 0
    if peek(pos) in (0x45, 0x65):  # 'E', 'e'
        pos += 1
        if not use_double:
            d, use_double = float(i64 if use64 else i), True
        exp_minus = False
        if peek(pos) == 0x2B:
            pos += 1
        elif peek(pos) == 0x2D:
            pos += 1
            exp_minus = True
        if peek(pos) not in _DIGITS:
            raise _Refused("exponent", pos)
        exp = peek(pos) - 0x30
        pos += 1
        if exp_minus:
            while peek(pos) in _DIGITS:
                exp = exp * 10 + peek(pos) - 0x30
                pos += 1
                if exp >= 214748364:  # the rest of the exponent is skipped
                    while peek(pos) in _DIGITS:
                        pos += 1
            exp = -exp
        else:
            max_exp = 308 - exp_frac
            while peek(pos) in _DIGITS:
                exp = exp * 10 + peek(pos) - 0x30
                pos += 1
                if exp > max_exp:
                    raise _Refused("big", start)

    if nan_or_inf:
        if not use_double:
            return d, pos
        # "NaN.5", "Infe2": RapidJSON reads what follows as a number of its own.
        d = _normal_precision(d, exp + exp_frac)
        return (-d if minus else d), pos
    literal = text[start:pos]
    if b"." in literal or b"e" in literal or b"E" in literal:
        return float(literal), pos
    return int(literal), pos


def _normal_precision(d: float, p: int) -> float:
    """RapidJSON's StrtodNormalPrecision."""

    def fast_path(significand: float, exp: int) -> float:
        if exp < -308:
            return 0.0
        if exp >= 0:
            return significand * _POW10[exp]
        return significand / _POW10[-exp]

    if p < -308:
        return fast_path(fast_path(d, -308), p + 308)
    return fast_path(d, p)


def _consumed(text: bytes, pos: int, word: bytes) -> int:
    """How many bytes of ``word`` RapidJSON's Consume() calls take at ``pos``."""
    n = 0
    while n < len(word) and pos + n < len(text) and text[pos + n] == word[n]:
        n += 1
    return n


class _Reader:
    """RapidJSON's recursive reader over a request body, without the recursion. A
    NUL byte reads as the end of the text, as RapidJSON's MemoryStream has it."""

    def __init__(self, text: bytes) -> None:
        self.text = text
        self.size = len(text)

    def peek(self, pos: int) -> int:
        return self.text[pos] if pos < self.size else 0

    def skip(self, pos: int) -> int:
        match = _WHITESPACE.match(self.text, pos)
        assert match is not None
        return match.end()

    def document(self) -> Any:
        # GenericDocument::Parse reads through an EncodedInputStream, which takes
        # a UTF-8 byte order mark off the front, byte by byte: 0xEF if first, then
        # 0xBB if next, then 0xBF if next (offsets still count them).
        pos = 0
        for byte in _BOM:
            if self.peek(pos) == byte:
                pos += 1
        pos = self.skip(pos)
        if self.peek(pos) == 0:
            raise _Refused("empty", pos)
        value, pos = self.value(pos)
        pos = self.skip(pos)
        if self.peek(pos) != 0:
            raise _Refused("root", pos)
        return value

    def value(self, pos: int) -> tuple[Any, int]:
        """The value at ``pos`` (whitespace skipped) and where it ends."""
        # Open containers: [container, key of the member being read].
        stack: list[list[Any]] = []
        while True:
            c = self.peek(pos)
            value: Any
            if c == 0x7B or c == 0x5B:  # '{' or '['
                pos = self.skip(pos + 1)
                if len(stack) >= MAX_DEPTH:
                    raise _Refused("depth")
                close = 0x7D if c == 0x7B else 0x5D
                if self.peek(pos) == close:
                    value, pos = ({} if c == 0x7B else []), pos + 1
                elif c == 0x7B:
                    key, pos = self.member_name(pos)
                    stack.append([{}, key])
                    continue
                else:
                    stack.append([[], None])
                    continue
            elif c == 0x22:  # '"'
                value, pos = self.string(pos)
            elif c == 0x6E:
                value, pos = None, self.word(pos, b"null")
            elif c == 0x74:
                value, pos = True, self.word(pos, b"true")
            elif c == 0x66:
                value, pos = False, self.word(pos, b"false")
            else:
                value, pos = self.number(pos)
            # Put the value in its container; close the containers that end here.
            while stack:
                top = stack[-1]
                container = top[0]
                pos = self.skip(pos)
                c = self.peek(pos)
                if isinstance(container, dict):
                    container.setdefault(top[1], value)  # the first one counts
                    if c == 0x2C:  # ','
                        top[1], pos = self.member_name(self.skip(pos + 1))
                        break
                    if c != 0x7D:
                        raise _Refused("object", pos)
                else:
                    container.append(value)
                    if c == 0x2C:
                        pos = self.skip(pos + 1)
                        break
                    if c != 0x5D:
                        raise _Refused("array", pos)
                stack.pop()
                value, pos = container, pos + 1
            else:
                return value, pos

    def member_name(self, pos: int) -> tuple[str, int]:
        """A member's name and its colon: where its value starts."""
        if self.peek(pos) != 0x22:
            raise _Refused("name", pos)
        key, pos = self.string(pos)
        pos = self.skip(pos)
        if self.peek(pos) != 0x3A:  # ':'
            raise _Refused("colon", pos)
        return key, self.skip(pos + 1)

    def word(self, pos: int, word: bytes) -> int:
        taken = _consumed(self.text, pos, word)
        if taken < len(word):
            raise _Refused("value", pos + taken)
        return pos + taken

    def number(self, pos: int) -> tuple[Any, int]:
        plain = _PLAIN_NUMBER.match(self.text, pos)
        if plain is not None and self.peek(plain.end()) not in _NUMBER_GOES_ON:
            literal = plain.group()
            is_float = b"." in literal or b"e" in literal or b"E" in literal
            return (float(literal) if is_float else int(literal)), plain.end()
        return _number(self.text, pos)

    def string(self, pos: int) -> tuple[str, int]:
        text = self.text
        pos += 1  # the opening quote
        parts: list[str] = []
        while True:
            run = _STRING_RUN.match(text, pos)
            assert run is not None
            if run.end() > pos:
                parts.append(text[pos : run.end()].decode("utf-8"))
                pos = run.end()
            c = self.peek(pos)
            if c == 0x22:
                return "".join(parts), pos + 1
            if c == 0x5C:  # '\\'
                escape = pos
                e = self.peek(pos + 1)
                if e in _SIMPLE_ESCAPES:
                    parts.append(_SIMPLE_ESCAPES[e])
                    pos += 2
                    continue
                if e != 0x75:  # 'u'
                    raise _Refused("escape", escape)
                code, pos = self.hex4(pos + 2, escape)
                if 0xD800 <= code <= 0xDBFF:
                    if not text.startswith(b"\\u", pos):
                        raise _Refused("surrogate", escape)
                    low, pos = self.hex4(pos + 2, escape)
                    if not 0xDC00 <= low <= 0xDFFF:
                        raise _Refused("surrogate", escape)
                    code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                # RapidJSON 1.1.0 takes a lone low surrogate; what reads the
                # document refuses it (as it does json.loads's).
                parts.append(chr(code))
                continue
            if c == 0:  # a NUL byte or the end of the text
                raise _Refused("quote", pos)
            if c < 0x20:
                raise _Refused("escape", pos)
            raise _Refused("encoding", pos)

    def hex4(self, pos: int, escape: int) -> tuple[int, int]:
        if _HEX.match(self.text, pos) is None:
            raise _Refused("hex", escape)
        return int(self.text[pos : pos + 4], 16), pos + 4
