"""Request limits and input checks: reject what a pool cannot run before it is queued, with the right status.

A bad row inside a pool would fail every request pooled with it, so each request is checked alone first:
too large (rows per request, characters per text) is HTTP 413, malformed (empty list, empty text, pair sides
of different lengths) is 422. Pure functions; the HTTP layer maps the two error types to status codes.
"""

from __future__ import annotations

from dataclasses import dataclass

from geep_deploy.errors import DataError
from geep_deploy.service.pooling import Rows


class RequestTooLarge(DataError):
    """A request exceeds a configured size limit (HTTP 413)."""


class InvalidRequest(DataError):
    """A request is well-formed JSON of the right types but cannot be classified (HTTP 422)."""


@dataclass(frozen=True)
class RequestLimits:
    """Most rows per request, characters per text and bytes per request body."""

    max_rows: int = 256
    max_chars: int = 4096
    max_body_bytes: int = 1 << 20

    def __post_init__(self) -> None:
        for name in ("max_rows", "max_chars", "max_body_bytes"):
            if getattr(self, name) < 1:
                raise DataError(f"service | {name} must be >= 1, got {getattr(self, name)}.")


def _as_list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def check_request(text: str | list[str], text_b: str | list[str] | None, limits: RequestLimits) -> Rows:
    """The request's rows, or `RequestTooLarge` / `InvalidRequest` naming the first offending row.

    ``text`` is one text or a list; ``text_b`` (pairs) must have the same shape as ``text``.
    """
    texts = _as_list(text)
    if not texts:
        raise InvalidRequest("service | `text` is an empty list; send at least one text.")
    if len(texts) > limits.max_rows:
        raise RequestTooLarge(f"service | {len(texts)} texts in one request; at most {limits.max_rows} allowed. "
                              f"Split the request.")
    texts_b = None
    if text_b is not None:
        if isinstance(text_b, str) != isinstance(text, str):
            raise InvalidRequest("service | `text` and `text_b` must both be strings or both be lists.")
        texts_b = _as_list(text_b)
        if len(texts_b) != len(texts):
            raise InvalidRequest(f"service | {len(texts)} texts but {len(texts_b)} `text_b`; give one per text.")
    for name, items in (("text", texts), ("text_b", texts_b or [])):
        for i, t in enumerate(items):
            if len(t) > limits.max_chars:
                raise RequestTooLarge(f"service | {name}[{i}] has {len(t)} characters; at most "
                                      f"{limits.max_chars} allowed.")
            if not t.strip():
                raise InvalidRequest(f"service | {name}[{i}] is empty or whitespace only.")
    return Rows(tuple(texts), tuple(texts_b) if texts_b is not None else None)
