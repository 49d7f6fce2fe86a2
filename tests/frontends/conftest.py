"""Fixtures for the gRPC frontend tests: one real ``tritonx`` server per module over
the repository of tests/grpcutil.py, and clients of it (modules that need another
server define their own ``server``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import tritonclient.grpc as grpcclient
from grpcutil import Held, server_args, write_repository
from serverutil import RunningServer, run_server
from tritonclient.grpc import service_pb2_grpc


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_repository(tmp_path_factory.mktemp("grpc_repo"))


@pytest.fixture(scope="module")
def server(repo: Path) -> Iterator[RunningServer]:
    with run_server(repo, *server_args(), "--allow-http=false") as running:
        yield running
        # A test that failed half way may have left a held request behind.
        Held(repo).release("all")


@pytest.fixture()
def held(repo: Path) -> Held:
    return Held(repo)


@pytest.fixture()
def client(server: RunningServer) -> Iterator[grpcclient.InferenceServerClient]:
    c = grpcclient.InferenceServerClient(server.grpc_url)
    yield c
    c.close()


@pytest.fixture()
def stub(server: RunningServer) -> Iterator[service_pb2_grpc.GRPCInferenceServiceStub]:
    channel = grpc.insecure_channel(
        server.grpc_url,
        options=[
            ("grpc.max_send_message_length", 2**31 - 1),
            ("grpc.max_receive_message_length", 2**31 - 1),
        ],
    )
    yield service_pb2_grpc.GRPCInferenceServiceStub(channel)
    channel.close()
