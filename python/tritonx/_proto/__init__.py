"""Generated protobuf/grpc modules (built from protos/ at build time)."""
