"""Point-in-time features per bucket of cardholders (on the workers and in process) equal the
single-process matrix: same columns, same values, same rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.bundle_inputs import feature_builder
from features.pipeline import partitioned_user_features

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("on_workers", [False, True])
def test_features_per_partition_equal_the_whole_tables(request, scale_bundle, scale_dataset, scale_parts,
                                                        on_workers: bool) -> None:
    client = request.getfixturevalue("dask_client") if on_workers else None
    builder = feature_builder(scale_bundle)
    end = scale_dataset.time_range()[1]
    for as_of in (end, end - pd.Timedelta(days=20)):  # a cut inside the data drops later events
        expected = builder.transform_users(scale_dataset, as_of)
        got = partitioned_user_features(scale_parts, builder, as_of, client)
        assert scale_parts.buckets == 5 and got.shape == expected.shape
        assert expected.nnz > 10 * expected.shape[0]  # every family present, not an empty comparison
        assert (got != expected).nnz == 0
        np.testing.assert_array_equal(got.toarray(), expected.toarray())
