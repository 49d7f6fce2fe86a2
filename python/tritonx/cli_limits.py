"""tritonserver's rate limiter, response cache, memory pool and host policy flags
(``--rate-limit``, ``--rate-limit-resource``, ``--cache-config``,
``--response-cache-byte-size``, ``--pinned-memory-pool-byte-size``,
``--cuda-memory-pool-byte-size``, ``--host-policy``): their value syntax and
Triton's error messages. Split out of ``cli.py`` to keep it short."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass

from tritonx import caches
from tritonx.caches import LOCAL_CACHE

RATE_LIMIT_MODES = ("off", "execution_count")
_RESOURCE_FORMAT = (
    "--rate-limit-resource option format is '<resource_name>:<count>:<device>' or "
    "'<resource_name>:<count>'. Got "
)
_UINT64 = 1 << 64
# The response cache flags are offered once the core has the cache.
CACHE_BUILT = True
# Where tritonserver looks for cache libraries; tritonx's caches are Python
# (tritonx.caches), the path only completes Triton's not-found message.
DEFAULT_CACHE_DIRECTORY = "/opt/tritonserver/caches"


class FlagError(Exception):
    """A command-line error: (flag, detail) for 'Bad option: "<flag>".' or a whole
    message when flag is empty."""

    def __init__(self, flag: str, detail: str) -> None:
        super().__init__(detail)
        self.flag = flag
        self.detail = detail


def _int(text: str, flag: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise FlagError(flag, f"Invalid option value. Got {text}") from None


def rate_limit_mode(text: str) -> str:
    """``--rate-limit``: off or execution_count, in any case."""
    lowered = text.lower()
    if lowered not in RATE_LIMIT_MODES:
        raise argparse.ArgumentTypeError("invalid argument for --rate-limit")
    return lowered


def parse_rate_limit_resources(values: Sequence[str]) -> list[tuple[str, int, int]]:
    """``<name>:<count>[:<device>]`` (repeatable) -> [(name, count, device)], device
    -1 for every device. As in tritonserver a count is a C int stored unsigned, so
    a negative one means "practically unlimited"."""
    flag = "--rate-limit-resource"
    result = []
    for value in values:
        parts = value.split(":")
        if len(parts) not in (2, 3):
            raise FlagError(flag, _RESOURCE_FORMAT + value)
        count = _int(parts[1], flag)
        device = _int(parts[2], flag) if len(parts) == 3 else -1
        result.append((parts[0], count % _UINT64, device))
    return result


@dataclass(frozen=True)
class CacheChoice:
    """The server's response cache from ``--cache-config``: ``local`` with its size,
    or another cache (tritonx.caches) with its settings as given."""

    name: str
    settings: dict[str, str]
    local_size: int = 0


def parse_cache_config(
    values: Sequence[str], byte_size: int | None
) -> CacheChoice | None:
    """``--cache-config <cache>,<setting>=<value>`` (repeatable) and the deprecated
    ``--response-cache-byte-size``: the cache, or None when none is configured.
    Settings of a cache other than ``local`` are checked when it starts."""
    flag = "--cache-config"
    if values and byte_size is not None:
        raise FlagError(
            "",
            "Error: Incompatible flags --response-cache-byte-size and --cache-config "
            "both provided. Please provide one or the other.",
        )
    settings: dict[str, dict[str, str]] = {}
    for value in values:
        name, comma, setting = value.partition(",")
        if not comma or not name:
            raise FlagError(
                flag,
                "No cache specified. --cache-config option format is "
                f"<cache name>,<setting>=<value>. Got {value}",
            )
        key, equals, val = setting.partition("=")
        if not equals or not key or not val:
            raise FlagError(
                flag,
                f"--cache-config option format is '<cache name>,<setting>=<value>'. "
                f"Got {value}",
            )
        settings.setdefault(name, {})[key] = val
    if byte_size is not None:
        settings = {LOCAL_CACHE: {"size": str(byte_size)}}
    return choose_cache(settings)


def choose_cache(settings: dict[str, dict[str, str]]) -> CacheChoice | None:
    """The cache of ``{cache name: {setting: value}}`` (None when empty), checked as
    tritonserver checks it when it creates the server (one cache; a known name;
    the local cache's size)."""
    if not settings:
        return None
    if len(settings) > 1:
        raise FlagError(
            "",
            "error: creating server: Invalid argument - found multiple cache "
            "configurations, but only a single cache is currently supported",
        )
    ((name, chosen),) = settings.items()
    if name != LOCAL_CACHE:
        known = caches.available()
        if name not in known:
            raise FlagError(
                "",
                "error: creating server: Invalid argument - unable to find "
                f"'libtritoncache_{name}.so' for cache. Searched: "
                f"{DEFAULT_CACHE_DIRECTORY} (tritonx caches: {', '.join(known)})",
            )
        return CacheChoice(name, chosen)
    size_text = chosen.get("size")
    if size_text is None:
        raise FlagError(
            "",
            "error: creating server: Invalid argument - Failed to initialize "
            "LocalCache: config didn't contain a valid 'size' field.",
        )
    try:
        size = int(size_text)
    except ValueError:
        size = -1
    if size <= 0:
        raise FlagError(
            "",
            "error: creating server: Internal - Failed to initialize LocalCache: "
            f"invalid size '{size_text}'",
        )
    return CacheChoice(LOCAL_CACHE, chosen, size)


def parse_cuda_pools(values: Sequence[str]) -> dict[int, int]:
    """``<GPU id>:<bytes>`` (repeatable; the last one for a GPU wins)."""
    flag = "--cuda-memory-pool-byte-size"
    pools: dict[int, int] = {}
    for value in values:
        parts = value.split(":")
        if len(parts) != 2:
            raise FlagError(
                flag,
                f"{flag} option format is '<GPU device ID>:<pool byte size>'. "
                f"Got {value}",
            )
        pools[_int(parts[0], flag)] = _int(parts[1], flag)
    return pools


def parse_host_policies(values: Sequence[str]) -> dict[str, dict[str, str]]:
    """``<policy>,<setting>=<value>`` (repeatable) -> {policy: {setting: value}},
    a later value for the same setting winning. As in tritonserver the name ends at
    the first ',' and the setting at the next '='; every flag's shape is checked
    before any setting name (its parser runs first), and what a value means is
    only read when an instance uses the policy (``tritonx.host_policy``)."""
    flag = "--host-policy"
    parsed: list[tuple[str, str, str]] = []
    for value in values:
        name, comma, rest = value.partition(",")
        setting, equals, setting_value = rest.partition("=")
        if not (comma and equals and name and setting and setting_value):
            raise FlagError(
                flag,
                f"{flag} option format is '<policy name>,<setting>=<value>'. "
                f"Got {value}",
            )
        parsed.append((name, setting, setting_value))
    policies: dict[str, dict[str, str]] = {}
    for name, setting, setting_value in parsed:
        if setting not in ("numa-node", "cpu-cores"):
            raise FlagError(
                "",
                "Failed to build Triton option:\nerror: setting host policy: "
                f"Unsupported - Unsupported host policy setting '{setting}' is "
                "specified, supported settings are 'numa-node', 'cpu-cores'",
            )
        policies.setdefault(name, {})[setting] = setting_value
    return policies


def add_flags(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("Rate limiter and response cache")
    g.add_argument(
        "--rate-limit",
        type=rate_limit_mode,
        default="off",
        metavar="<string>",
        help="'execution_count': an instance executes only when the resources of "
        "its rate_limiter config are free, instances taking turns by priority; "
        "'off' (default): instances execute as soon as they are free.",
    )
    g.add_argument(
        "--rate-limit-resource",
        action="append",
        default=[],
        metavar="<string>:<integer>:<integer>",
        help="<name>:<count>[:<device>]: copies of a rate limiter resource (per "
        "device, or on one device); default: the most any instance needs "
        "(repeatable).",
    )
    g.add_argument(
        "--pinned-memory-pool-byte-size",
        type=_int_arg,
        default=None,
        metavar="<integer>",
        help="Bytes of page-locked host memory kept for staging batches to and from "
        "GPUs (default 268435456; 0: pageable memory only).",
    )
    g.add_argument(
        "--cuda-memory-pool-byte-size",
        action="append",
        default=[],
        metavar="<integer>:<integer>",
        help="<GPU id>:<bytes> (repeatable): accepted as Triton's; device memory is "
        "allocated by each framework's own allocator in tritonx.",
    )
    g.add_argument(
        "--host-policy",
        action="append",
        default=[],
        metavar="<string>,<string>=<string>",
        help="<policy>,<setting>=<value> (repeatable): 'cpu-cores=<a>-<b>[,...]' "
        "pins the threads (and python stub processes) of the instances of that "
        "policy to those cores, 'numa-node=<n>' binds their memory to that NUMA "
        "node. An instance's policy is its instance group's host_policy, else "
        "'cpu' (KIND_CPU), 'gpu_<id>' (KIND_GPU) or 'model' (KIND_MODEL).",
    )
    if not CACHE_BUILT:
        return
    g.add_argument(
        "--cache-config",
        action="append",
        default=[],
        metavar="<string>,<string>=<string>",
        help="'local,size=<bytes>': a response cache of that size shared by the "
        "models whose config enables response_cache.",
    )
    g.add_argument(
        "--response-cache-byte-size",
        type=lambda text: _int_arg(text),
        default=None,
        metavar="<integer>",
        help="Deprecated: --cache-config=local,size=<bytes>.",
    )


def _int_arg(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"Invalid option value. Got {text}") from None
