"""Model repository agents (config ``model_repository_agents``), in Triton's semantics.

Triton runs a model's agents while it reads the model from the repository (its
poll stage, ``InitializeModelInfo``), before any version is built: each agent in
config order gets the LOAD action on the model's location and may verify files or
replace the location that the next agent and the backend read. A LOAD failure is a
poll failure: the client is answered "failed to load '<model>', failed to poll from
model repository" and the agent's message goes to the log ("Poll failed for model
directory ..."). Later actions tell the agents how the load ended (LOAD_COMPLETE or
LOAD_FAIL) and when the model leaves (UNLOAD, then UNLOAD_COMPLETE); errors there
are only logged, as in Triton.

Triton finds agent ``<name>`` as ``<--repoagent-directory>/<name>/
libtritonrepoagent_<name>.so``. tritonx agents are Python objects found by name:
entry points of group ``tritonx.repoagents`` (third-party packages), then the
built-in table (``checksum``). A name neither knows fails the load with Triton's
"unable to find ..." message, which names the repoagent directory.
"""

from __future__ import annotations

import enum
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from tritonx import plugins
from tritonx.config import ModelConfig
from tritonx.errors import InvalidArgumentError, TritonXError, as_triton_error
from tritonx.repository.polling import PollFailure

log = logging.getLogger("tritonx.repository")

ENTRY_POINT_GROUP = "tritonx.repoagents"
# tritonserver's default --repoagent-directory.
DEFAULT_REPOAGENT_DIRECTORY = "/opt/tritonserver/repoagents"

BUILTIN_AGENTS: dict[str, str] = {
    "checksum": "tritonx.repository.checksum_agent:ChecksumAgent",
}


class AgentAction(enum.Enum):
    """Triton's TRITONREPOAGENT_ActionType values."""

    LOAD = "TRITONREPOAGENT_ACTION_LOAD"
    LOAD_COMPLETE = "TRITONREPOAGENT_ACTION_LOAD_COMPLETE"
    LOAD_FAIL = "TRITONREPOAGENT_ACTION_LOAD_FAIL"
    UNLOAD = "TRITONREPOAGENT_ACTION_UNLOAD"
    UNLOAD_COMPLETE = "TRITONREPOAGENT_ACTION_UNLOAD_COMPLETE"


@dataclass
class AgentModel:
    """What one agent sees of one model load (Triton's TRITONREPOAGENT_AgentModel).

    ``location``: the model directory as the previous agent left it (the
    repository's own directory for the first agent). ``config``: the model's config
    (normalized; agents must not change it). ``parameters``: the agent's
    ``parameters`` from the config, in config order. ``state``: free for the agent's
    own per-model bookkeeping (e.g. a temporary directory to remove on UNLOAD).
    """

    name: str
    location: Path
    config: ModelConfig
    parameters: list[tuple[str, str]]
    state: Any = None
    action: AgentAction | None = field(default=None, init=False)

    def set_location(self, location: Path) -> None:
        """Point the next agent and the backend at ``location`` (LOAD only)."""
        if self.action is not AgentAction.LOAD:
            current = self.action.value if self.action else "not set"
            raise InvalidArgumentError(
                "location can only be updated during TRITONREPOAGENT_ACTION_LOAD, "
                f"current action type is {current}"
            )
        self.location = Path(location)


class RepoAgent(Protocol):
    """A repository agent. One object serves every model that names it (Triton
    shares one agent library likewise), so it must be thread safe: loads of
    different models run in parallel on the manager's load threads.

    ``model_action`` blocks as long as it needs (file I/O is expected) and raises
    to fail the action; a ``TritonXError`` keeps its code, anything else becomes
    INTERNAL. Actions an agent does not care about return at once.
    """

    def model_action(self, model: AgentModel, action: AgentAction) -> None: ...


_lock = threading.Lock()
_agents: dict[str, RepoAgent] = {}


def available_agents() -> list[str]:
    """Names of every agent that can be resolved (entry points and built-ins)."""
    return plugins.available(ENTRY_POINT_GROUP, BUILTIN_AGENTS)


def _not_found(name: str, directory: str) -> TritonXError:
    libname = f"libtritonrepoagent_{name}.so"
    library = Path(directory) / name / libname
    if library.is_file():
        # Triton would load this library; tritonx has no TRITONREPOAGENT C API, so
        # say that rather than claim the agent is missing.
        return InvalidArgumentError(
            f"repo agent '{name}' at '{library}' is a Triton C API library, which "
            f"tritonx cannot load; install a tritonx agent (entry point group "
            f"'{ENTRY_POINT_GROUP}') of that name"
        )
    # Triton's wording (repo_agent.cc), naming the directory it searched.
    return InvalidArgumentError(
        f"unable to find '{libname}' for repo agent '{name}', searched: {directory}"
    )


def get_agent(name: str, directory: str = DEFAULT_REPOAGENT_DIRECTORY) -> RepoAgent:
    """The shared agent object for ``name``, created on first use; raises
    InvalidArgumentError (Triton's message) if no agent has that name."""
    with _lock:
        agent = _agents.get(name)
        if agent is not None:
            return agent
        target = plugins.find_target(name, ENTRY_POINT_GROUP, BUILTIN_AGENTS)
        if target is None:
            raise _not_found(name, directory)
        agent = plugins.load_target(target, "repo agent")()
        _agents[name] = agent
        return agent


def clear_cache() -> None:
    """Forget created agents (after installing a plugin at runtime, in tests)."""
    with _lock:
        _agents.clear()


class AgentChain:
    """The agents of one model load, after their LOAD succeeded (Triton's
    TritonRepoAgentModelList): ``location`` is where the backend reads the model.

    LOAD and UNLOAD go to the agents in config order, the other actions in reverse
    order, as in Triton. Thread safety: one chain is driven by one load at a time
    (the manager serializes loads and unloads of a model).
    """

    def __init__(self, model_name: str, location: Path) -> None:
        self.model_name = model_name
        self.location = location
        self._members: list[tuple[RepoAgent, AgentModel]] = []
        self._finished = False  # LOAD_COMPLETE / LOAD_FAIL sent
        self._unloaded = False

    def begin(self, agent: RepoAgent, model: AgentModel) -> None:
        """Add the next agent as it is given LOAD."""
        model.action = AgentAction.LOAD
        self._members.append((agent, model))

    def _send(self, action: AgentAction, reverse: bool) -> None:
        members = reversed(self._members) if reverse else iter(self._members)
        for agent, model in members:
            model.action = action
            try:
                agent.model_action(model, action)
            except Exception as exc:
                # Triton logs errors of the actions after LOAD and carries on.
                log.error(
                    "Agent model returns error on %s: %s",
                    action.value,
                    as_triton_error(exc).message,
                )

    def load_finished(self, ok: bool) -> None:
        """Tell the agents how the load ended (once; later calls do nothing)."""
        if not self._finished:
            self._finished = True
            self._send(AgentAction.LOAD_COMPLETE if ok else AgentAction.LOAD_FAIL, True)

    def unload(self) -> None:
        """The model the chain loaded has been unloaded (once)."""
        if self._finished and not self._unloaded:
            self._unloaded = True
            self._send(AgentAction.UNLOAD, False)
            self._send(AgentAction.UNLOAD_COMPLETE, True)


def configured_agents(config: ModelConfig) -> bool:
    """Whether the config names any agent (cheap; no thread needed if not)."""
    return bool(config.model_repository_agents.agents)


def run_load_agents(
    config: ModelConfig, model_dir: Path, directory: str
) -> AgentChain | None:
    """Give every agent of ``config`` the LOAD action, in order; None without agents.

    Raises PollFailure with the first agent's message (a name that resolves to no
    agent fails like a LOAD error); the agents that took LOAD get LOAD_FAIL first.
    An empty ``model_repository_agents { }`` means no agents (Triton 2.51 crashes
    on it). Blocks (agents read files): run it on a load thread.
    """
    if not configured_agents(config):
        return None
    chain = AgentChain(config.name, model_dir)
    try:
        for entry in config.model_repository_agents.agents:
            agent = get_agent(entry.name, directory)
            model = AgentModel(
                name=config.name,
                location=chain.location,
                config=config,
                parameters=list(entry.parameters.items()),
            )
            chain.begin(agent, model)
            agent.model_action(model, AgentAction.LOAD)
            chain.location = model.location
    except Exception as exc:
        chain.load_finished(False)
        raise PollFailure(config.name, as_triton_error(exc).message) from exc
    return chain


def adopt_agents(record: Any, chain: AgentChain | None) -> None:
    """After a load of ``record`` (a ModelRecord) succeeded: its new chain hears
    LOAD_COMPLETE, the chain of the load it replaced hears UNLOAD. With ``chain``
    None (an unload, or a reload whose config names no agents) only the latter.
    Blocks (agent code): run it on a load thread."""
    old, record.agents = record.agents, chain
    if chain is not None:
        chain.load_finished(True)
    if old is not None and old is not chain:
        old.unload()
