"""Request and response bodies of the recommendation service.

Every request body is validated before an endpoint runs: a wrong type, a value out of
range or a missing field becomes a 400 whose ``detail`` names the field (``loc``) and the
rule (``msg``). Unknown fields are refused, so a typo does not silently change an answer.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, Strict, StringConstraints, model_validator

MAX_K = 100
MAX_SESSION_ITEMS = 200
MAX_EXCLUDE_ITEMS = 1000

# Ids are short printable strings; int ids are accepted and read as their decimal string,
# the form in which the feature store keys them.
Id = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=64),
]

# ``k`` must be a JSON integer: "10" or 10.5 are refused rather than guessed at.
StrictK = Annotated[int, Strict(), Field(ge=1, le=MAX_K)]


class Fallback(StrEnum):
    """Why an answer is not the personalised one."""

    UNKNOWN_USER = "unknown_user"
    OPTED_OUT = "opted_out"
    REDIS_UNAVAILABLE = "redis_unavailable"
    REDIS_TIMEOUT = "redis_timeout"
    UNKNOWN_ITEMS = "unknown_basket_items"
    NO_CANDIDATES = "no_candidates"
    INTERNAL_ERROR = "internal_error"


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True)


class RecommendRequest(_Body):
    """Body of ``POST /recommend``: a customer, a guest's basket, or both."""

    user_id: Id | None = Field(default=None, description="a known customer's id")
    session_items: list[Id] = Field(
        default_factory=list,
        max_length=MAX_SESSION_ITEMS,
        description="item ids in the current basket (a guest's only signal)",
    )
    k: StrictK = Field(default=10, description="how many items to return")
    exclude_items: list[Id] = Field(
        default_factory=list, max_length=MAX_EXCLUDE_ITEMS, description="never return these"
    )
    country: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None
    as_of: datetime | None = Field(
        default=None,
        description="the request's time (ISO 8601); replay only, so the audit log keeps "
        "the original time; naive means UTC",
    )

    @model_validator(mode="after")
    def _user_or_basket(self) -> RecommendRequest:
        if self.user_id is None and not self.session_items:
            raise ValueError(
                "one of user_id or session_items is required: user_id for a customer, "
                "session_items (a non-empty list of item ids) for a guest"
            )
        if self.as_of is not None and self.as_of.tzinfo is None:
            self.as_of = self.as_of.replace(tzinfo=UTC)
        return self


class SimilarItemsRequest(_Body):
    """Body of ``POST /similar_items``."""

    item_id: Id
    k: StrictK = 10


class OptOutRequest(_Body):
    """Body of ``POST /opt_out`` and ``POST /opt_in``."""

    user_id: Id


class Contribution(BaseModel):
    """One feature's push on an item's score (the ranker's own contribution, log-odds)."""

    feature: str
    contribution: float


class RecommendedItem(BaseModel):
    item_id: str
    title: str | None
    score: float
    rank: int
    sources: list[str]
    explanation: str
    contributions: list[Contribution] = Field(default_factory=list)


class RecommendResponse(BaseModel):
    request_id: str
    model_version: str
    items: list[RecommendedItem]
    fallback: Fallback | None = Field(
        description="null for a personalised answer, else why the answer is not"
    )
    is_guest: bool
    known_user: bool | None = None


class SimilarItem(BaseModel):
    item_id: str
    title: str | None
    score: float
    rank: int
    sources: list[str]


class SimilarItemsResponse(BaseModel):
    request_id: str
    model_version: str
    item_id: str
    items: list[SimilarItem]


class OptOutResponse(BaseModel):
    user_id: str
    opted_out: bool


def now_utc() -> datetime:
    return datetime.now(UTC)
