"""Logging set-up shared by the project's command lines."""

from __future__ import annotations

import logging
import warnings

# Libraries that log routine steps (registry refreshes, HTTP calls, model loading) at INFO.
NOISY_LOGGERS: tuple[str, ...] = (
    "feast",
    "urllib3",
    "httpx",
    "numba",
    "matplotlib",
    "sentence_transformers",
    "filelock",
    "bentoml",
    "implicit",
    "evidently",
)


def setup_logging(verbose: bool = False, *, quiet: tuple[str, ...] = NOISY_LOGGERS) -> None:
    """Log to stderr with times; the project at INFO (DEBUG when ``verbose``), the
    libraries in ``quiet`` at WARNING."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    # A dependency of Feast's DuckDB store warns about its own use of DuckDB's API.
    warnings.filterwarnings("ignore", message=r"fetch_arrow_table\(\) is deprecated")
    for name in quiet:
        logging.getLogger(name).setLevel(logging.WARNING)
