"""The manager's bookkeeping: options, loaded model versions and version states."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tritonx.config import ModelConfig
from tritonx.repository.repository import ModelId, OverrideDirectory

READY = "READY"
UNAVAILABLE = "UNAVAILABLE"
LOADING = "LOADING"
UNLOADING = "UNLOADING"
# Triton's reason for a version that was loaded and then unloaded; strict
# readiness does not count such versions as failures.
UNLOADED_REASON = "unloaded"


@dataclass
class ManagerOptions:
    repositories: list[Path | str]  # local directories, or cloud locations as given
    control_mode: str = "none"  # "none" | "explicit" | "poll"
    poll_secs: int = 15  # poll mode: seconds between repository polls (0: never)
    startup_models: list[str] = field(default_factory=list)
    strict_readiness: bool = True
    exit_on_error: bool = True
    auto_complete: bool = True
    config_name: str | None = None
    load_threads: int = 4
    # A model version that fails to load is built again up to this many times
    # before the load fails (Triton's --model-load-retry-count).
    load_retries: int = 0
    # backend name -> setting -> value; settings for all backends under "".
    backend_config: dict[str, dict[str, str]] = field(default_factory=dict)
    gpu_ids: list[int] = field(default_factory=list)
    # --model-namespacing: each repository is a namespace of its own.
    namespacing: bool = False
    # --repoagent-directory: named in the error for an agent tritonx does not have.
    repoagent_directory: str = "/opt/tritonserver/repoagents"
    # --host-policy: policy name -> setting -> value (tritonx.host_policy).
    host_policies: dict[str, dict[str, str]] = field(default_factory=dict)


@dataclass
class LoadedModel:
    """One loaded model version: what the frontends need to serve it."""

    name: str
    version: int
    config: ModelConfig  # as served: after the backend's auto-complete
    core: Any  # tritonx._native.Model
    backend_model: Any = None
    instances: list[Any] = field(default_factory=list)
    # The core StreamPools of the GPU instances (kept until the backend unloaded).
    streams: list[Any] = field(default_factory=list)
    # Per instance, parallel to ``instances``: where it runs (placement.Placement,
    # whose signature an instance update matches), its InstanceContext, and the
    # numbers of the core executors running it (none when passive).
    placements: list[Any] = field(default_factory=list)
    contexts: list[Any] = field(default_factory=list)
    executor_ids: list[list[int]] = field(default_factory=list)
    # The config as the repository gave it, before the backend completed it: what a
    # reload compares with (Triton compares the configs it reads); None: ``config``.
    read_config: ModelConfig | None = None
    # The number the core gives the next executor an instance update adds.
    next_executor: int = 0
    # Threads finalizing instances an update retired (instance_update.py): an
    # unload waits for them before the backend unloads the rest.
    retiring: list[Any] = field(default_factory=list)
    model_dir: Path | None = None
    load_seconds: float = 0.0
    state: str = READY
    reason: str = ""


@dataclass
class VersionSlot:
    """The state of one version of a model as index() reports it.

    ``loaded`` is the version being served (READY, or UNLOADING while it drains);
    a reload keeps serving it until the replacement is ready.
    """

    version: int
    state: str
    reason: str = ""
    loaded: LoadedModel | None = None


@dataclass
class ModelRecord:
    """A model the manager has tried to load (Triton's model lifecycle entry)."""

    name: str
    namespace: str = ""
    versions: dict[int, VersionSlot] = field(default_factory=dict)
    # With namespacing, whether a client's name resolves to this model (Triton's
    # global map): from its load until it is unloaded.
    resolvable: bool = True
    # Temporary directory of a load with files; removed when no longer served.
    override: OverrideDirectory | None = None
    # The repository agents of the load being served (agents.AgentChain): they
    # hear UNLOAD when it is replaced or unloaded.
    agents: Any = None
    # The model directory's timestamp (timestamps.Timestamp) taken by the load
    # being served; None while nothing is, or when it came from a load's files.
    stamp: dict[str, int] | None = None

    @property
    def id(self) -> ModelId:
        return ModelId(self.namespace, self.name)

    def ready_versions(self) -> list[int]:
        return sorted(v for v, s in list(self.versions.items()) if s.state == READY)
