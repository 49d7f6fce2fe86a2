"""The models a measured model calls, reported beside it as perf_analyzer does:
an ensemble's steps (from its config) and a BLS model's ``--bls-composing-models``
("name[:version],name..."). Their server statistics are read with the measured
model's at every window edge (``WithComposing.statistics``), so the report gives
each one's requests, executions and time split over the same windows."""

from __future__ import annotations

from typing import Any

from tritonx.tools.perf.errors import PerfError
from tritonx.tools.perf.server_api import ServerApi, StatsSnapshot


def parse_bls_composing(text: str | None) -> list[tuple[str, str]]:
    if not text:
        return []
    models = []
    for item in "".join(text.split()).split(","):
        name, _, version = item.partition(":")
        if not name:
            raise PerfError(
                f"--bls-composing-models '{text}' must be name[:version],name..."
            )
        models.append((name, version))
    return models


def ensemble_steps(config: dict[str, Any]) -> list[tuple[str, str]]:
    """An ensemble's composing models, each once, in step order (version -1, the
    latest, as no version)."""
    if config.get("platform") != "ensemble":
        return []
    models: list[tuple[str, str]] = []
    for step in (config.get("ensemble_scheduling") or {}).get("step", []):
        version = str(step.get("model_version", -1))
        entry = (str(step.get("model_name", "")), "" if version == "-1" else version)
        if entry[0] and entry not in models:
            models.append(entry)
    return models


def composing_models(
    config: dict[str, Any], bls_flag: str | None
) -> list[tuple[str, str]]:
    """The ensemble's steps, then the --bls-composing-models not among them."""
    models = ensemble_steps(config)
    return models + [m for m in parse_bls_composing(bls_flag) if m not in models]


class WithComposing:
    """The server API with the composing models' counters added to the measured
    model's statistics. Used from the measuring thread only, like the API it wraps;
    it owns nothing (closing stays with the wrapped API's owner)."""

    def __init__(self, api: ServerApi, models: list[tuple[str, str]]) -> None:
        self._api = api
        self._models = models

    def __getattr__(self, name: str) -> Any:
        return getattr(self._api, name)

    def statistics(self, model: str, version: str) -> StatsSnapshot:
        snapshot = self._api.statistics(model, version)
        composing = {}
        for name, wanted in self._models:
            try:
                composing[name] = self._api.statistics(name, wanted)
            except PerfError as exc:
                raise PerfError(
                    f"failed to get the statistics of composing model '{name}': {exc}"
                ) from None
        snapshot.composing = composing
        return snapshot
