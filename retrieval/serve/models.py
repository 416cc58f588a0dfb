"""The request bodies and fields, stated from what the served collections hold: a request the spec
allows is one the server can answer (a collection lacking what another has answers 409)."""

from dataclasses import dataclass
from typing import Annotated, Dict, List, Literal, Optional, Sequence, Tuple, Union

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, create_model, field_validator

from retrieval.api import ROUTES
from retrieval.store.filters import MAX_LENGTH as MAX_FILTER_CHARS

# A prompt template: exactly one {} where the label goes, literal braces doubled (classify.check_template).
TEMPLATE_PATTERN = r"^(?:[^{}]|\{\{|\}\})*\{\}(?:[^{}]|\{\{|\}\})*$"


# An embedding has a direction: one of all zeros is refused (400), and the spec says so.
NOT_ALL_ZEROS = {"not": {"items": {"const": 0}}}


@dataclass
class Models:
    """The types endpoints are annotated with (FastAPI reads them at run time)."""

    Modality: object
    Target: object
    Route: object
    TextQuery: object
    SearchBody: object
    ClassifyVectorBody: object
    k_field: Dict
    where_field: Dict


def request_models(lim: Dict, encoders: Sequence[Tuple[str, int]], targets: Sequence[str]) -> Models:
    """``encoders``: (modality, width) of every served collection's encoders; ``targets``: what a
    search may return. Stated at start-up: a collection reopened later with another encoder width
    answers its raw vectors only after a restart; text and file queries are unaffected."""
    modalities = tuple(sorted({m for m, _ in encoders}))
    Modality, Target, Route = Literal[modalities], Literal[tuple(targets)], Literal[ROUTES]
    k_field = dict(ge=1, le=lim["max_k"], description=f"results wanted, 1 to {lim['max_k']}")
    # a metadata filter (retrieval/store/filters.py): parsed there, never evaluated as code or SQL
    where_field = dict(min_length=1, max_length=MAX_FILTER_CHARS, pattern=r"\S",
                       description="filter on the stored columns, e.g. \"label = 'cat' AND year >= 2020\"")

    class TextQuery(BaseModel):
        model_config = ConfigDict(extra="forbid")
        query: str = Field(..., min_length=1, max_length=lim["max_query_chars"], pattern=r"\S",
                           description="text query")
        k: int = Field(10, **k_field)
        target: Optional[Target] = Field(None, description="items (default), or a modality the collection holds")
        route: Optional[Route] = Field(None, description="force a route (default: the planner's choice)")
        where: Optional[str] = Field(None, **where_field)
        caption_match: bool = Field(True, description="also match the items' own captions: an item whose caption "
                                                       "the query repeats, or names every word of, comes first")

    def vector_query(modality: str):
        """A body carrying an embedding of ``modality``: its width is stated when every collection
        served agrees on it."""
        dims = [d for m, d in encoders if m == modality]
        width = dict(min_length=min(dims), max_length=max(dims), json_schema_extra=NOT_ALL_ZEROS)
        return create_model(
            f"VectorQuery_{modality}", __config__=ConfigDict(extra="forbid"),
            vector=(List[float], Field(..., description=f"an embedding from the collection's {modality} encoder",
                                       **width)),
            modality=(Literal[modality], ... if modality != "text" else "text"),
            k=(int, Field(10, **k_field)), target=(Optional[Target], None), route=(Optional[Route], None),
            where=(Optional[str], Field(None, **where_field)))

    SearchBody = Union[(TextQuery,) + tuple(vector_query(m) for m in modalities)]

    # a label as the classifier takes it: not empty, nothing str.strip() would remove at either end (the
    # characters named, as \s differs between regex engines), so that distinct items are distinct labels
    edge = r"[^\t-\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"
    Label = Annotated[str, StringConstraints(min_length=1, max_length=lim["max_query_chars"],
                                             pattern=f"^{edge}(?:[\\s\\S]*{edge})?$")]

    class ClassifyVectorBody(BaseModel):
        model_config = ConfigDict(extra="forbid")
        vector: List[float] = Field(..., min_length=1, json_schema_extra=NOT_ALL_ZEROS,
                                    description="an embedding from the collection's items' encoder (e.g. of a side "
                                    "built with vectors:NAME)")
        labels: List[Label] = Field(..., min_length=2, max_length=lim["max_labels"],
                                    json_schema_extra={"uniqueItems": True},
                                    description=f"two to {lim['max_labels']} distinct labels")
        k: int = Field(5, **k_field)
        template: Optional[str] = Field(None, pattern=TEMPLATE_PATTERN, description="prompt with exactly one {} "
                                        "for the label")
        abstain: Optional[float] = Field(None, ge=0.0, le=1.0, description="answer 'none of these' below this top "
                                         "probability")

        @field_validator("labels")
        @classmethod
        def distinct(cls, labels: List[str]) -> List[str]:
            if len(set(labels)) != len(labels):
                raise ValueError(f"expected distinct labels, got {len(labels) - len(set(labels))} repeated")
            return labels

    return Models(Modality, Target, Route, TextQuery, SearchBody, ClassifyVectorBody, k_field, where_field)
