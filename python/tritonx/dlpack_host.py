"""Host bytes for any DLPack tensor a backend returns as an output.

The core keeps output bytes in host memory (the clients read them from there), so
a GPU tensor (torch, CuPy, JAX, ...) is copied device->host here, once, through its
producer's own API so that the copy is ordered after the kernels that wrote it on
the producer's stream; host DLPack tensors are wrapped without a copy. Called by
the core (``TensorFromPy``) for outputs that are not numpy arrays, and by
``pb_utils.Tensor`` for tensors made with ``from_dlpack``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

KDL_CPU = 1
KDL_CUDA_HOST = 3  # pinned host memory: readable from the CPU


def _bf16(dtype: Any) -> bool:
    return "bfloat16" in str(dtype)


def to_host(value: Any) -> tuple[str, np.ndarray]:
    """(datatype override or "", host array) for a DLPack producer."""
    device = tuple(value.__dlpack_device__())
    module = type(value).__module__.split(".", 1)[0]
    if module == "torch":
        tensor = value.detach()
        if tensor.device.type != "cpu":
            tensor = tensor.cpu()  # waits for the tensor's stream
        if _bf16(tensor.dtype):
            import torch

            return "BF16", tensor.contiguous().view(torch.int16).numpy().view(np.uint16)
        return "", tensor.numpy()
    if device[0] in (KDL_CPU, KDL_CUDA_HOST):
        if _bf16(getattr(value, "dtype", "")):
            raise TypeError("bfloat16 DLPack outputs need a torch tensor")
        return "", np.from_dlpack(value)
    if hasattr(value, "get") and module == "cupy":
        return "", np.asarray(value.get())
    if module in ("jax", "jaxlib"):
        return "", np.asarray(value)
    try:  # any other CUDA producer: through torch when it is installed
        import torch
    except ImportError:
        raise TypeError(
            f"cannot copy a device DLPack tensor ({type(value).__name__}) to the "
            "host: install torch or return a CuPy/torch tensor"
        ) from None
    return to_host(torch.from_dlpack(value))
