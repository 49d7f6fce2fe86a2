"""tritonserver's SageMaker flags (``--allow-sagemaker``, ``--sagemaker-port``,
``--sagemaker-safe-port-range``, ``--sagemaker-thread-count``) and its check that the
enabled endpoints do not collide (same address and port, or a port outside the
SageMaker safe range), with its wording. Split out of ``cli.py`` to keep it short."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import NamedTuple

from tritonx.cli_values import UsageError, parse_bool, parse_int
from tritonx.frontends.sagemaker import DEFAULT_PORT, SAGEMAKER_ADDRESS


class Endpoint(NamedTuple):
    """One enabled listener as tritonserver's collision check sees it."""

    name: str  # as tritonserver's messages name it: HTTP, GRPC, metrics, SageMaker
    address: str
    port: int
    # The range every other endpoint on this address must keep to (SageMaker only).
    allowed: tuple[int, int] | None = None


def parse_port_range(text: str) -> tuple[int, int]:
    """``<integer>-<integer>``, split at the first '-' as tritonserver does."""
    first, dash, second = text.partition("-")
    if not dash:
        raise argparse.ArgumentTypeError(
            "Cannot parse pair option due to incorrect number of inputs."
            "--<pair option> argument requires format <first>-<second>. "
            f"Found: {text}"
        )
    return parse_int(first), parse_int(second)


def add_flags(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("Sagemaker")
    g.add_argument(
        "--allow-sagemaker",
        type=parse_bool,
        default=False,
        metavar="<boolean>",
        help="Serve SageMaker's endpoint (/ping, /invocations, /models) on "
        "--sagemaker-port, bound to 0.0.0.0 (default false).",
    )
    g.add_argument(
        "--sagemaker-port",
        type=parse_int,
        default=DEFAULT_PORT,
        metavar="<integer>",
        help=f"Port of the SageMaker endpoint (default {DEFAULT_PORT}).",
    )
    g.add_argument(
        "--sagemaker-safe-port-range",
        type=parse_port_range,
        default=None,
        metavar="<integer>-<integer>",
        help="Ports the other endpoints on the SageMaker address must use.",
    )
    g.add_argument(
        "--sagemaker-thread-count",
        type=parse_int,
        default=8,
        metavar="<integer>",
        help="Accepted for compatibility: tritonx serves SageMaker requests on its "
        "event loop, without threads of its own.",
    )


def endpoints(args: argparse.Namespace) -> list[Endpoint]:
    """The enabled listeners, in tritonserver's order."""
    found = []
    if args.allow_http:
        found.append(Endpoint("HTTP", args.http_address, args.http_port))
    if args.allow_grpc:
        found.append(Endpoint("GRPC", args.grpc_address, args.grpc_port))
    if args.allow_metrics:
        address = args.metrics_address or args.http_address
        found.append(Endpoint("metrics", address, args.metrics_port))
    if args.allow_sagemaker:
        found.append(
            Endpoint(
                "SageMaker",
                SAGEMAKER_ADDRESS,
                args.sagemaker_port,
                args.sagemaker_safe_port_range,
            )
        )
    return found


def check_collisions(found: Sequence[Endpoint]) -> None:
    """tritonserver's start-up check, with its messages (UsageError). Endpoints on
    different address strings never collide; port 0 (tritonx: the system picks a
    free port) never equals another."""
    for i, current in enumerate(found):
        # An endpoint with a safe range is compared with every other one; the rest
        # only with those after them.
        others = found if current.allowed is not None else found[i + 1 :]
        for other in others:
            if other is current or other.address != current.address:
                continue
            if current.allowed is not None:
                low, high = current.allowed
                if not low <= other.port <= high:
                    raise UsageError(
                        f"The server cannot listen to {other.name} requests at port "
                        f"{other.port}, allowed port range is [{low}, {high}]"
                    )
            if current.port == other.port and current.port != 0:
                raise UsageError(
                    f"The server cannot listen to {current.name} requests and "
                    f"{other.name} requests at the same address and port "
                    f"{current.address}:{current.port}"
                )
