"""Generated protobuf/grpc modules (built from protos/ at build time).

They live in a descriptor pool of their own so that tritonclient's copies of the same
`inference.*` messages can be imported in the same process.
"""

from __future__ import annotations

from google.protobuf import descriptor_pool

POOL = descriptor_pool.DescriptorPool()
