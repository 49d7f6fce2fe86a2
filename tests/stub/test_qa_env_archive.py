"""Packed environments that try to write outside their unpack directory, after
the path-traversal ("zip slip") cases of Triton's L0_backend_python/env QA: an
EXECUTION_ENV_PATH archive with a '../..' member or an absolute member must not
write where the member points.

tritonx only: the QA's check is newer than Triton 2.51, and running 2.51 on such
an archive could write outside the test's directories. Where the rules differ:
later Tritons refuse both archives; tritonx refuses the '..' one (the model does
not load, the log says why) and unpacks an absolute member inside the unpack
directory (tarfile's "tar" filter strips the leading '/'), which is as safe."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest
import tritonclient.http as httpclient
from serverutil import run_server
from testmodels import ECHO_MODEL, write_model
from tritonclient.utils import InferenceServerException

CONFIG = """
name: "{name}"
backend: "python"
input [ {{ name: "INPUT0", data_type: TYPE_FP32, dims: [ 1 ] }} ]
output [ {{ name: "OUTPUT0", data_type: TYPE_FP32, dims: [ 1 ] }} ]
parameters {{
  key: "EXECUTION_ENV_PATH"
  value: {{ string_value: "$$TRITON_MODEL_DIRECTORY/malicious_env.tar.gz" }}
}}
"""


def _archive(path: Path, member: str) -> None:
    with tarfile.open(path, "w:gz") as archive:
        for name, body in ((member, b"traversal\n"), ("bin/activate", b"#!/bin/sh\n")):
            info = tarfile.TarInfo(name)
            info.size = len(body)
            archive.addfile(info, io.BytesIO(body))


@pytest.mark.parametrize("mode", ["relative", "absolute"])
def test_an_archive_cannot_write_outside_its_directory(
    tmp_path: Path, mode: str
) -> None:
    repo = tmp_path / "repo"
    name = f"zipslip_{mode}"
    write_model(repo, name, CONFIG.format(name=name), ECHO_MODEL)
    # Where a vulnerable unpacking would write: beside the repository.
    marker = tmp_path / f"marker_{mode}"
    member = f"../../../{marker.name}" if mode == "relative" else str(marker)
    _archive(repo / name / "malicious_env.tar.gz", member)
    with run_server(repo, "--model-control-mode=explicit") as server:
        client = httpclient.InferenceServerClient(server.http_url)
        with pytest.raises(InferenceServerException) as error:
            client.load_model(name)
        ready = client.is_model_ready(name)
        client.close()
    assert not marker.exists()
    assert not ready
    unpacked = repo / name / "malicious_env.unpacked"
    if mode == "relative":
        assert "which is outside the destination" in error.value.message()
        assert not (unpacked / "bin" / "activate").exists()
    else:
        # stripped of its '/', the member lands inside the unpack directory; the
        # load fails for want of an interpreter in the archive
        assert (unpacked / str(marker).lstrip("/")).is_file()
        assert "no Python interpreter in" in error.value.message()
