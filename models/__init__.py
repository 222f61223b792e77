"""Shelfwise models: candidate retrievers, blending, the XGBoost ranker, offline evaluation
and the stored recommender that serving loads (see :mod:`models.api`)."""

from __future__ import annotations

# Requests score one small vector against the catalogue; on a 2-core machine OpenBLAS's
# thread pool makes such a product 10-20x slower (about 15 ms instead of under 1 ms), and
# implicit's ALS asks for a single BLAS thread too. Every process that imports the models
# therefore uses one BLAS thread.
from threadpoolctl import threadpool_limits as _threadpool_limits

import feature_repo  # noqa: F401  (switches library telemetry off before anything loads)


def limit_blas_threads() -> None:
    """One thread for every BLAS loaded so far (SciPy brings its own OpenBLAS later)."""
    _threadpool_limits(limits=1, user_api="blas")


limit_blas_threads()
