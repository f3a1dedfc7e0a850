"""JSON shapes of the HTTP API (pydantic models; FastAPI turns them into the OpenAPI schema)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr


class ClassifyRequest(BaseModel):
    """One text or a list of texts; ``text_b`` (same shape) makes them pairs."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"text": "a charming and often affecting journey"},
        {"text": ["a gorgeous , witty , seductive movie .", "unflinchingly bleak and desperate"]},
        {"text": ["the cat sat"], "text_b": ["a cat was sitting"]},
        {"text": "a charming and often affecting journey", "exact": True},
    ]})

    text: StrictStr | list[StrictStr] = Field(description="a text, or a list of texts (one result row each)")
    text_b: StrictStr | list[StrictStr] | None = Field(
        default=None, description="second texts of pairs, one per text (for pair tasks such as NLI)")
    exact: StrictBool = Field(
        default=False, description="run every text of this request at depth L: the full model's answer, no early "
                                   "exit (outside the consistency guarantee's budget, at the full model's cost)")


class RowResult(BaseModel):
    """The result of one text: the label, every class's probability and the depth (layers run) that gave it."""

    label: str
    label_id: int
    probabilities: list[float]
    depth: int = Field(description="number of Transformer layers that ran for this row (1..num_layers)")


class ClassifyResponse(BaseModel):
    """One row per input text, in request order."""

    predictions: list[RowResult]
    num_layers: int


class ErrorResponse(BaseModel):
    """Every error answer: a message saying what failed and what to do."""

    detail: str | list


class Alive(BaseModel):
    """``/healthz``: the process answers (what it serves is at ``/readyz``)."""

    status: str


class Health(BaseModel):
    status: str
    model: dict = Field(default_factory=dict)
