"""tritonx-perf's flags for what travels with the requests and how: request
parameters, gRPC compression, TLS (gRPC, and HTTPS for an https:// URL), and
perf_analyzer's custom-interval load (--request-intervals). cli.py adds the flags
with `add_transport_flags` and turns the parsed flags into keyword arguments with
`transport_options`."""

from __future__ import annotations

import argparse
import ssl
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tritonx.tools.perf.errors import PerfError
from tritonx.tools.perf.server_api import GrpcSsl

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def add_transport_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--request-parameter",
        dest="request_parameters",
        action="append",
        default=[],
        metavar="NAME:VALUE:TYPE",
        help="a parameter sent with every request; TYPE is int, bool or string "
        "(repeatable)",
    )
    p.add_argument(
        "--request-intervals",
        default=None,
        metavar="FILE",
        help="send requests at these gaps (microseconds, one per line, repeated) "
        "instead of a concurrency or a request rate",
    )
    p.add_argument(
        "--grpc-compression-algorithm",
        default="none",
        choices=["none", "gzip", "deflate"],
        help="gRPC: compress the requests sent (default none)",
    )
    p.add_argument(
        "--ssl-grpc-use-ssl",
        action="store_true",
        help="gRPC: connect over TLS",
    )
    p.add_argument(
        "--ssl-grpc-root-certifications-file",
        default=None,
        metavar="PEM",
        help="gRPC TLS: the CA certificates to verify the server with",
    )
    p.add_argument(
        "--ssl-grpc-private-key-file",
        default=None,
        metavar="PEM",
        help="gRPC TLS: the client's private key (mutual TLS)",
    )
    p.add_argument(
        "--ssl-grpc-certificate-chain-file",
        default=None,
        metavar="PEM",
        help="gRPC TLS: the client's certificate chain (mutual TLS)",
    )
    p.add_argument(
        "--ssl-https-verify-peer",
        type=int,
        default=1,
        choices=[0, 1],
        help="HTTPS: 0 accepts any server certificate (default 1)",
    )
    p.add_argument(
        "--ssl-https-verify-host",
        type=int,
        default=2,
        choices=[0, 1, 2],
        help="HTTPS: 0 skips matching the certificate to the host (default 2; 1 is 2)",
    )
    p.add_argument(
        "--ssl-https-ca-certificates-file",
        default=None,
        metavar="PEM",
        help="HTTPS: the CA certificates to verify the server with",
    )
    p.add_argument(
        "--ssl-https-client-certificate-file",
        default=None,
        metavar="FILE",
        help="HTTPS: the client's certificate (mutual TLS)",
    )
    p.add_argument(
        "--ssl-https-client-certificate-type", default="PEM", choices=["PEM", "DER"]
    )
    p.add_argument(
        "--ssl-https-private-key-file",
        default=None,
        metavar="FILE",
        help="HTTPS: the client certificate's private key",
    )
    p.add_argument(
        "--ssl-https-private-key-type", default="PEM", choices=["PEM", "DER"]
    )


@dataclass
class Transport:
    """What the parsed transport flags add to the load and the control plane."""

    target: dict[str, Any] = field(default_factory=dict)  # for _native.PerfTarget
    connect: dict[str, Any] = field(default_factory=dict)  # for server_api.connect
    # --request-intervals: the gaps in microseconds (empty: not this mode).
    intervals_us: list[int] = field(default_factory=list)


def parse_headers(headers: list[str]) -> dict[str, str]:
    """-H Name:Value (repeatable): the HTTP headers every request carries."""
    parsed = {}
    for header in headers:
        name, sep, value = header.partition(":")
        if not sep or not name.strip():
            raise PerfError(f"-H '{header}' must be 'Name:Value'")
        parsed[name.strip()] = value.strip()
    return parsed


def parse_request_parameter(text: str) -> tuple[str, bool | int | str]:
    """One --request-parameter, NAME:VALUE:TYPE, as (name, typed value)."""
    parts = text.split(":")
    if len(parts) != 3:
        raise PerfError(
            f"--request-parameter '{text}' must be name:value:type "
            "(a value cannot hold ':')"
        )
    name, value, kind = parts
    if not name:
        raise PerfError(f"--request-parameter '{text}': the name is empty")
    if kind == "string":
        return name, value
    if kind == "int":
        try:
            number = int(value)
        except ValueError:
            number = None
        if number is None or not INT64_MIN <= number <= INT64_MAX:
            raise PerfError(
                f"--request-parameter '{text}': '{value}' is not a 64-bit integer"
            )
        return name, number
    if kind == "bool":
        # perf_analyzer takes anything but "true" as false; a typo is refused here.
        if value not in ("true", "false"):
            raise PerfError(
                f"--request-parameter '{text}': a bool is 'true' or 'false'"
            )
        return name, value == "true"
    raise PerfError(
        f"--request-parameter '{text}': unsupported type '{kind}' (int, bool or string)"
    )


def read_intervals(path: str) -> list[int]:
    """--request-intervals: one non-negative interval in microseconds per line."""
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as exc:
        raise PerfError(
            f"cannot read --request-intervals file {path}: {exc.strerror}"
        ) from None
    except UnicodeDecodeError:
        raise PerfError(f"--request-intervals file {path} is not text") from None
    intervals = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            value = int(line.strip())
        except ValueError:
            value = -1
        if value < 0:
            raise PerfError(
                f"{path}:{number}: '{line.strip()}' is not an interval in "
                "microseconds (a whole number >= 0)"
            )
        intervals.append(value)
    if not intervals:
        raise PerfError(f"--request-intervals file {path} holds no interval")
    if sum(intervals) == 0:
        raise PerfError(f"--request-intervals file {path}: every interval is 0")
    return intervals


def _read_pem(path: str | None, flag: str) -> bytes | None:
    if path is None:
        return None
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise PerfError(f"cannot read {flag} {path}: {exc.strerror}") from None


def _grpc_ssl(args: argparse.Namespace) -> GrpcSsl | None:
    files = [
        args.ssl_grpc_root_certifications_file,
        args.ssl_grpc_private_key_file,
        args.ssl_grpc_certificate_chain_file,
    ]
    if not args.ssl_grpc_use_ssl:
        if any(files):
            # perf_analyzer ignores them as well; say so rather than send in clear.
            print(
                "warning: the --ssl-grpc-* files are ignored without "
                "--ssl-grpc-use-ssl",
                file=sys.stderr,
            )
        return None
    if args.protocol != "grpc":
        raise PerfError("--ssl-grpc-use-ssl needs -i grpc")
    if (args.ssl_grpc_private_key_file is None) != (
        args.ssl_grpc_certificate_chain_file is None
    ):
        raise PerfError(
            "--ssl-grpc-private-key-file and --ssl-grpc-certificate-chain-file "
            "go together (a client certificate needs its key)"
        )
    return GrpcSsl(
        root_certs=_read_pem(
            args.ssl_grpc_root_certifications_file,
            "--ssl-grpc-root-certifications-file",
        ),
        private_key=_read_pem(
            args.ssl_grpc_private_key_file, "--ssl-grpc-private-key-file"
        ),
        cert_chain=_read_pem(
            args.ssl_grpc_certificate_chain_file, "--ssl-grpc-certificate-chain-file"
        ),
    )


def _https(args: argparse.Namespace, out: Transport) -> None:
    """-u https://host:port over HTTP: TLS for the load and the control plane, with
    the --ssl-https-* settings (libcurl's meanings, as perf_analyzer's)."""
    files = {
        "--ssl-https-ca-certificates-file": args.ssl_https_ca_certificates_file,
        "--ssl-https-client-certificate-file": args.ssl_https_client_certificate_file,
        "--ssl-https-private-key-file": args.ssl_https_private_key_file,
    }
    url = args.url or ""
    if args.protocol != "http" or not url.startswith("https://"):
        if any(files.values()):
            print(
                "warning: the --ssl-https-* files are ignored without -i http and "
                "an https:// URL",
                file=sys.stderr,
            )
        return
    for flag, path in files.items():
        if path is not None and not Path(path).is_file():
            raise PerfError(f"cannot read {flag} {path}: no such file")
    if "DER" in (
        args.ssl_https_client_certificate_type,
        args.ssl_https_private_key_type,
    ):
        # The control plane (Python's ssl) loads PEM only.
        raise PerfError("DER client certificates and keys are not supported: use PEM")
    cert = args.ssl_https_client_certificate_file
    key = args.ssl_https_private_key_file
    if key is not None and cert is None:
        raise PerfError(
            "--ssl-https-private-key-file needs --ssl-https-client-certificate-file"
        )
    context = ssl.create_default_context(cafile=args.ssl_https_ca_certificates_file)
    if args.ssl_https_verify_peer == 0 or args.ssl_https_verify_host == 0:
        context.check_hostname = False
    if args.ssl_https_verify_peer == 0:
        context.verify_mode = ssl.CERT_NONE
    if cert is not None:
        try:
            context.load_cert_chain(cert, key)
        except (OSError, ssl.SSLError) as exc:
            raise PerfError(
                f"cannot load the client certificate {cert}: {exc}"
            ) from None
    out.connect["https"] = context
    out.target["https"] = {
        "verify_peer": args.ssl_https_verify_peer,
        "verify_host": args.ssl_https_verify_host,
        "ca_file": args.ssl_https_ca_certificates_file or "",
        "cert_file": cert or "",
        # A key may sit in the certificate's file, as Python's ssl allows.
        "key_file": key or cert or "",
    }
    # The load's Host header and the control plane take host:port.
    args.url = url.removeprefix("https://")


def transport_options(args: argparse.Namespace) -> Transport:
    """Checks the transport flags against each other and the protocol, reads the
    files they name, and returns what they add (PerfError on any problem)."""
    out = Transport()
    if args.request_parameters:
        # A name given twice: the last value wins, as in perf_analyzer.
        params = dict(parse_request_parameter(p) for p in args.request_parameters)
        out.target["parameters"] = list(params.items())
    if args.grpc_compression_algorithm != "none":
        if args.protocol != "grpc":
            raise PerfError("--grpc-compression-algorithm needs -i grpc")
        out.target["grpc_compression"] = args.grpc_compression_algorithm
    ssl = _grpc_ssl(args)
    if ssl is not None:
        out.connect["grpc_ssl"] = ssl
        out.target.update(
            grpc_use_ssl=True,
            grpc_root_certs=ssl.root_certs or b"",
            grpc_private_key=ssl.private_key or b"",
            grpc_cert_chain=ssl.cert_chain or b"",
        )
    _https(args, out)
    if args.request_intervals is not None:
        out.intervals_us = read_intervals(args.request_intervals)
        _as_request_rate_step(args, out.intervals_us)
    return out


def _as_request_rate_step(args: argparse.Namespace, intervals_us: list[int]) -> None:
    """The custom-interval load runs as one open-loop step, reported as
    perf_analyzer reports it: a request rate of the list's requests per second in
    whole requests (the load itself follows the intervals, not this rate). The step
    is set as a --request-rate-range of that one value, which is how the rest of
    tritonx-perf (async default, worker count, labels, CSV) already treats it."""
    for flag, given in (
        ("--concurrency-range", args.concurrency_range),
        ("--request-rate-range", args.request_rate_range),
        ("-t", getattr(args, "concurrent_requests", None) is not None),
        ("-c", getattr(args, "max_concurrency", None) is not None),
        ("-d", getattr(args, "dynamic_concurrency", False)),
        ("--binary-search", getattr(args, "binary_search", False)),
    ):
        if given:
            raise PerfError(f"cannot specify both --request-intervals and {flag}")
    total_ns = sum(intervals_us) * 1000
    rate = float(len(intervals_us) * 10**9 // total_ns)
    if rate == 0:
        # Under one request a second perf_analyzer reports 0; a step needs a rate.
        rate = len(intervals_us) * 1e9 / total_ns
    args.request_rate_range = repr(rate)
