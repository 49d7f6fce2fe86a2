"""GPU tests: every test here is marked ``gpu`` and skips cleanly (with the reason)
where the core or torch sees no usable CUDA device; scripts/gpu-check.sh runs them
on a GPU machine. Servers run over HTTP (and gRPC where the core has it)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tritonx import _native


def _why_not() -> str | None:
    if not _native.CUDA_BUILT:
        return "tritonx core built without CUDA"
    if not _native.probe_cuda():
        return "the tritonx core sees no usable CUDA device"
    try:
        import torch
    except ImportError:
        return "torch is not installed"
    if not torch.cuda.is_available():
        return "torch has no usable CUDA device"
    return None


SKIP_REASON = _why_not()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.gpu)
            if SKIP_REASON is not None:
                item.add_marker(pytest.mark.skip(reason=SKIP_REASON))


def server_flags() -> list[str]:
    """gRPC too where the core was built with it (the GPU machine has no grpc++)."""
    return [] if _native.GRPC_BUILT else ["--allow-grpc=false"]


@pytest.fixture
def serve() -> Callable[..., Iterator[object]]:
    from serverutil import run_server

    @contextmanager
    def start(repo: Path, *args: str) -> Iterator[object]:
        with run_server(repo, *server_flags(), *args, timeout=180.0) as server:
            yield server

    return start
