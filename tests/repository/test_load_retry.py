"""--model-load-retry-count: a model version whose load fails is built again, up to
that many more times, before the load fails; through the wire, against the real
Triton 2.51 on the same repository when TRITONX_REFERENCE_CMD is set.

The model's initialize fails until it has been called FAILURES + 1 times (a counter
file beside model.py), so a retry count of FAILURES or more loads it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from serverutil import load_over_http, reference_command, run_either
from testmodels import ADD_SUB, ADD_SUB_PY

FAILURES = 2
# add_sub, with an initialize that fails its first FAILURES calls.
FLAKY_PY = "import os\n" + ADD_SUB_PY.replace(
    "class TritonPythonModel:\n",
    f"""class TritonPythonModel:
    def initialize(self, args):
        counter = os.path.join(
            args["model_repository"], args["model_version"], "attempts"
        )
        attempts = int(open(counter).read()) + 1 if os.path.exists(counter) else 1
        with open(counter, "w") as f:
            f.write(str(attempts))
        if attempts <= {FAILURES}:
            raise RuntimeError(f"not yet: attempt {{attempts}}")

""",
)


def flaky_repository(root: Path) -> Path:
    (root / "add_sub" / "1").mkdir(parents=True)
    (root / "add_sub" / "config.pbtxt").write_text(ADD_SUB)
    (root / "add_sub" / "1" / "model.py").write_text(FLAKY_PY)
    return root


def observe(kind: str, root: Path, retries: int) -> dict[str, Any]:
    repo = flaky_repository(root / kind / str(retries))
    with run_either(
        kind,
        repo,
        "--model-control-mode=explicit",
        f"--model-load-retry-count={retries}",
    ) as server:
        status = load_over_http(server, "add_sub")
        second = load_over_http(server, "add_sub")  # a later load is tried afresh
    attempts = (repo / "add_sub" / "1" / "attempts").read_text()
    # Messages carry the model's path (each server has its own copy).
    status, second = (
        (code, text.replace(str(repo), "<repo>") if text else text)
        for code, text in (status, second)
    )
    return {"load": status, "later load": second, "attempts": attempts}


# One retry too few (the first load fails, the second succeeds on its third
# attempt) and just enough (the first load succeeds on its last attempt).
@pytest.mark.parametrize("retries", [FAILURES - 1, FAILURES])
def test_failed_loads_are_retried(tmp_path: Path, retries: int) -> None:
    seen = observe("tritonx", tmp_path, retries)
    if reference_command() is not None:
        reference = observe("reference", tmp_path, retries)
        # The message names the backend's error in each server's own words.
        assert {**seen, "load": seen["load"][0]} == {
            **reference,
            "load": reference["load"][0],
        }
    statuses, attempts = expected(retries)
    assert [seen["load"][0], seen["later load"][0]] == statuses
    assert seen["attempts"] == str(attempts)
    for status, key in zip(statuses, ("load", "later load"), strict=True):
        if status == 400:
            assert "not yet: attempt" in seen[key][1]


def expected(retries: int) -> tuple[list[int], int]:
    """The statuses of the two loads and the initialize calls made, when each
    load tries 1 + ``retries`` times and initialize fails FAILURES times."""
    attempts, statuses = 0, []
    for _ in range(2):
        status = 400
        for _ in range(retries + 1):
            attempts += 1
            if attempts > FAILURES:
                status = 200
                break
        statuses.append(status)
    return statuses, attempts
