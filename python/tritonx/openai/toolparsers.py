"""Tool-call parsers (``--tool-call-parser``): the model's text as function calls.

Two formats, as Triton's frontend knows them:

- ``llama3``: one or more JSON objects ``{"name": ..., "arguments": {...}}``
  (``parameters`` is taken for ``arguments``), separated by ``;``, optionally
  after the ``<|python_tag|>`` token; call ids are ``cmpl-<uuid1>``. For the
  TensorRT-LLM request format, text from ``assistant\\n\\n`` on is dropped (such
  models may go on after the call).
- ``mistral``: ``[TOOL_CALLS]`` and a JSON array of such objects; call ids are
  nine letters and digits (Mistral's own limit).

A text that does not start with the format's marker (or ``{`` / ``[``) is an
answer, not a call; one that starts so but does not parse is an answer too.
Streams are parsed as they grow (``partial``): a call's name counts once it is
complete, its arguments as far as they are known (``partial_json_parser``).
"""

from __future__ import annotations

import json
import random
import re
import string
import uuid
from dataclasses import dataclass
from typing import Any

import partial_json_parser
from partial_json_parser.core.exceptions import MalformedJSON
from partial_json_parser.core.options import Allow

# Streamed text the parser looks at, at most (``--max-tool-call-parse-bytes``).
DEFAULT_MAX_TOOL_CALL_PARSE_BYTES = 128 * 1024

_NAMES_ONLY = Allow.ALL & ~Allow.STR  # a string counts once it is closed


@dataclass
class Call:
    """A function call: its name and its arguments as JSON text."""

    name: str
    arguments: str


@dataclass
class PartialCall:
    """A call as far as a stream has shown it: the name once complete, the
    arguments' JSON as parsed so far (None before any), whether it is whole."""

    name: str | None
    arguments: str | None
    complete: bool


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _call(obj: Any) -> Call:
    """A complete call object; ValueError when it is not one."""
    if not isinstance(obj, dict) or not isinstance(obj.get("name"), str):
        raise ValueError("not a function call")
    if "arguments" in obj:
        arguments = obj["arguments"]
    elif "parameters" in obj:
        arguments = obj["parameters"]
    else:
        raise ValueError("a function call without arguments")
    return Call(name=obj["name"], arguments=_dumps(arguments))


def _partial(obj: Any, names: Any, complete: bool) -> PartialCall:
    """A call from the same text parsed twice: with partial strings (for the
    arguments) and without (for a name that is complete)."""
    if not isinstance(obj, dict):
        return PartialCall(None, None, complete)
    name = names.get("name") if isinstance(names, dict) else None
    arguments = obj["arguments"] if "arguments" in obj else obj.get("parameters")
    return PartialCall(
        name if isinstance(name, str) else None,
        None if arguments is None else _dumps(arguments),
        complete,
    )


def _loads_partial(text: str) -> tuple[Any, Any] | None:
    """``text`` parsed as partial JSON, with and without partial strings."""
    try:
        return (
            partial_json_parser.loads(text, Allow.ALL),
            partial_json_parser.loads(text, _NAMES_ONLY),
        )
    except (MalformedJSON, json.JSONDecodeError, ValueError):
        return None


class ToolParser:
    """One model family's tool-call format."""

    name = ""
    marker = ""
    opener = ""

    def starts_call(self, text: str) -> bool | None:
        """Whether a model's answer is a tool call; None while ``text`` could
        still become the marker."""
        if text.startswith(self.marker) or text.startswith(self.opener):
            return True
        if self.marker.startswith(text):
            return None
        return False

    def parse(self, text: str, request_format: str) -> list[Call] | None:
        """The calls of a whole answer; None when it is not (only) calls."""
        raise NotImplementedError

    def partial(self, text: str) -> list[PartialCall]:
        """The calls of an answer that is still growing."""
        raise NotImplementedError

    def new_id(self) -> str:
        raise NotImplementedError


class Llama3Parser(ToolParser):
    name = "llama3"
    marker = "<|python_tag|>"
    opener = "{"

    @staticmethod
    def _skip(text: str, pos: int) -> int:
        while pos < len(text) and (text[pos].isspace() or text[pos] == ";"):
            pos += 1
        return pos

    def _body(self, text: str) -> str:
        return text[len(self.marker) :] if text.startswith(self.marker) else text

    def parse(self, text: str, request_format: str) -> list[Call] | None:
        if not self.starts_call(text):
            return None
        if request_format != "vllm":
            cut = text.find("assistant\n\n")
            if cut > 0:
                text = text[:cut]
        body = self._body(text)
        decoder = json.JSONDecoder()
        calls = []
        pos = self._skip(body, 0)
        try:
            while pos < len(body):
                obj, pos = decoder.raw_decode(body, pos)
                calls.append(_call(obj))
                pos = self._skip(body, pos)
        except ValueError:
            return None
        return calls or None

    def partial(self, text: str) -> list[PartialCall]:
        body = self._body(text)
        decoder = json.JSONDecoder()
        calls = []
        pos = self._skip(body, 0)
        while pos < len(body):
            try:
                obj, pos = decoder.raw_decode(body, pos)
            except ValueError:
                parsed = _loads_partial(body[pos:])
                if parsed is not None:
                    calls.append(_partial(parsed[0], parsed[1], False))
                break
            calls.append(_partial(obj, obj, True))
            pos = self._skip(body, pos)
        return calls

    def new_id(self) -> str:
        return f"cmpl-{uuid.uuid1()}"


_ALPHANUMERIC = string.ascii_letters + string.digits


class MistralParser(ToolParser):
    name = "mistral"
    marker = "[TOOL_CALLS]"
    opener = "["
    _array = re.compile(r"\[{.*}\]", re.DOTALL)

    def _body(self, text: str) -> str:
        return text.replace(self.marker, "").strip()

    def parse(self, text: str, request_format: str) -> list[Call] | None:
        if not self.starts_call(text):
            return None
        body = self._body(text)
        try:
            try:
                items = json.loads(body)
            except ValueError:
                # Text around the array: the first [{...}] in it.
                found = self._array.search(body)
                if found is None:
                    return None
                items = json.loads(found.group(0))
            if not isinstance(items, list):
                return None
            calls = [_call(item) for item in items]
        except ValueError:
            return None
        return calls or None

    def partial(self, text: str) -> list[PartialCall]:
        body = self._body(text)
        try:
            items = json.loads(body)
            whole = True
        except ValueError:
            whole = False
        if whole:
            parsed: tuple[Any, Any] | None = (items, items)
        else:
            parsed = _loads_partial(body)
        if parsed is None or not isinstance(parsed[0], list):
            return []
        values, names = parsed
        names = names if isinstance(names, list) else []
        calls = []
        for index, obj in enumerate(values):
            name_obj = names[index] if index < len(names) else None
            # An element is whole once another follows it (or the array closed).
            complete = whole or index < len(values) - 1
            calls.append(_partial(obj, name_obj, complete))
        return calls

    def new_id(self) -> str:
        return "".join(random.choices(_ALPHANUMERIC, k=9))


PARSERS: dict[str, type[ToolParser]] = {
    Llama3Parser.name: Llama3Parser,
    MistralParser.name: MistralParser,
}


def get_parser(name: str) -> ToolParser:
    """A parser by ``--tool-call-parser`` name; KeyError for an unknown one."""
    return PARSERS[name]()
