"""Fixtures for the gRPC frontend tests: one harness server per module and clients
of it (modules that need another server define their own ``server``)."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest
import tritonclient.grpc as grpcclient
from grpcutil import Harness
from tritonclient.grpc import service_pb2_grpc


@pytest.fixture(scope="module")
def server() -> Iterator[Harness]:
    harness = Harness()
    yield harness
    harness.close()


@pytest.fixture()
def client(server: Harness) -> Iterator[grpcclient.InferenceServerClient]:
    c = grpcclient.InferenceServerClient(server.url)
    yield c
    c.close()


@pytest.fixture()
def stub(server: Harness) -> Iterator[service_pb2_grpc.GRPCInferenceServiceStub]:
    channel = grpc.insecure_channel(
        server.url,
        options=[
            ("grpc.max_send_message_length", 2**31 - 1),
            ("grpc.max_receive_message_length", 2**31 - 1),
        ],
    )
    yield service_pb2_grpc.GRPCInferenceServiceStub(channel)
    channel.close()
