"""Custom batching strategy libraries (Triton's TRITONBACKEND_ModelBatch* API),
compiled by the test from C written against Triton's C API names: a volume strategy
that lets a batch take requests while their input bytes fit MAX_BATCH_VOLUME_BYTES,
found as batchstrategy.so in the model directory or named by
TRITON_BATCH_STRATEGY_PATH; and what refuses to load, compared with Triton 2.51 when
TRITONX_REFERENCE_CMD is set.

Kept different from Triton 2.51 (docs/backends.md, "Custom batching strategies"):
- Triton starts the strategy's batch state over each time its batcher walks the
  queue again while the batch waits for an instance, so requests that arrive one by
  one while the instance is busy all join one batch (six 16-byte requests under a
  40-byte volume ran as one batch of 6 there). tritonx asks the strategy about
  every request of a batch with one state per batch, so the volume holds.
- A library defining only some of the five functions: Triton's source refuses it
  with the message below; Triton 2.51 hung in the load (the load call never
  returned).
- A path outside the model's directory (absolute, or relative to the working
  directory): refused, as Triton's later releases do; 2.51 opened it.
"""

from __future__ import annotations

import concurrent.futures
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.http as httpclient
from grpcutil import wait_until
from serverutil import RunningServer, reference_command, run_either, run_server
from tritonclient.utils import InferenceServerException

COMPILER = shutil.which("cc") or shutil.which("gcc")
pytestmark = pytest.mark.skipif(COMPILER is None, reason="no C compiler")

# Declarations as Triton's headers have them (enums as int, the same ABI).
C_API = r"""
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct TRITONSERVER_Error TRITONSERVER_Error;
typedef struct TRITONSERVER_Message TRITONSERVER_Message;
typedef struct TRITONBACKEND_Model TRITONBACKEND_Model;
typedef struct TRITONBACKEND_Request TRITONBACKEND_Request;
typedef struct TRITONBACKEND_Input TRITONBACKEND_Input;
typedef struct TRITONBACKEND_Batcher TRITONBACKEND_Batcher;

TRITONSERVER_Error* TRITONSERVER_ErrorNew(int code, const char* msg);
TRITONSERVER_Error* TRITONBACKEND_ModelConfig(
    TRITONBACKEND_Model* model, uint32_t version, TRITONSERVER_Message** config);
TRITONSERVER_Error* TRITONSERVER_MessageSerializeToJson(
    TRITONSERVER_Message* message, const char** base, size_t* byte_size);
TRITONSERVER_Error* TRITONSERVER_MessageDelete(TRITONSERVER_Message* message);
TRITONSERVER_Error* TRITONBACKEND_RequestInputCount(
    TRITONBACKEND_Request* request, uint32_t* count);
TRITONSERVER_Error* TRITONBACKEND_RequestInputByIndex(
    TRITONBACKEND_Request* request, uint32_t index, TRITONBACKEND_Input** input);
TRITONSERVER_Error* TRITONBACKEND_ModelName(TRITONBACKEND_Model* model, const char** name);
TRITONSERVER_Error* TRITONBACKEND_ModelVersion(
    TRITONBACKEND_Model* model, uint64_t* version);
TRITONSERVER_Error* TRITONBACKEND_ApiVersion(uint32_t* major, uint32_t* minor);
TRITONSERVER_Error* TRITONSERVER_LogMessage(
    int level, const char* filename, const int line, const char* msg);
TRITONSERVER_Error* TRITONBACKEND_InputProperties(
    TRITONBACKEND_Input* input, const char** name, int* datatype,
    const int64_t** shape, uint32_t* dims_count, uint64_t* byte_size,
    uint32_t* buffer_count);
"""

INCLUDE_REQUEST = r"""
TRITONSERVER_Error* TRITONBACKEND_ModelBatchIncludeRequest(
    TRITONBACKEND_Request* request, void* userp, bool* should_include) {
  uint64_t* remaining = (uint64_t*)userp;
  uint64_t volume = 0;
  uint32_t count = 0;
  *should_include = false;
  TRITONSERVER_Error* err = TRITONBACKEND_RequestInputCount(request, &count);
  if (err) return err;
  for (uint32_t i = 0; i < count; ++i) {
    TRITONBACKEND_Input* input;
    uint64_t byte_size = 0;
    err = TRITONBACKEND_RequestInputByIndex(request, i, &input);
    if (err) return err;
    err = TRITONBACKEND_InputProperties(input, NULL, NULL, NULL, NULL, &byte_size, NULL);
    if (err) return err;
    volume += byte_size;
  }
  if (volume <= *remaining) {
    *should_include = true;
    *remaining -= volume;
  }
  return NULL;
}
"""

VOLUME_STRATEGY = (
    C_API
    + INCLUDE_REQUEST
    + r"""
TRITONSERVER_Error* TRITONBACKEND_ModelBatcherInitialize(
    TRITONBACKEND_Batcher** batcher, TRITONBACKEND_Model* model) {
  TRITONSERVER_Message* message;
  const char* json;
  size_t size;
  TRITONSERVER_Error* err = TRITONBACKEND_ModelConfig(model, 1, &message);
  if (err) return err;
  err = TRITONSERVER_MessageSerializeToJson(message, &json, &size);
  if (err) return err;
  char* text = strndup(json, size);
  TRITONSERVER_MessageDelete(message);
  const char* key = strstr(text, "\"MAX_BATCH_VOLUME_BYTES\"");
  const char* value = key ? strstr(key, "\"string_value\"") : NULL;
  if (value == NULL) {
    free(text);
    return TRITONSERVER_ErrorNew(2, "MAX_BATCH_VOLUME_BYTES is not in the config");
  }
  value = strchr(value + strlen("\"string_value\""), '"');
  uint64_t* limit = malloc(sizeof(uint64_t));
  *limit = strtoull(value + 1, NULL, 10);
  free(text);
  *batcher = (TRITONBACKEND_Batcher*)limit;
  const char* name;
  uint64_t version;
  uint32_t major, minor;
  char line[256];
  TRITONBACKEND_ModelName(model, &name);
  TRITONBACKEND_ModelVersion(model, &version);
  TRITONBACKEND_ApiVersion(&major, &minor);
  snprintf(line, sizeof(line), "volume strategy for %s version %llu, %llu bytes, "
           "API %u.%u", name, (unsigned long long)version,
           (unsigned long long)*limit, major, minor);
  TRITONSERVER_LogMessage(0, __FILE__, __LINE__, line);
  return NULL;
}

TRITONSERVER_Error* TRITONBACKEND_ModelBatcherFinalize(TRITONBACKEND_Batcher* batcher) {
  free(batcher);
  return NULL;
}

TRITONSERVER_Error* TRITONBACKEND_ModelBatchInitialize(
    const TRITONBACKEND_Batcher* batcher, void** userp) {
  uint64_t* remaining = malloc(sizeof(uint64_t));
  *remaining = *(const uint64_t*)batcher;
  *userp = remaining;
  return NULL;
}

TRITONSERVER_Error* TRITONBACKEND_ModelBatchFinalize(void* userp) {
  free(userp);
  return NULL;
}
"""
)

# Only one of the five functions: refused.
PARTIAL_STRATEGY = C_API + INCLUDE_REQUEST

# Each execution answers every request with how many requests it ran; a request
# whose input starts with -1 holds the instance (the file "holding" says so) until
# the file "open" exists.
COUNTING_MODEL = """
import pathlib
import time

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        self.open = pathlib.Path(args["model_repository"]) / "open"

    def execute(self, requests):
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()
            if x.flat[0] == -1:
                (self.open.parent / "holding").touch()
                deadline = time.monotonic() + 60
                while not self.open.exists() and time.monotonic() < deadline:
                    time.sleep(0.01)
        count = np.array([[len(requests)]], dtype=np.int32)
        return [
            pb_utils.InferenceResponse([pb_utils.Tensor("OUTPUT0", count)])
            for _ in requests
        ]
"""


def config(name: str, extra: str = "", scheduling: str = "dynamic_batching { }") -> str:
    return f"""
name: "{name}"
backend: "python"
max_batch_size: 8
input [ {{ name: "INPUT0", data_type: TYPE_FP32, dims: [ 4 ] }} ]
output [ {{ name: "OUTPUT0", data_type: TYPE_INT32, dims: [ 1 ] }} ]
instance_group [ {{ count: 1, kind: KIND_CPU }} ]
{scheduling}
{extra}
"""


def volume_parameter(limit: int) -> str:
    return (
        'parameters [ { key: "MAX_BATCH_VOLUME_BYTES" '
        f'value: {{ string_value: "{limit}" }} }} ]'
    )


def compile_library(source: str, target: Path) -> None:
    c_file = target.with_suffix(".c")
    c_file.write_text(source)
    assert COMPILER is not None
    subprocess.run(
        [COMPILER, "-shared", "-fPIC", "-O1", "-o", str(target), str(c_file)],
        check=True,
    )
    c_file.unlink()


def add_model(repo: Path, name: str, text: str) -> Path:
    model = repo / name
    (model / "1").mkdir(parents=True)
    (model / "config.pbtxt").write_text(text)
    (model / "1" / "model.py").write_text(COUNTING_MODEL)
    return model


def infer(url: str, model: str, first: float) -> Any:
    client = httpclient.InferenceServerClient(url, network_timeout=120)
    data = np.full((1, 4), first, dtype=np.float32)
    tensor = httpclient.InferInput("INPUT0", [1, 4], "FP32")
    tensor.set_data_from_numpy(data)
    try:
        return int(client.infer(model, [tensor]).as_numpy("OUTPUT0").flat[0])
    finally:
        client.close()


def batches_formed(server: RunningServer, model_dir: Path, model: str) -> list[int]:
    """Holds the instance with one request, queues six more of 16 input bytes each,
    then lets the instance go: what each of the six was batched with."""
    with concurrent.futures.ThreadPoolExecutor(7) as pool:
        held = pool.submit(infer, server.http_url, model, -1.0)
        wait_until((model_dir / "holding").exists, "the instance to be held")
        # Whether the held request counts as pending differs between servers.
        base = server.pending_requests(model)
        queued = []
        for count in range(1, 7):
            queued.append(pool.submit(infer, server.http_url, model, float(count)))
            wait_until(
                lambda n=count: server.pending_requests(model) == base + n,
                f"{count} queued",
            )
        (model_dir / "open").touch()
        assert held.result(timeout=120) == 1
        return [future.result(timeout=120) for future in queued]


@pytest.fixture(scope="module")
def libraries(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("strategies")
    built = {"volume": root / "volume.so", "partial": root / "partial.so"}
    compile_library(VOLUME_STRATEGY, built["volume"])
    compile_library(PARTIAL_STRATEGY, built["partial"])
    return built


def test_volume_strategy_bounds_each_batch(
    tmp_path: Path, libraries: dict[str, Path]
) -> None:
    repo = tmp_path / "repo"
    # In the model directory, found by name; 40 bytes: two 16-byte requests.
    found = add_model(repo, "found", config("found", volume_parameter(40)))
    shutil.copy(libraries["volume"], found / "batchstrategy.so")
    # Named by the parameter; 64 bytes: four requests.
    library = repo / "named" / "lib" / "v.so"
    named = add_model(
        repo,
        "named",
        config(
            "named",
            'parameters [ { key: "MAX_BATCH_VOLUME_BYTES" value: '
            '{ string_value: "64" } }, { key: "TRITON_BATCH_STRATEGY_PATH" '
            f'value: {{ string_value: "{library}" }} }} ]',
        ),
    )
    library.parent.mkdir()
    shutil.copy(libraries["volume"], library)
    # 8 bytes: no request fits, each runs alone (a batch is never empty).
    tiny = add_model(repo, "tiny", config("tiny", volume_parameter(8)))
    shutil.copy(libraries["volume"], tiny / "1" / "batchstrategy.so")
    plain = add_model(repo, "plain", config("plain"))
    with run_server(repo) as server:
        assert batches_formed(server, found, "found") == [2, 2, 2, 2, 2, 2]
        assert batches_formed(server, named, "named") == [4, 4, 4, 4, 2, 2]
        assert batches_formed(server, tiny, "tiny") == [1] * 6
        assert batches_formed(server, plain, "plain") == [6] * 6
        log = server.log_text()
    assert f"Loading custom batching strategy library {library} for model named" in log
    assert "volume strategy for named version 1, 64 bytes, API 1.19" in log


def load_error(server: RunningServer, model: str) -> str:
    client = httpclient.InferenceServerClient(server.http_url)
    try:
        client.load_model(model)
    except InferenceServerException as error:
        return str(error.message())
    finally:
        client.close()
    return "loaded"


MODELS = ("missing", "partial", "no_param", "sequence", "escapes")
# What Triton 2.51 answers as tritonx does (module doc for the others).
COMPARED = ("missing", "no_param", "sequence")


def test_unusable_strategies_fail_the_load(
    tmp_path: Path, libraries: dict[str, Path]
) -> None:
    outside = tmp_path / "outside.so"
    shutil.copy(libraries["volume"], outside)

    def scenario(kind: str, compared: tuple[str, ...] = MODELS) -> dict[str, Any]:
        repo = tmp_path / kind

        def named(path: Path | str) -> str:
            return (
                'parameters [ { key: "TRITON_BATCH_STRATEGY_PATH" '
                f'value: {{ string_value: "{path}" }} }} ]'
            )

        add_model(repo, "missing", config("missing", named(repo / "missing" / "x.so")))
        partial = add_model(repo, "partial", config("partial"))
        shutil.copy(libraries["partial"], partial / "1" / "batchstrategy.so")
        no_param = add_model(repo, "no_param", config("no_param"))
        shutil.copy(libraries["volume"], no_param / "batchstrategy.so")
        sequence = config(
            "sequence",
            named(repo / "sequence" / "batchstrategy.so"),
            scheduling="sequence_batching { }",
        )
        add_model(repo, "sequence", sequence)
        add_model(repo, "escapes", config("escapes", named(outside)))
        seen = {}
        with run_either(kind, repo, "--model-control-mode=explicit") as server:
            for model in compared:
                seen[model] = load_error(server, model).replace(str(repo), "<repo>")
        return seen

    seen = scenario("tritonx")
    assert seen["missing"] == (
        "load failed for model 'missing': version 1 is at UNAVAILABLE state: Not "
        "found: Batching library path not found: <repo>/missing/x.so;\n"
    )
    assert (
        "Invalid argument: <repo>/partial/1/batchstrategy.so does not define all "
        "required custom batching functions for model partial" in seen["partial"]
    )
    assert "Not found: MAX_BATCH_VOLUME_BYTES is not in the config" in seen["no_param"]
    assert (
        "Invalid argument: TRITON_BATCH_STRATEGY_PATH cannot be specified with "
        "sequence batcher, using default batching strategy" in seen["sequence"]
    )
    assert "Batching library path escapes model repository." in seen["escapes"]
    if reference_command() is not None:
        theirs = scenario("reference", compared=COMPARED)
        assert theirs == {model: seen[model] for model in COMPARED}
