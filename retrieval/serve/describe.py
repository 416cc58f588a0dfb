"""The describe loop over HTTP: which items to describe first, and the captions a person typed.

``GET /collections/{name}/suggest`` lists them (retrieval/build/captioning.py: coverage); ``POST
/collections/{name}/captions`` gives items captions and rewrites the collection on disk, which the
server then reopens. A server writes nothing unless started with ``captions=True`` (``serve
--allow-captions``): anyone who can reach it could otherwise change a collection. One write at a time;
searches go on against the old version until the new one is in place."""

import threading
from contextlib import contextmanager
from typing import List

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException

from retrieval.api import apply_captions, suggest
from retrieval.errors import InputError
from retrieval.serve.errors import POSTED, documented
from retrieval.serve.state import Served

MAX_SUGGESTED = 200
MAX_CAPTIONS = 1000      # rows one request may caption
MAX_CAPTION_CHARS = 1000


class Caption(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: int = Field(..., ge=0, description="the item's id, as search and suggest give it")
    caption: str = Field(..., min_length=1, max_length=MAX_CAPTION_CHARS, pattern=r"\S", description="its caption")


class Captions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    captions: List[Caption] = Field(..., min_length=1, max_length=MAX_CAPTIONS)


@contextmanager
def not_held():
    """A request well formed but not for this collection's items answers 409 with what was wrong."""
    try:
        yield
    except InputError as exc:
        raise HTTPException(409, str(exc)) from exc


def describe_routes(served: Served, allowed: bool) -> APIRouter:
    router = APIRouter()
    writing = threading.Lock()

    @router.get("/collections/{name}/suggest", responses=documented(404, 409, 422, 503))
    def suggested(name: str, n: int = Query(12, ge=1, le=MAX_SUGGESTED, description="how many items")):
        served.collection(name)  # an unknown name is a 404
        with not_held():  # every item captioned already, or a sharded collection
            rows = suggest(served.cols[name].folder, n)
        return {"editable": allowed, "items": [
            {"rank": r["rank"], "id": r["id"], "file": r["path"].rsplit("/", 1)[-1],
             "url": f"/collections/{name}/items/{r['id']}/file"} for r in rows]}

    @router.post("/collections/{name}/captions", responses=documented(*POSTED, 403))
    def give_captions(name: str, body: Captions):
        served.collection(name)
        if not allowed:
            raise HTTPException(403, "this server does not write collections; start it with 'retrieval serve "
                                     "--allow-captions' to give items captions from here, or use 'retrieval caption'")
        with writing, not_held():  # an id it does not have, or one named twice
            got = apply_captions(served.cols[name].folder, [c.model_dump() for c in body.captions])
            served.cols[name].reload()  # answer after the new version is served
        return {k: v for k, v in got.items() if k != "path"}

    return router
