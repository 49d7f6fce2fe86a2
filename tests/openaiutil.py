"""Helpers for tritonx-openai's end-to-end tests (tests/openai): a vLLM-like echo model (a
Python-based backend named "vllm"), a TensorRT-LLM-style one, a tokenizer with a
chat template made on the spot, and a real ``tritonx-openai`` process.

The vLLM-like model also answers embedding requests (``embed_llm``: a vector made
from the input's length). The echo models answer the prompt's words (whitespace-separated), at most
``max_tokens`` of them, one response per word when streaming; the prompt "PARAMS"
answers what the model received as JSON, "FAIL" answers an error, and a prompt that
starts with "SLOW" sends a word every 50 ms until cancelled (writing a file
``cancelled`` into the model's directory when it notices).

Tool calls: a prompt holding "LLAMA_CALL" / "MISTRAL_CALL" answers a call of
``get_current_weather`` in Llama 3's / Mistral's format ("LLAMA_TWO": two calls,
"BIG_CALL": a Mistral call with a 2000-character argument); a request with a
guided-decoding JSON schema (vLLM's ``structured_outputs``, TensorRT-LLM's
``guided_decoding_guide``) answers a JSON object of the schema's properties
(``example_of``). Such answers stream in pieces of 5 characters.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from serverutil import server_env, terminate

MODEL_CORE = r'''
import json
import os
import threading
import time

import numpy as np
import triton_python_backend_utils as pb_utils

FINAL = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL


def _get(request, name):
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    return None if tensor is None else tensor.as_numpy().reshape(-1)


WEATHER = {"city": "Dallas", "state": "TX", "unit": "fahrenheit"}


def example_of(schema):
    """A JSON object of the schema's properties: enum's first, else by type."""
    values = {"integer": 3, "number": 1.5, "boolean": True}
    answer = {}
    for key, prop in schema.get("properties", {}).items():
        answer[key] = prop["enum"][0] if "enum" in prop else values.get(prop.get("type"), "x-" + key)
    return answer


def tool_answer(prompt, seen):
    """The special answers (tool calls, guided JSON), or None."""
    guide = seen.get("guided_decoding_guide")
    structured = json.loads(seen.get("sampling_parameters", "{}")).get("structured_outputs")
    if structured:
        guide = json.loads(structured)["json"]
    if guide is not None:
        return json.dumps(example_of(json.loads(guide)))
    call = {"name": "get_current_weather", "arguments": WEATHER}
    if "LLAMA_TWO" in prompt:
        other = {"name": "get_n_day_weather_forecast", "parameters": dict(WEATHER, num_days=5)}
        return "<|python_tag|>" + json.dumps(call) + "; " + json.dumps(other)
    if "LLAMA_CALL" in prompt:
        return "<|python_tag|>" + json.dumps({"name": call["name"], "parameters": WEATHER})
    if "BIG_CALL" in prompt:
        call = {"name": "get_current_weather", "arguments": {"city": "A" * 2000}}
        return "[TOOL_CALLS]" + json.dumps([call])
    if "MISTRAL_CALL" in prompt:
        return "[TOOL_CALLS]" + json.dumps([call])
    return None


class EchoModel:
    def initialize(self, args):
        self.dir = args["model_repository"]
        self.threads = []

    def received(self, request):
        """Input name -> value (text as str, numbers and flags as Python's)."""
        seen = {}
        for name in INPUT_NAMES:
            values = _get(request, name)
            if values is None:
                continue
            items = [v.decode() if isinstance(v, bytes) else v.item() for v in values]
            seen[name] = items if len(items) > 1 or name == "stop_words" else items[0]
        return seen

    def execute(self, requests):
        for request in requests:
            thread = threading.Thread(target=self.answer, args=(request,))
            thread.start()
            self.threads.append(thread)
        return None

    def answer(self, request):
        sender = request.get_response_sender()
        seen = self.received(request)
        if "embedding_request" in seen:
            self.embed(sender, json.loads(seen["embedding_request"]), seen)
            return
        prompt = seen["text_input"]
        stream = bool(seen.get("stream", False))
        max_tokens = self.max_tokens(seen)
        words = prompt.split()[:max_tokens]
        if prompt == "PARAMS":
            words = [json.dumps(seen, sort_keys=True)]
        if not self.excludes_input(seen):
            words = [prompt] + words
        special = tool_answer(prompt, seen)
        pieces = None
        if special is not None:
            pieces = [special[i:i + 5] for i in range(0, len(special), 5)]
            words = pieces
        if prompt == "FAIL":
            sender.send(pb_utils.InferenceResponse(error=pb_utils.TritonError("the model failed")), flags=FINAL)
            return
        slow = prompt.startswith("SLOW")
        if slow:
            words = ["w%d" % i for i in range(400)]
        counts = seen.get("return_num_input_tokens") and seen.get("return_num_output_tokens")
        prompt_tokens = len(prompt.split())
        if not stream:
            text = "".join(pieces) if pieces else " ".join(words)
            logprobs = words if seen.get("return_logprobs") else None
            sender.send(self.response(text, counts, prompt_tokens, len(words), logprobs), flags=FINAL)
            return
        for index, word in enumerate(words):
            if sender.is_cancelled():
                open(os.path.join(self.dir, "cancelled"), "w").close()
                sender.send(flags=FINAL)
                return
            if slow:
                time.sleep(0.05)
            text = word if index == 0 or pieces else " " + word
            logprobs = [word] if seen.get("return_logprobs") else None
            sender.send(self.response(text, counts, prompt_tokens, 1, logprobs))
        sender.send(flags=FINAL)

    def embed(self, sender, body, seen):
        """A vector from the input: its length, then 0.5, -1.0, 2.0, ... cut or
        padded to the dimensions asked for (default 4)."""
        given = body["input"]
        dims = body["pooling_params"].get("dimensions", [4])[0]
        vector = [float(len(given))] + [0.5, -1.0, 2.0] * dims
        counts = seen.get("return_num_input_tokens") and seen.get("return_num_output_tokens")
        tokens = len(given.split()) if isinstance(given, str) else len(given)
        text = json.dumps(vector[:dims])
        sender.send(self.response(text, counts, tokens, 0), flags=FINAL)

    def response(self, text, counts, prompt_tokens, output_tokens, logprobs=None):
        outputs = [pb_utils.Tensor("text_output", np.array([text.encode()], dtype=np.object_))]
        if logprobs is not None:
            # vLLM's shape: per token, candidates by id with logprob, rank and text;
            # the chosen token is rank 1.
            entries = [
                {"7": {"logprob": -2.0, "rank": 2, "decoded_token": "alt"},
                 "3": {"logprob": -0.25, "rank": 1, "decoded_token": word}}
                for word in logprobs
            ]
            outputs.append(pb_utils.Tensor("logprobs", np.array([json.dumps(entries).encode()], dtype=np.object_)))
        if counts:
            outputs.append(pb_utils.Tensor("num_input_tokens", np.array([prompt_tokens], dtype=np.uint32)))
            outputs.append(pb_utils.Tensor("num_output_tokens", np.array([output_tokens], dtype=np.uint32)))
        return pb_utils.InferenceResponse(outputs)

    def finalize(self):
        for thread in self.threads:
            thread.join(timeout=30)
'''

VLLM_MODEL = (
    MODEL_CORE
    + r"""
INPUT_NAMES = ["text_input", "stream", "sampling_parameters", "exclude_input_in_output",
               "return_logprobs", "return_num_input_tokens", "return_num_output_tokens",
               "embedding_request"]


class TritonPythonModel(EchoModel):
    def max_tokens(self, seen):
        return json.loads(seen.get("sampling_parameters", "{}")).get("max_tokens", 16)

    def excludes_input(self, seen):
        return bool(seen.get("exclude_input_in_output", True))
"""
)

TRTLLM_MODEL = (
    MODEL_CORE
    + r"""
INPUT_NAMES = ["text_input", "stream", "max_tokens", "temperature", "top_p",
               "frequency_penalty", "presence_penalty", "seed", "stop_words",
               "exclude_input_in_output", "return_num_input_tokens",
               "return_num_output_tokens", "lora_task_id", "lora_weights",
               "lora_config", "guided_decoding_guide_type", "guided_decoding_guide"]


class TritonPythonModel(EchoModel):
    def max_tokens(self, seen):
        return int(seen["max_tokens"])

    def excludes_input(self, seen):
        return bool(seen.get("exclude_input_in_output", True))
"""
)


def _io(name: str, data_type: str, dims: str, optional: bool = False) -> str:
    extra = " optional: true" if optional else ""
    return f'{{ name: "{name}" data_type: {data_type} dims: [ {dims} ]{extra} }}'


VLLM_CONFIG = f"""
backend: "vllm"
max_batch_size: 0
model_transaction_policy {{ decoupled: true }}
input [
  {_io("text_input", "TYPE_STRING", "1")},
  {_io("stream", "TYPE_BOOL", "1", True)},
  {_io("sampling_parameters", "TYPE_STRING", "1", True)},
  {_io("exclude_input_in_output", "TYPE_BOOL", "1", True)},
  {_io("return_logprobs", "TYPE_BOOL", "1", True)},
  {_io("return_num_input_tokens", "TYPE_BOOL", "1", True)},
  {_io("return_num_output_tokens", "TYPE_BOOL", "1", True)}
]
output [
  {_io("text_output", "TYPE_STRING", "-1")},
  {_io("num_input_tokens", "TYPE_UINT32", "1")},
  {_io("num_output_tokens", "TYPE_UINT32", "1")},
  {_io("logprobs", "TYPE_STRING", "-1")}
]
"""

EMBED_CONFIG = f"""
backend: "vllm"
max_batch_size: 0
model_transaction_policy {{ decoupled: true }}
input [
  {_io("embedding_request", "TYPE_STRING", "1")},
  {_io("return_num_input_tokens", "TYPE_BOOL", "1", True)},
  {_io("return_num_output_tokens", "TYPE_BOOL", "1", True)}
]
output [
  {_io("text_output", "TYPE_STRING", "-1")},
  {_io("num_input_tokens", "TYPE_UINT32", "1")},
  {_io("num_output_tokens", "TYPE_UINT32", "1")}
]
"""

TRTLLM_CONFIG = f"""
backend: "python"
max_batch_size: 0
model_transaction_policy {{ decoupled: true }}
input [
  {_io("text_input", "TYPE_STRING", "1, 1")},
  {_io("stream", "TYPE_BOOL", "1, 1", True)},
  {_io("max_tokens", "TYPE_INT32", "1, 1")},
  {_io("temperature", "TYPE_FP32", "1, 1", True)},
  {_io("top_p", "TYPE_FP32", "1, 1", True)},
  {_io("frequency_penalty", "TYPE_FP32", "1, 1", True)},
  {_io("presence_penalty", "TYPE_FP32", "1, 1", True)},
  {_io("seed", "TYPE_UINT64", "1, 1", True)},
  {_io("stop_words", "TYPE_STRING", "1, -1", True)},
  {_io("exclude_input_in_output", "TYPE_BOOL", "1, 1", True)},
  {_io("lora_task_id", "TYPE_UINT64", "1, 1", True)},
  {_io("lora_weights", "TYPE_FP32", "-1, -1", True)},
  {_io("lora_config", "TYPE_INT32", "-1, -1", True)},
  {_io("guided_decoding_guide_type", "TYPE_STRING", "1, 1", True)},
  {_io("guided_decoding_guide", "TYPE_STRING", "1, 1", True)}
]
output [ {_io("text_output", "TYPE_STRING", "-1")} ]
"""

# A chat template that marks each role, and refuses a conversation that opens
# with a tool message (as real templates refuse bad role orders). Tools are
# listed by name first; an assistant's tool calls render as "call NAME ARGS" and
# a tool message as "id TOOL_CALL_ID CONTENT".
CHAT_TEMPLATE = (
    "{% if messages[0]['role'] == 'tool' %}"
    "{{ raise_exception('a conversation cannot start with a tool message') }}"
    "{% endif %}"
    "{% if tools %}<|tools|> "
    "{% for t in tools %}{{ t['function']['name'] }} {% endfor %}{% endif %}"
    "{% for m in messages %}<|{{ m['role'] }}|> "
    "{% if m['tool_call_id'] %}id {{ m['tool_call_id'] }} {% endif %}"
    "{% if m['content'] is not none %}{{ m['content'] }} {% endif %}"
    "{% for c in m['tool_calls'] or [] %}"
    "call {{ c['function']['name'] }} {{ c['function']['arguments'] | tojson }} "
    "{% endfor %}{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def make_tokenizer(directory: Path) -> Path:
    """A word-level tokenizer saved as transformers loads it offline."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    directory.mkdir(parents=True)
    vocab = {"[UNK]": 0, "<s>": 1, "</s>": 2, "hello": 3, "world": 4}
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.save(str(directory / "tokenizer.json"))
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "unk_token": "[UNK]",
        "bos_token": "<s>",
        "eos_token": "</s>",
        "chat_template": CHAT_TEMPLATE,
    }
    (directory / "tokenizer_config.json").write_text(json.dumps(config))
    return directory


def make_repository(root: Path) -> tuple[Path, Path]:
    """(model repository, backend directory)."""
    backends = root / "backends"
    (backends / "vllm").mkdir(parents=True)  # makes root too
    (backends / "vllm" / "model.py").write_text(VLLM_MODEL)
    repo = root / "repo"
    (repo / "echo_llm" / "1").mkdir(parents=True)
    (repo / "echo_llm" / "config.pbtxt").write_text(VLLM_CONFIG)
    (repo / "embed_llm" / "1").mkdir(parents=True)
    (repo / "embed_llm" / "config.pbtxt").write_text(EMBED_CONFIG)
    (repo / "trt_llm" / "1").mkdir(parents=True)
    (repo / "trt_llm" / "config.pbtxt").write_text(TRTLLM_CONFIG)
    (repo / "trt_llm" / "1" / "model.py").write_text(TRTLLM_MODEL)
    # LoRA adapters (served with --lora-separator): vLLM lists names once enabled
    # in model.json; TensorRT-LLM's point at directories of weights and config.
    (repo / "echo_llm" / "1" / "model.json").write_text('{"enable_lora": "true"}')
    loras = {"doc": "unused", "sql": "unused"}
    (repo / "echo_llm" / "1" / "multi_lora.json").write_text(json.dumps(loras))
    adapter = repo / "trt_llm" / "loras" / "fr"
    adapter.mkdir(parents=True)
    np.save(adapter / "model.lora_weights.npy", np.array([[0.5, 1.5, 2.5]], np.float32))
    np.save(adapter / "model.lora_config.npy", np.array([[1, 2, 3]], np.int32))
    listing = {"fr": "trt_llm/loras/fr"}
    (repo / "trt_llm" / "1" / "multi_lora.json").write_text(json.dumps(listing))
    return repo, backends


_PORTS = {
    "openai": re.compile(r"Started OpenAI frontend at [^\s]+:(\d+)"),
    "http": re.compile(r"Started HTTPService at [^:]+:(\d+)"),
    "grpc": re.compile(r"Started GRPCInferenceService at [^:]+:(\d+)"),
}


@dataclass
class OpenAIServer:
    process: subprocess.Popen[str]
    repo: Path
    ports: dict[str, int] = field(default_factory=dict)
    log: list[str] = field(default_factory=list)
    pump: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['openai']}"

    def log_text(self) -> str:
        return "".join(self.log)


def _pump(server: OpenAIServer) -> None:
    assert server.process.stdout is not None
    for line in server.process.stdout:
        server.log.append(line)


def openai_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "tritonx.openai", *args]


def start_openai_server(
    root: Path, *extra: str, tokenizer: bool = True
) -> OpenAIServer:
    """A tritonx-openai process (with the KServe frontends) on the echo models;
    returns once every port is bound (RuntimeError if it exits first)."""
    repo, backends = make_repository(root)
    flags = [f"--tokenizer={make_tokenizer(root / 'tokenizer')}"] if tokenizer else []
    command = openai_command(
        f"--model-repository={repo}",
        f"--backend-directory={backends}",
        *flags,
        "--host=127.0.0.1",
        "--openai-port=0",
        "--enable-kserve-frontends",
        "--kserve-http-port=0",
        "--kserve-grpc-port=0",
        "--uvicorn-log-level=warning",
        *extra,
    )
    env = server_env({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )
    server = OpenAIServer(process, repo)
    server.pump = threading.Thread(target=_pump, args=(server,), daemon=True)
    server.pump.start()
    try:
        deadline = time.monotonic() + 90
        while not _PORTS.keys() <= server.ports.keys():
            text = server.log_text()
            for name, pattern in _PORTS.items():
                match = pattern.search(text)
                if match:
                    server.ports[name] = int(match.group(1))
            if process.poll() is not None:
                raise RuntimeError(f"tritonx-openai exited:\n{text}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"tritonx-openai did not start:\n{text}")
            time.sleep(0.05)
    except BaseException:
        stop_openai_server(server)
        raise
    return server


def stop_openai_server(server: OpenAIServer) -> int:
    """SIGTERM, wait (kill after 30 s); returns the exit code."""
    code = terminate(server.process)
    if server.pump is not None:
        server.pump.join(timeout=5)
    return code
