from __future__ import annotations

import numpy as np
import pytest

from wikimem_common.errors import InvalidArgument
from wikimem_common.vectors import from_proto, to_proto
from wikimem_contract.v1 import common_pb2


def test_round_trip_keeps_values_and_shape() -> None:
    m = np.random.default_rng(0).standard_normal((3, 384)).astype(np.float32)
    proto = to_proto(m)
    assert list(proto.shape) == [3, 384]
    assert len(proto.data) == 3 * 384 * 4
    np.testing.assert_array_equal(from_proto(proto), m)


@pytest.mark.parametrize(
    "proto",
    [
        common_pb2.Vectors(data=b"\0" * 12, shape=[1, 4]),
        common_pb2.Vectors(data=b"\0" * 16, shape=[16]),
        common_pb2.Vectors(data=np.array([[np.nan]], dtype=np.float32).tobytes(), shape=[1, 1]),
    ],
)
def test_malformed_vectors_are_invalid_argument(proto: common_pb2.Vectors) -> None:
    with pytest.raises(InvalidArgument):
        from_proto(proto)
