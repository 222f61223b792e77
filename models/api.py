"""What serving builds against: :class:`Recommender`, :class:`Candidates`, loading and training.

A :class:`Recommender` is the fitted retrievers, the blender and the ranker of one
training run, saved in the BentoML model store with its lineage. The service reads the
ranker's online features through the feature service recorded there
(:attr:`Recommender.feature_service`), never through a hard-coded list.

Additions to the agreed interface (nothing removed or renamed): :class:`Candidates`
carries ``policy`` (which cold-start branch answered: ``personalised``, ``session`` or
``popularity``), ``n_unknown_items`` (basket ids skipped), ``new_items_only`` and
``proposals`` (each retriever's own list); :meth:`Recommender.candidates` takes an optional keyword
``new_items_only`` (leave out the user's past items; :meth:`Recommender.rank` then uses a
ranker trained on items new to the user); :class:`Recommender` has ``lineage`` (the
stored metadata), ``cutoff`` and ``ranker_new``.
"""

from __future__ import annotations

import logging
import os
import pickle
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from feature_repo.errors import NotFoundError
from models import limit_blas_threads
from models.blend import Blender, Candidates
from models.data import check_id
from models.ranker import XGBRankerModel

if TYPE_CHECKING:
    from feature_repo.config import Settings

logger = logging.getLogger(__name__)

__all__ = ["Candidates", "Recommender", "bentoml_store", "load_recommender", "train"]

MODEL_NAME = "shelfwise_recommender"
PICKLE_FILE = "recommender.pkl"
N_CONTRIBUTIONS = 3


class Recommender:
    """Retrieve, blend and rank for one request.

    Parameters
    ----------
    blender
        Fitted retrievers and user-item features.
    ranker
        Fitted XGBoost ranker.
    feature_service
        Name of the Feast feature service the ranker's features come from.
    user_feature_names, item_feature_names
        Online features the ranker needs, per entity, as the service listed them.
    cutoff
        The instant the retrievers were fitted up to.
    ranker_new
        Optional ranker trained on items new to the user, used for candidates built with
        ``new_items_only=True``.
    """

    model_version: str = ""
    lineage: dict[str, Any]

    def __init__(
        self,
        blender: Blender,
        ranker: XGBRankerModel,
        *,
        feature_service: str,
        user_feature_names: Sequence[str],
        item_feature_names: Sequence[str],
        cutoff: datetime,
        ranker_new: XGBRankerModel | None = None,
    ) -> None:
        self.blender = blender
        self.ranker = ranker
        self.ranker_new = ranker_new
        self.feature_service = feature_service
        self.user_feature_names = list(user_feature_names)
        self.item_feature_names = list(item_feature_names)
        self.cutoff = cutoff
        self.lineage = {}

    # -- retrieval ---------------------------------------------------------------------

    def known_user(self, user_id: str) -> bool:
        """Whether the user had purchases before the cut-off."""
        return self.blender.known_user(check_id(user_id, name="user_id"))

    def candidates(
        self,
        *,
        user_id: str | None,
        session_items: Sequence[str] = (),
        country: str | None = None,
        n_candidates: int = 200,
        exclude: Collection[str] = (),
        new_items_only: bool = False,
    ) -> Candidates:
        """Blended candidates (see :mod:`models.blend` for the cold-start policy).

        ``new_items_only`` leaves out the user's past items; :meth:`rank` then uses the
        ranker trained on new items when the model has one.
        """
        return self.blender.candidates(
            user_id=user_id,
            session_items=session_items,
            country=country,
            n_candidates=n_candidates,
            exclude=exclude,
            new_items_only=new_items_only,
        )

    def ranker_for(self, candidates: Candidates) -> XGBRankerModel:
        if candidates.new_items_only and self.ranker_new is not None:
            return self.ranker_new
        return self.ranker

    def popular(self, k: int, *, country: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The non-personalised fallback: the ``k`` most popular items (of ``country``)."""
        popularity = self.blender.retrievers["popularity"]
        return popularity.recommend(None, country=country, n_candidates=k)

    def similar_items(self, item_id: str, k: int) -> tuple[np.ndarray, np.ndarray, list[list[str]]]:
        """Items bought with ``item_id`` and items with similar titles, best first.

        Raises
        ------
        NotFoundError
            When no retriever knows ``item_id``.
        """
        check_id(item_id, name="item_id")
        if item_id not in self.blender.catalogue_:
            raise NotFoundError(f"item_id={item_id!r} is not in the catalogue.")
        proposals: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for name in ("covisitation", "content"):
            retriever = self.blender.retrievers.get(name)
            if retriever is not None:
                ids, scores = retriever.recommend(
                    None, session_items=[item_id], n_candidates=k + 1, exclude=[item_id]
                )
                proposals[name] = (
                    ids,
                    scores / scores[0] if len(scores) and scores[0] > 0 else scores,
                )
        merged: dict[str, float] = {}
        sources: dict[str, list[str]] = {}
        for name, (ids, scores) in proposals.items():
            weight = 0.6 if name == "covisitation" else 0.4
            for item, score in zip(ids.tolist(), scores.tolist(), strict=True):
                merged[item] = merged.get(item, 0.0) + weight * score
                sources.setdefault(item, []).append(name)
        order = sorted(merged, key=lambda i: (-merged[i], i))[:k]
        return (
            np.asarray(order, dtype=object),
            np.asarray([merged[i] for i in order], dtype=np.float64),
            [sources[i] for i in order],
        )

    def item_titles(self) -> Mapping[str, str]:
        return self.blender.user_item.content_.titles_

    def item_embeddings(self) -> tuple[np.ndarray, np.ndarray]:
        """``(item_ids (n,), unit vectors (n, 384))`` of the catalogue's titles."""
        content = self.blender.user_item.content_
        return content.items_.ids, content.vectors_

    # -- ranking -----------------------------------------------------------------------

    def feature_frame(
        self,
        candidates: Candidates,
        *,
        user_features: Mapping[str, Any],
        item_features: Mapping[str, np.ndarray],
    ) -> pd.DataFrame:
        """The ranker's input for one request: candidate, user and item features."""
        n = len(candidates.item_ids)
        frame = candidates.features.reset_index(drop=True).copy()
        for name in self.user_feature_names:
            frame[name] = [user_features.get(name)] * n
        for name in self.item_feature_names:
            values = item_features.get(name)
            frame[name] = np.full(n, np.nan) if values is None else np.asarray(values)
        return frame

    def rank(
        self,
        candidates: Candidates,
        *,
        user_id: str | None,
        user_features: Mapping[str, Any],
        item_features: Mapping[str, np.ndarray],
    ) -> tuple[np.ndarray, np.ndarray, list[list[tuple[str, float]]]]:
        """Score the candidates and sort them best first.

        Parameters
        ----------
        candidates
            From :meth:`candidates`.
        user_id
            The user (``None`` for a guest); the user-item features are already in the
            candidates.
        user_features
            The user's online features by name (missing names are missing values).
        item_features
            Each item feature name to an ``(n,)`` array aligned with ``candidates.item_ids``.

        Returns
        -------
        item_ids, scores, contributions
            Best first; for each item the features that moved its score most, as
            ``(name, contribution)`` from XGBoost's ``pred_contribs``.
        """
        n = len(candidates.item_ids)
        if n == 0:
            return np.asarray([], dtype=object), np.asarray([], dtype=np.float64), []
        frame = self.feature_frame(
            candidates, user_features=user_features, item_features=item_features
        )
        ranker = self.ranker_for(candidates)
        contribs = ranker.contributions(frame)
        scores = contribs.sum(axis=1)
        order = np.lexsort((candidates.item_ids.astype(str), -scores))
        names = ranker.feature_names_
        top = np.argsort(-np.abs(contribs[:, :-1]), axis=1)[:, :N_CONTRIBUTIONS]
        explanations = [
            [(names[j], float(contribs[row, j])) for j in top[row]] for row in order.tolist()
        ]
        return candidates.item_ids[order], scores[order].astype(np.float64), explanations

    def score(self, frame: pd.DataFrame, *, new_items_only: bool = False) -> np.ndarray:
        """Ranker scores of prepared feature rows (for batch evaluation)."""
        if new_items_only and self.ranker_new is not None:
            return self.ranker_new.predict(frame)
        return self.ranker.predict(frame)


# ---------------------------------------------------------------------------------------
# Model store


def resolve_bentoml_home(bentoml_home: str | Path | None, settings: Settings | None = None) -> Path:
    """``bentoml_home``, else ``$BENTOML_HOME``, else ``<data>/models/bentoml``."""
    if bentoml_home is not None:
        return Path(bentoml_home)
    if os.environ.get("BENTOML_HOME"):
        return Path(os.environ["BENTOML_HOME"])
    if settings is None:
        from feature_repo.config import load_settings

        settings = load_settings()
    return settings.paths.models / "bentoml"


def bentoml_store(home: Path) -> Any:
    """The BentoML model store under ``home`` (``<home>/models``)."""
    from bentoml._internal.models.model import ModelStore

    folder = Path(home) / "models"
    folder.mkdir(parents=True, exist_ok=True)
    return ModelStore(str(folder))


def save_recommender(
    recommender: Recommender,
    *,
    metadata: Mapping[str, Any],
    labels: Mapping[str, str],
    bentoml_home: Path,
) -> str:
    """Store ``recommender`` with its lineage in the BentoML model store; return the tag."""
    import bentoml

    store = bentoml_store(bentoml_home)
    with bentoml.models.create(
        MODEL_NAME,
        labels=dict(labels),
        metadata=dict(metadata),
        module="models.api",
        _model_store=store,
    ) as model:
        recommender.model_version = str(model.tag)
        recommender.lineage = dict(metadata)
        with open(Path(model.path) / PICKLE_FILE, "wb") as handle:
            pickle.dump(recommender, handle, protocol=pickle.HIGHEST_PROTOCOL)
        tag = str(model.tag)
    logger.info("model stored as %s in %s", tag, bentoml_home)
    return tag


def load_recommender(
    version: str | None = None, *, bentoml_home: str | Path | None = None
) -> Recommender:
    """Load a stored :class:`Recommender` (the latest when ``version`` is ``None``).

    Raises
    ------
    NotFoundError
        When the store holds no such model.
    """
    import bentoml

    home = resolve_bentoml_home(bentoml_home)
    store = bentoml_store(home)
    tag = f"{MODEL_NAME}:{version.split(':')[-1]}" if version else f"{MODEL_NAME}:latest"
    try:
        model = bentoml.models.get(tag, _model_store=store)
    except bentoml.exceptions.NotFound as exc:
        raise NotFoundError(
            f"no model {tag!r} in the BentoML store at {home}.\n"
            "Hint: run `python -m models train` (or set BENTOML_HOME)."
        ) from exc
    with open(Path(model.path) / PICKLE_FILE, "rb") as handle:
        recommender: Recommender = pickle.load(handle)
    recommender.model_version = str(model.tag)
    recommender.lineage = dict(model.info.metadata)
    limit_blas_threads()
    return recommender


def train(settings: Settings, **options: Any) -> str:
    """Fit, evaluate and store a recommender on ``settings``' data; return its tag.

    See :func:`models.training.run_training` for the options.
    """
    from models.training import run_training

    return run_training(settings, **options).tag
