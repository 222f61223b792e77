"""Scoring the candidates of one request with the ranker's booster, without pandas.

``Recommender.rank`` builds a pandas frame of every candidate and computes contributions
for all of them. The service needs the scores of all candidates but the explanation of
only the ``k`` it shows, so this module

* builds the feature matrix with numpy, in the ranker's column order and with its
  categorical codes (unseen categories are missing, as in the ranker);
* scores every candidate with ``inplace_predict`` (no ``DMatrix``);
* computes contributions for the shown items alone, the way ``Recommender.rank`` does
  (XGBoost's ``pred_contribs``, approximate by default: each tree's gain along the row's
  path, which sums to the score like exact SHAP values but costs a fraction);
* keeps XGBoost on one thread: on two cores shared with the HTTP server, OpenMP threads
  cost more in waiting than they save.

``tests/integration/test_bentos_service.py`` checks that scores and contributions equal
``Recommender.rank`` on real candidates.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)


class FastScorer:
    """Scores with the fitted booster of ``recommender.ranker``.

    Raises
    ------
    AttributeError
        When the recommender has no fitted XGBoost ranker to read (the caller then uses
        ``Recommender.rank``).
    """

    def __init__(self, recommender: Any, *, n_threads: int = 1) -> None:
        ranker = recommender.ranker
        self.booster = ranker.booster_
        self.names: list[str] = list(ranker.feature_names_)
        self.categories: dict[str, dict[str, int]] = {
            name: {str(value): code for code, value in enumerate(values)}
            for name, values in ranker.categories_.items()
        }
        self.iteration_range = (0, int(ranker.best_iteration_) + 1)
        self.feature_types = list(self.booster.feature_types or [])
        self.user_names = set(recommender.user_feature_names)
        self.item_names = set(recommender.item_feature_names)
        self.booster.set_param({"nthread": n_threads})

    def _column(self, name: str, values: Any, n: int) -> np.ndarray:
        if name in self.categories:
            codes = self.categories[name]
            if np.ndim(values) == 0:
                code = codes.get(str(values)) if values is not None else None
                return np.full(n, np.nan if code is None else code, dtype=np.float32)
            return np.asarray(
                [np.nan if v is None else codes.get(str(v), np.nan) for v in values],
                dtype=np.float32,
            )
        if np.ndim(values) == 0:
            try:
                value = np.nan if values is None else float(values)
            except (TypeError, ValueError):
                value = np.nan
            return np.full(n, value, dtype=np.float32)
        array = np.asarray(values)
        if array.dtype.kind in "fiub":
            return array.astype(np.float32)
        import pandas as pd

        return pd.to_numeric(pd.Series(array), errors="coerce").to_numpy(np.float32)

    def matrix(
        self,
        candidate_features: Any,
        *,
        user_features: Mapping[str, Any],
        item_features: Mapping[str, np.ndarray],
    ) -> np.ndarray:
        """``(n, f)`` float32 in the ranker's column order.

        Item features override user features, which override the candidates' own columns
        (the precedence of ``Recommender.feature_frame``).
        """
        n = len(candidate_features)
        out = np.empty((n, len(self.names)), dtype=np.float32)
        columns = set(candidate_features.columns)
        for j, name in enumerate(self.names):
            if name in self.item_names:
                values: Any = item_features.get(name)
                if values is None:
                    values = np.full(n, np.nan)
            elif name in self.user_names:
                values = user_features.get(name)
            elif name in columns:
                values = candidate_features[name].to_numpy()
            else:
                values = None
            out[:, j] = self._column(name, values, n)
        return out

    def scores(self, matrix: np.ndarray) -> np.ndarray:
        """``(n,)`` ranker margins, higher is better."""
        if len(matrix) == 0:
            return np.zeros(0, dtype=np.float64)
        return np.asarray(
            self.booster.inplace_predict(matrix, iteration_range=self.iteration_range),
            dtype=np.float64,
        )

    def contributions(
        self, matrix: np.ndarray, *, top: int, exact: bool = False
    ) -> list[list[tuple[str, float]]]:
        """For each row, the ``top`` features with the largest absolute contribution.

        ``exact`` asks for TreeSHAP values instead of the path approximation.
        """
        if len(matrix) == 0:
            return []
        import xgboost as xgb

        data = xgb.DMatrix(
            matrix,
            feature_names=self.names,
            feature_types=self.feature_types or None,
            enable_categorical=True,
            nthread=1,
        )
        contribs = self.booster.predict(
            data,
            pred_contribs=True,
            approx_contribs=not exact,
            iteration_range=self.iteration_range,
        )
        order = np.argsort(-np.abs(contribs[:, :-1]), axis=1)[:, :top]
        return [
            [(self.names[j], float(contribs[row, j])) for j in order[row]]
            for row in range(len(matrix))
        ]


def rank_order(item_ids: Sequence[str], scores: np.ndarray) -> np.ndarray:
    """Positions sorted by score, best first, ties by item id (as ``Recommender.rank``)."""
    return np.lexsort((np.asarray(item_ids).astype(str), -scores))
