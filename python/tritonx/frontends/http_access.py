"""Who may call what over HTTP: restricted API groups, forwarded headers, TLS.

* ``--http-restricted-api=<api>[,<api>...]:<header>=<value>`` (repeatable): a request
  to a route of a restricted group must carry ``<header>: <value>`` (name in any
  case, value exact, first of repeated headers counts), else 403 with Triton's
  message. The check comes before the method check, as in Triton's handlers.
* ``--http-header-forward-pattern=<regex>``: request headers whose name matches
  (``re.search``; case-insensitive unless the pattern starts with ``(?-i)``) become
  string request parameters of an inference request, under the name as sent.
* ``--http-use-ssl`` / ``--http-use-ssl-mutual``: the listening socket speaks TLS;
  with mutual TLS the client must present a certificate signed by the root cert.
"""

from __future__ import annotations

import json
import re
import ssl
from collections.abc import Iterable, Mapping
from pathlib import Path

from tritonx import _native
from tritonx.errors import InvalidArgumentError
from tritonx.frontends.http_responses import TEXT, Buffer, response
from tritonx.frontends.http_routes import ROUTE_CATEGORIES

# category -> (header name, expected value)
Restrictions = Mapping[str, tuple[str, str]]


class AccessRules:
    """The per-route restriction check, with the 403 answers prepared once."""

    def __init__(self, restrictions: Restrictions) -> None:
        # route kind -> (lower-cased header name, expected value, 403 answer)
        self._by_route: dict[str, tuple[bytes, bytes, list[Buffer]]] = {}
        for kind, category in ROUTE_CATEGORIES.items():
            rule = restrictions.get(category)
            if rule is None:
                continue
            header, value = rule
            # Triton's JSON error body, sent as text/plain like Triton does.
            message = _native.http_messages.restricted_api(header)
            body = json.dumps({"error": message}, separators=(",", ":")).encode()
            self._by_route[kind] = (
                header.lower().encode("latin-1"),
                value.encode("latin-1"),
                response(403, body, TEXT),
            )

    def __bool__(self) -> bool:
        return bool(self._by_route)

    def refusal(self, kind: str, headers: Mapping[bytes, bytes]) -> list[Buffer] | None:
        """The 403 answer if a request to this route kind lacks its header."""
        rule = self._by_route.get(kind)
        if rule is None or headers.get(rule[0]) == rule[1]:
            return None
        return rule[2]


def compile_forward_pattern(pattern: str) -> re.Pattern[str]:
    """Triton prefixes ``(?i)``, so a leading ``(?-i)`` turns case sensitivity back
    on; Python has no global ``(?-i)``, so it is taken off here instead."""
    flags = re.IGNORECASE
    if pattern.startswith("(?-i)"):
        pattern, flags = pattern[len("(?-i)") :], re.RegexFlag(0)
    try:
        return re.compile(pattern, flags)
    except re.error as error:
        raise ValueError(f"invalid regular expression '{pattern}': {error}") from None


def forwarded_headers(
    pattern: re.Pattern[str], headers: Iterable[tuple[bytes, bytes]]
) -> dict[str, str]:
    """The matching headers as request parameters; a later duplicate wins, which
    is what a Python model reading Triton's parameter JSON sees."""
    out: dict[str, str] = {}
    for raw_name, raw_value in headers:
        name = raw_name.decode("latin-1")
        if not pattern.search(name):
            continue
        # Names Triton keeps for itself (the core's rule, shared with the native
        # engine).
        if _native.http_messages.header_reserved(name):
            raise InvalidArgumentError(_native.http_messages.reserved_header(name))
        out[name] = raw_value.decode("utf-8", "replace")
    return out


def server_ssl_context(
    server_cert: Path | None,
    server_key: Path | None,
    root_cert: Path | None,
    *,
    mutual: bool,
) -> ssl.SSLContext:
    """A TLS server context from PEM files; errors name the flag to fix."""
    messages = _native.http_messages
    if server_cert is None or server_key is None:
        raise InvalidArgumentError(messages.tls_needs_cert())
    if mutual and root_cert is None:
        raise InvalidArgumentError(messages.tls_needs_root())
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(server_cert, server_key)
    except OSError as error:
        # ssl.SSLError is an OSError whose text names OpenSSL's source file: ""
        # lets the message say the file is not PEM.
        reason = "" if isinstance(error, ssl.SSLError) else error.strerror or str(error)
        raise InvalidArgumentError(
            messages.tls_bad_server_cert(str(server_cert), str(server_key), reason)
        ) from None
    if root_cert is not None:
        try:
            context.load_verify_locations(cafile=root_cert)
        except OSError as error:
            reason = (
                "" if isinstance(error, ssl.SSLError) else error.strerror or str(error)
            )
            raise InvalidArgumentError(
                messages.tls_bad_root_cert(str(root_cert), reason)
            ) from None
    if mutual:
        context.verify_mode = ssl.CERT_REQUIRED
    return context
