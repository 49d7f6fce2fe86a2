"""An example tritonx repository agent that moves the model (entry point "stage").

On LOAD it copies the model directory to a temporary one and turns the directory
named by its ``from`` parameter into version 1 there, then points the load at the
copy: the repository can hold a model whose version exists only once staged. Every
action it receives is appended to the file named by its ``log`` parameter, so tests
can see the order of actions; UNLOAD_COMPLETE and LOAD_FAIL remove the copy.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any


class StageAgent:
    def model_action(self, model: Any, action: Any) -> None:
        params = dict(model.parameters)
        with open(params["log"], "a") as log:
            log.write(f"{model.name} {action.name}\n")
        if action.name == "LOAD":
            staged = Path(tempfile.mkdtemp(prefix="tritonx-stage-")) / model.name
            shutil.copytree(model.location, staged)
            shutil.copytree(staged / params["from"], staged / "1")
            model.state = staged.parent
            model.set_location(staged)
        elif action.name in ("LOAD_FAIL", "UNLOAD_COMPLETE") and model.state:
            shutil.rmtree(model.state, ignore_errors=True)
