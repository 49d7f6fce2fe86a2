"""The machinery of the config differential test (test_config_differential.py):
a repository holding every case's model, and what one server answers about each.

A case is a directory of a Python-backend model: its ``config.pbtxt`` (or none) and
files. Both servers run in EXPLICIT mode on the same repository; each case is
loaded on its own, observed, then unloaded, so that a server never holds more
than one case's stub processes.
"""

from __future__ import annotations

import http.client
import json
import re
import textwrap
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from serverutil import RunningServer

# A model that loads and answers nothing: config handling never runs execute.
MODEL_PY = """\
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        return [pb_utils.InferenceResponse([]) for _ in requests]
"""

# What every case's config gets unless it says otherwise (``{name}``: the case's).
BASE_IO = """
input [ { name: "INPUT0", data_type: TYPE_FP32, dims: [ 4 ] } ]
output [ { name: "OUTPUT0", data_type: TYPE_FP32, dims: [ 4 ] } ]
"""


@dataclass(frozen=True)
class Case:
    """One model of the repository.

    ``config``: the config.pbtxt text (dedented; ``{name}`` is replaced by the
    case's name), or None for no config file. ``files``: the files under the model
    directory (default: version 1's model.py)."""

    name: str
    config: str | None
    files: dict[str, str] = field(default_factory=lambda: {"1/model.py": MODEL_PY})

    def write(self, repo: Path) -> None:
        model_dir = repo / self.name
        model_dir.mkdir(parents=True)
        if self.config is not None:
            text = textwrap.dedent(self.config).replace("{name}", self.name)
            (model_dir / "config.pbtxt").write_text(text)
        for rel, content in self.files.items():
            path = model_dir / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content)


def write_repository(repo: Path, cases: list[Case]) -> None:
    names = [case.name for case in cases]
    assert len(names) == len(set(names)), "case names must be unique"
    for case in cases:
        case.write(repo)


def http_call(
    server: RunningServer, method: str, path: str, body: bytes = b""
) -> tuple[int, Any]:
    """One HTTP request to ``server``: the status and the JSON body (None if empty)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.ports["http"], timeout=120)
    try:
        conn.request(method, path, body, {"Content-Type": "application/json"})
        response = conn.getresponse()
        data = response.read()
        return response.status, json.loads(data) if data else None
    finally:
        conn.close()


# A frame of a Python traceback in a message ("  /path/file.py(12): function"),
# kept only when the file is in the repository: a server's own files (Triton's
# triton_python_backend_utils.py, tritonx's pb_utils) lie where it is installed.
_FOREIGN_FRAME = re.compile(r"^  (?!<repo>/)\S.*\(\d+\): \w+\n", re.M)


def _normalise(value: Any, repo: Path) -> Any:
    """The repository's absolute path as "<repo>" (the tmp path differs per run),
    and traceback frames outside it dropped (see _FOREIGN_FRAME)."""
    if isinstance(value, str):
        return _FOREIGN_FRAME.sub("", value.replace(str(repo), "<repo>"))
    if isinstance(value, dict):
        return {k: _normalise(v, repo) for k, v in value.items()}
    if isinstance(value, list):
        return [_normalise(v, repo) for v in value]
    return value


# States a version passes through; the index is read once none is left in one.
_MOVING = ("READY", "LOADING", "UNLOADING")


def _settled_index(server: RunningServer, name: str) -> list[dict[str, Any]]:
    """The index entries of ``name`` once no version of it is loading, ready or
    unloading: unload answers before the stubs are gone (the next case waits, so
    that one case's processes run at a time), and a failed load may leave other
    versions of the model still unloading."""
    deadline = time.monotonic() + 60
    while True:
        _, index = http_call(server, "POST", "/v2/repository/index")
        entries = [m for m in index or [] if m.get("name") == name]
        if time.monotonic() > deadline or all(
            m.get("state") not in _MOVING for m in entries
        ):
            return sorted(entries, key=lambda m: str(m.get("version")))
        time.sleep(0.05)


def observe(
    server: RunningServer,
    repo: Path,
    name: str,
    infer: Callable[[Any], Any] | None = None,
    load_body: bytes = b"",
) -> dict[str, Any]:
    """What ``server`` answers about case ``name``: the load's status and error
    (``load_body``: the load request's body, e.g. overrides); once loaded, the
    model's config and metadata (and, given ``infer``, the answer to the infer
    body it makes of the metadata); after a failed load, the repository index's
    entries for it."""
    base = f"/v2/repository/models/{name}"
    status, body = http_call(server, "POST", f"{base}/load", load_body)
    seen: dict[str, Any] = {"load": status}
    if status == 200:
        seen["config"] = http_call(server, "GET", f"/v2/models/{name}/config")
        seen["metadata"] = http_call(server, "GET", f"/v2/models/{name}")
        if infer is not None:
            request = json.dumps(infer(seen["metadata"][1])).encode()
            seen["infer"] = http_call(
                server, "POST", f"/v2/models/{name}/infer", request
            )
        http_call(server, "POST", f"{base}/unload")
        _settled_index(server, name)
    else:
        seen["error"] = (body or {}).get("error")
        seen["index"] = _settled_index(server, name)
    return _normalise(seen, repo)


def observe_both(
    ours: RunningServer, reference: RunningServer, repo: Path, name: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``observe`` on both servers at once (each load takes a stub's start-up)."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        mine = pool.submit(observe, ours, repo, name)
        theirs = pool.submit(observe, reference, repo, name)
        return mine.result(), theirs.result()
