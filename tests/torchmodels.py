"""Tiny PyTorch models written by the pytorch backend tests (TorchScript and
torch.export), each in its own model directory with an optional config.pbtxt."""

from __future__ import annotations

import inspect
import textwrap
import warnings
from pathlib import Path
from typing import Any

import torch

Tensor = torch.Tensor


class AddSub(torch.nn.Module):
    def forward(self, a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
        return a + b, a - b


class ScaledDiff(torch.nn.Module):
    """Not symmetric in its arguments, so a wrong input mapping shows."""

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        return x * 2 - y


class DictInOut(torch.nn.Module):
    def forward(self, inputs: dict[str, Tensor]) -> dict[str, Tensor]:
        return {"sum": inputs["a"] + inputs["b"], "diff": inputs["a"] - inputs["b"]}


class Upper(torch.nn.Module):
    def forward(self, words: list[str]) -> list[str]:
        return [w.upper() for w in words]


class Mlp(torch.nn.Module):
    def __init__(self, width: int = 16, hidden: int = 32) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.l1 = torch.nn.Linear(width, hidden)
        self.l2 = torch.nn.Linear(hidden, width)

    def forward(self, x: Tensor) -> Tensor:
        return self.l2(torch.relu(self.l1(x)))


class ScaledShift(torch.nn.Module):
    """Keyword-only arguments: exported programs take them by name."""

    def forward(self, x: Tensor, *, scale: Tensor, shift: Tensor) -> Tensor:
        return x * scale + shift


class HalfAndCount(torch.nn.Module):
    """FP16 in, FP16 and INT64 out (exported, auto-completed)."""

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return x * 2, (x > 0).sum(dim=1)


class RaggedSum(torch.nn.Module):
    """Per-request sums of a ragged 1-D input, given where each request starts
    (BATCH_ACCUMULATED_ELEMENT_COUNT_WITH_ZERO)."""

    def forward(self, X: Tensor, OFFSETS: Tensor) -> Tensor:
        c = torch.cat([torch.zeros(1), torch.cumsum(X, 0)])
        o = OFFSETS.long()
        return (c[o[1:]] - c[o[:-1]]).unsqueeze(1)


def write_dir(repo: Path, name: str, config: str | None, filename: str) -> Path:
    version = repo / name / "1"
    version.mkdir(parents=True)
    if config is not None:
        (repo / name / "config.pbtxt").write_text(textwrap.dedent(config))
    return version / filename


def script(repo: Path, name: str, module: torch.nn.Module, config: str | None) -> None:
    with (
        warnings.catch_warnings()
    ):  # torch 2.13 deprecates TorchScript; Triton serves it
        warnings.simplefilter("ignore", DeprecationWarning)
        scripted = torch.jit.script(module)
    scripted.save(str(write_dir(repo, name, config, "model.pt")))


def export(
    repo: Path,
    name: str,
    module: torch.nn.Module,
    example: tuple[Any, ...],
    config: str | None,
    batch_dynamic: bool = True,
    kwargs: dict[str, Any] | None = None,
) -> None:
    dynamic: Any = None
    if batch_dynamic:
        batch = torch.export.Dim("batch", min=1, max=1024)
        dynamic = tuple({0: batch} for _ in example)
        if kwargs:
            names = list(inspect.signature(module.forward).parameters)
            dynamic = {name: {0: batch} for name in names}
    program = torch.export.export(
        module, example, kwargs=kwargs, dynamic_shapes=dynamic
    )
    torch.export.save(program, str(write_dir(repo, name, config, "model.pt2")))
