"""tritonserver's flags of its cloud endpoints: SageMaker (``--allow-sagemaker``,
``--sagemaker-port``, ``--sagemaker-safe-port-range``, ``--sagemaker-thread-count``)
and Vertex AI (``--allow-vertex-ai``, ``--vertex-ai-port``,
``--vertex-ai-thread-count``, ``--vertex-ai-default-model``, with the defaults the
``AIP_*`` environment gives them), and its check that the enabled endpoints do not
collide (same address and port, or a port outside the SageMaker safe range), with
its wording. Split out of ``cli.py`` to keep it short."""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from tritonx.cli_values import UsageError, parse_bool, parse_int
from tritonx.frontends import vertex_ai
from tritonx.frontends.sagemaker import DEFAULT_PORT, SAGEMAKER_ADDRESS
from tritonx.repository.cloud import cloud_scheme


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
        help="Event threads of the native server of the SageMaker endpoint "
        "(default 8); the Python engine (--http-engine=python) has none.",
    )
    g = parser.add_argument_group("Vertex")
    g.add_argument(
        "--allow-vertex-ai",
        type=parse_bool,
        default=False,
        metavar="<boolean>",
        help="Serve Vertex AI's endpoint (AIP_HEALTH_ROUTE, AIP_PREDICT_ROUTE) on "
        "--vertex-ai-port, bound to 0.0.0.0 (default true if AIP_MODE=PREDICTION, "
        "false otherwise).",
    )
    g.add_argument(
        "--vertex-ai-port",
        type=parse_int,
        default=vertex_ai.DEFAULT_PORT,
        metavar="<integer>",
        help="Port of the Vertex AI endpoint (default AIP_HTTP_PORT if set, "
        f"{vertex_ai.DEFAULT_PORT} otherwise).",
    )
    g.add_argument(
        "--vertex-ai-thread-count",
        type=parse_int,
        default=8,
        metavar="<integer>",
        help="Event threads of the native server of the Vertex AI endpoint "
        "(default 8); the Python engine (--http-engine=python) has none.",
    )
    g.add_argument(
        "--vertex-ai-default-model",
        default="",
        metavar="<string>",
        help="The model of the predict route (default: the only model loaded).",
    )


def environment_defaults(env: Mapping[str, str]) -> dict[str, Any]:
    """Flag defaults from the Vertex AI environment, read before the flags as
    tritonserver does: AIP_MODE=PREDICTION turns Vertex AI on and HTTP and gRPC
    off; AIP_HTTP_PORT is the Vertex AI port (a value that is not an integer is
    an error, whatever the flags say)."""
    defaults: dict[str, Any] = {}
    if env.get(vertex_ai.MODE_ENV, "") == "PREDICTION":
        defaults.update(allow_vertex_ai=True, allow_http=False, allow_grpc=False)
    port = env.get(vertex_ai.PORT_ENV)
    if port is not None:
        try:
            defaults["vertex_ai_port"] = parse_int(port)
        except argparse.ArgumentTypeError as error:
            raise UsageError(str(error)) from None
    return defaults


def storage_repository(env: Mapping[str, str]) -> str | None:
    """The repository tritonserver takes from AIP_STORAGE_URI when no
    --model-repository is given: a local directory or a cloud location; another
    ``scheme://`` is refused (UsageError)."""
    uri = env.get(vertex_ai.STORAGE_URI_ENV, "")
    if not uri:
        return None
    if "://" in uri and cloud_scheme(uri) is None:
        raise UsageError(
            f"error: creating server: Unsupported - {vertex_ai.STORAGE_URI_ENV} "
            f"'{uri}' names storage tritonx cannot read (it reads local "
            "directories and s3://, gs:// and as:// locations)"
        )
    return uri


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
    if args.allow_vertex_ai:
        found.append(
            Endpoint("Vertex AI", vertex_ai.VERTEX_AI_ADDRESS, args.vertex_ai_port)
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
