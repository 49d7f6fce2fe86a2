"""Reading config.pbtxt (protobuf text format) and load-API JSON overrides."""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from google.protobuf import descriptor, json_format, text_format

from tritonx.config._pb import ModelConfig
from tritonx.errors import InternalError, InvalidArgumentError

log = logging.getLogger("tritonx.config")

# Set while a caller reads a config only to look ahead (e.g. which models of a poll
# round are ensembles): the load that follows reads it again and logs the failure,
# so that every failure is logged once per round, as Triton does.
_UNLOGGED: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "tritonx_config_parse_unlogged", default=False
)


@contextlib.contextmanager
def parse_errors_unlogged() -> Iterator[None]:
    """Parse errors inside the block raise as usual but are not logged."""
    token = _UNLOGGED.set(True)
    try:
        yield
    finally:
        _UNLOGGED.reset(token)


def parse_config_text(text: str, source: str) -> ModelConfig:
    """Parse protobuf text format into a ModelConfig.

    Like Triton, the error names only the file; the parser's own detail (line,
    column, unknown field) goes to the log the way libprotobuf prints it.
    """
    config = ModelConfig()
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as exc:
        if not _UNLOGGED.get():
            log.error("Error parsing text-format inference.ModelConfig: %s", exc)
        raise InvalidArgumentError(f"failed to read text proto from {source}") from exc
    return config


def read_config_file(path: Path) -> ModelConfig:
    """Read and parse one config file with Triton's error texts."""
    try:
        text = path.read_text()
    except FileNotFoundError as exc:
        raise InvalidArgumentError(
            f"failed to open text file for read {path}: No such file or directory"
        ) from exc
    except OSError as exc:
        raise InvalidArgumentError(
            f"failed to open text file for read {path}: {exc.strerror}"
        ) from exc
    except UnicodeDecodeError as exc:
        raise InvalidArgumentError(f"failed to read text proto from {path}") from exc
    return parse_config_text(text, str(path))


def read_text_file(path: Path) -> bytes:
    """A file a model's config names (labels, warmup data), read whole; one that
    cannot be opened fails with Triton's ReadTextFile text, an internal error."""
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InternalError(
            f"failed to open text file for read {path}: {exc.strerror or exc}"
        ) from None


def config_from_json(text: str) -> ModelConfig:
    """Parse the load API's JSON config (proto3 JSON, unknown fields rejected).

    Triton parses enums case-insensitively, so enum strings are upper-cased first.
    Messages follow the C++ JSON parser where we can tell the cause
    (``foo: Cannot find field.``); the repository adds "Invalid config override: ".
    """
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise InvalidArgumentError(str(exc)) from exc
    if not isinstance(doc, dict):
        raise InvalidArgumentError(": Root element must be a message.")
    _upper_enums(doc, ModelConfig.DESCRIPTOR)
    config = ModelConfig()
    try:
        json_format.ParseDict(doc, config, ignore_unknown_fields=False)
    except json_format.ParseError as exc:
        raise InvalidArgumentError(_cpp_style_json_error(str(exc))) from exc
    return config


_UNKNOWN_FIELD = re.compile(r'has no field named "([^"]+)"')


def _cpp_style_json_error(message: str) -> str:
    match = _UNKNOWN_FIELD.search(message)
    if match:
        return f"{match.group(1)}: Cannot find field."
    return message.split("\n", 1)[0]


def _upper_enums(doc: dict[str, Any], desc: descriptor.Descriptor) -> None:
    """Upper-case enum strings in place, recursing through sub-messages."""
    for key, value in doc.items():
        field = desc.fields_by_name.get(key) or _field_by_json_name(desc, key)
        if field is None:
            continue
        if field.type == descriptor.FieldDescriptor.TYPE_ENUM:
            if isinstance(value, str):
                doc[key] = value.upper()
            elif isinstance(value, list):
                doc[key] = [v.upper() if isinstance(v, str) else v for v in value]
        elif field.type == descriptor.FieldDescriptor.TYPE_MESSAGE:
            sub = field.message_type
            if sub.GetOptions().map_entry:
                value_field = sub.fields_by_name["value"]
                if value_field.type == descriptor.FieldDescriptor.TYPE_MESSAGE and (
                    isinstance(value, dict)
                ):
                    for item in value.values():
                        if isinstance(item, dict):
                            _upper_enums(item, value_field.message_type)
            elif isinstance(value, dict):
                _upper_enums(value, sub)
            elif isinstance(value, list):
                for item in value:
                    if isinstance(item, dict):
                        _upper_enums(item, sub)


def _field_by_json_name(
    desc: descriptor.Descriptor, key: str
) -> descriptor.FieldDescriptor | None:
    for field in desc.fields:
        if field.json_name == key:
            return field
    return None
