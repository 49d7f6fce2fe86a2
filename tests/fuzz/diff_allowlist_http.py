"""The allowlist's predicates for HTTP request lines (diff_allowlist.py holds the
entries and why each exists): a percent-escaped model name, a method tritonx's
parsers do not know, a request target with bytes RFC 3986 does not allow or an
authority that is none, and HEAD answers without a body."""

from __future__ import annotations

import re

from diffutil import Answer, Sent

_MODEL_SEGMENT = re.compile(rb"^(/v2/(?:repository/)?models/)([^/?]*)")


def percent_escape(sent: Sent, ours: Answer, theirs: Answer | None) -> bool:
    """tritonx decodes %XX in a URL's model name (tritonclient quotes names);
    Triton does not: it answers as tritonx does for the name with its '%' kept."""
    match = _MODEL_SEGMENT.match(sent.path)
    if theirs is None or sent.ask_ours is None or match is None:
        return False
    if b"%" not in match.group(2):
        return False
    kept = match.group(2).replace(b"%", b"%25")
    path = match.group(1) + kept + sent.path[match.end() :]
    method, _, rest = sent.wire.partition(b" ")
    replay = method + b" " + path + rest[len(sent.path) :]
    return sent.ask_ours(replay) == theirs


# Methods tritonx's HTTP parsers know; others are refused as a bad request.
KNOWN_METHODS = {"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE"}
KNOWN_METHODS |= {"PATCH"}


def unknown_method(sent: Sent, ours: Answer, theirs: Answer | None) -> bool:
    return (
        sent.method not in KNOWN_METHODS
        and ours == Answer("400", "Bad Request")
        and theirs in (Answer("405", "Method Not Allowed"), Answer("404", "Not Found"))
    )


# The bytes RFC 3986 allows in a request target (with '%' escapes); llhttp, the
# native engine's parser, refuses others.
_TARGET_BYTES = frozenset(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
    b"-._~:/?#[]@!$&'()*+,;=%"
)


# After "//" a target begins with an authority (RFC 3986: userinfo@host:port),
# which evhttp, the native engine's URI reader, refuses when it is none.
_PCHAR = rb"[A-Za-z0-9\-._~!$&'()*+,;=]|%[0-9A-Fa-f]{2}"
_AUTHORITY = re.compile(
    rb"(?:(?:" + _PCHAR + rb"|:)*@)?(?:\[[0-9A-Fa-f:.]*\]|(?:" + _PCHAR + rb")*)"
    rb"(?::[0-9]*)?"
)


def odd_target(target: bytes) -> bool:
    """Whether a request target has bytes RFC 3986 does not allow, or an
    authority after "//" that is none."""
    if any(byte not in _TARGET_BYTES for byte in target):
        return True
    authority = re.split(rb"[/?#]", target[2:], maxsplit=1)[0]
    return target.startswith(b"//") and _AUTHORITY.fullmatch(authority) is None


def odd_target_refused(sent: Sent, ours: Answer, theirs: Answer | None) -> bool:
    return (
        sent.is_http
        and odd_target(sent.path)
        and ours == Answer("400", "Bad Request")
        and theirs is not None
    )


def head_without_body(sent: Sent, ours: Answer, theirs: Answer | None) -> bool:
    return (
        sent.method == "HEAD"
        and theirs is not None
        and ours.code == theirs.code
        and ours.text == ""
    )
