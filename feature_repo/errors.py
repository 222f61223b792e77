"""The project's error hierarchy. Each error that can reach an HTTP client has a status."""

from __future__ import annotations


class ShelfwiseError(Exception):
    """Base class of every error this project raises on purpose."""

    http_status: int = 500


class IngestError(ShelfwiseError):
    """A raw input file cannot be ingested; the message names the file and line."""


class ConfigError(ShelfwiseError):
    """A setting is missing or invalid; the message names the variable and the fix."""


class SchemaError(ShelfwiseError):
    """A frame lacks a column or has one of the wrong type."""


class NotFittedError(ShelfwiseError):
    """A model was used before ``fit``."""


class BadRequestError(ShelfwiseError):
    """A client's request broke a rule; the message names the field and the rule."""

    http_status = 422


class NotFoundError(ShelfwiseError):
    """A client asked about an id the service does not know."""

    http_status = 404


class PayloadTooLargeError(ShelfwiseError):
    http_status = 413


class StoreUnavailableError(ShelfwiseError):
    """A backing store (Redis) is down or slower than its budget."""

    http_status = 503
