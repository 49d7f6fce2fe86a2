"""tests/openai: one tritonx-openai process per test module (see openaiutil)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from openaiutil import OpenAIServer, start_openai_server, stop_openai_server


@pytest.fixture(scope="module")
def openai_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpenAIServer]:
    server = start_openai_server(
        tmp_path_factory.mktemp("openai"), "--lora-separator=_lora_"
    )
    try:
        yield server
    finally:
        stop_openai_server(server)
