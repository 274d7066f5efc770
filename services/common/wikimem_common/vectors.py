"""float32 matrices as `wikimem.v1.Vectors` (bytes + shape)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from wikimem_contract.v1 import common_pb2

from .errors import InvalidArgument


def to_proto(matrix: npt.NDArray[np.floating]) -> common_pb2.Vectors:
    arr = np.ascontiguousarray(matrix, dtype="<f4")
    if arr.ndim != 2:
        raise ValueError(f"expected a 2-d matrix, got shape {arr.shape}")
    return common_pb2.Vectors(data=arr.tobytes(), shape=list(arr.shape))


def from_proto(vectors: common_pb2.Vectors) -> npt.NDArray[np.float32]:
    shape = tuple(vectors.shape)
    if len(shape) != 2:
        raise InvalidArgument(f"vectors.shape must be [rows, dim], got {list(shape)}")
    rows, dim = shape
    if len(vectors.data) != rows * dim * 4:
        raise InvalidArgument(
            f"vectors.data has {len(vectors.data)} bytes; shape {list(shape)} needs {rows * dim * 4} (float32)"
        )
    arr = np.frombuffer(vectors.data, dtype="<f4").reshape(rows, dim)
    if not np.all(np.isfinite(arr)):
        raise InvalidArgument("vectors contain NaN or infinity")
    return arr
