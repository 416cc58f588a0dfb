"""The endpoints, in two routers: what the served collections are (health, descriptions, plans, item
files, metrics, the page) and the queries (search by text, vector or file; classify). No request
names a path and no answer gives one: files are served as items, by id."""

import os
from pathlib import Path
from typing import Dict, List, Optional

from fastapi import APIRouter, File, Form, Query, UploadFile
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from retrieval.api import DEFAULT_TEMPLATES, check_template
from retrieval.errors import InputError, UnsupportedQueryError
from retrieval.serve.errors import POSTED, documented
from retrieval.serve.models import TEMPLATE_PATTERN, Models
from retrieval.serve.state import Served
from retrieval.serve.uploads import as_query, read_upload, upload_named

MEDIA = {"image/*": {}, "audio/*": {}, "application/octet-stream": {}}


class FastJSON(JSONResponse):
    """JSON by orjson, returned as is (no validation of the answer against a model: it is built here)."""

    def render(self, content) -> bytes:
        import orjson

        return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)
PAGE = Path(__file__).parent / "web" / "index.html"


def public_info(info: Dict, name: str) -> Dict:
    """A collection's description as a client sees it: the server's own file paths (the folder, the
    corpus and anchor sources, skipped files) are reduced to their last part."""
    def strip(x, key=""):
        if isinstance(x, dict):
            return {k: strip(v, k) for k, v in x.items()}
        if isinstance(x, list):
            return [strip(v, key) for v in x]
        if key in ("path", "source", "name") and isinstance(x, str) and os.path.isabs(x):
            return Path(x).name
        return x
    return dict(strip(info), path=name)


def hits_json(col_name: str, hits) -> List[Dict]:
    """Hits as a client sees them: each item's file is named (``file``) and fetched at its ``url``."""
    out = []
    for h in hits:
        d = h.to_dict()
        d["file"] = None if h.path is None else os.path.basename(h.path)  # not a Path per hit: this runs on the event loop
        del d["path"]
        if h.path is not None:
            item = h.item_id if h.kind == "text" else h.id
            d["url"] = f"/collections/{col_name}/items/{item}/file"
        out.append(d)
    return out


def servable(recorded: Path, item_id: int) -> Path:
    """The real file behind an item's recorded path, or the 403/404 that says why it is not served."""
    if not recorded.is_absolute():  # collections built before paths were stored absolute
        recorded = Path(os.path.abspath(recorded))
    if not os.path.lexists(recorded):
        raise HTTPException(404, f"item {item_id}'s file {recorded.name!r} is no longer where the collection "
                                 f"recorded it: it was moved or deleted after the build")
    real = Path(os.path.realpath(recorded))
    folder = os.path.realpath(recorded.parent)
    if os.path.commonpath([str(real), folder]) != folder:  # a symlink out of the item's own folder
        raise HTTPException(403, f"item {item_id}'s file {recorded.name!r} is a link to a place outside its "
                                 f"folder; such files are not served")
    if not real.is_file():
        raise HTTPException(403, f"item {item_id}'s file {recorded.name!r} is not a regular file (or its link "
                                 f"is broken); it is not served")
    return real


def collection_routes(served: Served, models: Models) -> APIRouter:
    router = APIRouter()
    Modality, Target, Route = models.Modality, models.Target, models.Route
    cols = served.cols

    @router.get("/health", responses=documented(503))
    def health():
        stale = {n: c.error for n, c in cols.items() if c.error}
        damaged = {n: why for n in cols if (why := served.damage(n))}
        return {"status": "degraded" if damaged else "ok", "collections": sorted(cols),
                **({"not_reopened": stale} if stale else {}), **({"damaged": damaged} if damaged else {})}

    @router.get("/collections", responses=documented(503))
    def list_collections():
        return {name: public_info(c.current().info(), name) for name, c in cols.items()}

    @router.get("/collections/{name}", responses=documented(404, 422, 503))
    def describe(name: str):
        return public_info(served.collection(name).info(), name)

    @router.get("/collections/{name}/explain", responses=documented(404, 409, 422, 503))
    def explain(name: str, modality: Modality = Query("text"), target: Optional[Target] = None,
                route: Optional[Route] = None):
        p = served.collection(name).plan(modality, target, route)
        return dict(p.to_dict(), text=p.explain())

    @router.get("/collections/{name}/items/{item_id}/file", response_class=FileResponse,
                responses={200: {"content": MEDIA, "description": "the item's image or sound file"},
                           **documented(403, 404, 422, 503)})
    def item_file(name: str, item_id: int):
        col = served.collection(name)
        try:
            recorded = Path(col.item_path(item_id))
        except InputError as exc:
            raise HTTPException(404, str(exc))
        return FileResponse(str(servable(recorded, item_id)))

    @router.get("/metrics", response_class=Response,
                responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}})
    def metrics():
        return Response(generate_latest(served.metrics.exposed()), media_type=CONTENT_TYPE_LATEST)

    @router.get("/", response_class=HTMLResponse)
    def page():
        return PAGE.read_text(encoding="utf-8")

    return router


async def search_response(served: Served, name: str, body) -> FastJSON:
    """The answer to a search ``body`` (a validated ``SearchBody``) in collection ``name``: the route's,
    and the fast lane's (fastlane.py) for the same request."""
    if hasattr(body, "query"):
        modality, kind, query = "text", "queries", body.query
    else:
        modality, kind, query = body.modality, "vectors", body.vector
    # awaited on the event loop: the micro-batcher's thread answers it, no worker thread waits for it
    hits, used = await served.answer_async((name, kind, modality, body.k, body.target, body.route, body.where,
                                            getattr(body, "caption_match", True)), query)
    with served.metrics.stages.labels(name, "respond").time():
        return FastJSON({"query": getattr(body, "query", None), "modality": modality, "route": used,
                         "results": hits_json(name, hits)})


def query_routes(served: Served, models: Models) -> APIRouter:
    router = APIRouter()
    Target, Route, SearchBody = models.Target, models.Route, models.SearchBody
    k_field, where_field, lim = models.k_field, models.where_field, served.lim

    @router.post("/collections/{name}/search", responses=documented(*POSTED), response_class=FastJSON)
    async def search(name: str, body: SearchBody):
        return await search_response(served, name, body)

    @router.post("/collections/{name}/search/file", responses=documented(*POSTED))
    async def search_file(name: str, file: UploadFile = File(...), k: int = Form(10, **k_field),
                          target: Optional[Target] = Form(None), route: Optional[Route] = Form(None),
                          where: Optional[str] = Form(None, **where_field)):
        served.collection(name)
        query, modality = as_query(await read_upload(file, lim), file.filename, lim)
        try:  # in a worker thread: waiting for the batch must not stop the event loop
            with upload_named(query, modality, file.filename):
                hits, used = await run_in_threadpool(served.answer,
                                                     (name, "queries", modality, k, target, route, where), query)
        finally:
            if modality == "audio":
                os.unlink(query)
        return {"query": file.filename, "modality": modality, "route": used, "results": hits_json(name, hits)}

    @router.post("/collections/{name}/classify", responses=documented(*POSTED))
    async def classify(name: str, file: UploadFile = File(...),
                       labels: str = Form(..., pattern=r"[^,\s][\s\S]*[,\n][\s\S]*[^,\s]",
                                         description="two or more distinct labels, comma or newline separated"),
                       k: int = Form(5, **k_field),
                       template: Optional[str] = Form(None, pattern=TEMPLATE_PATTERN,
                                                      description="prompt with exactly one {} for the label"),
                       abstain: Optional[float] = Form(None, ge=0.0, le=1.0,
                                                       description="answer 'none of these' below this top probability")):
        col = served.collection(name)
        names = list(dict.fromkeys(x.strip() for x in labels.replace(",", "\n").splitlines() if x.strip()))
        if not 2 <= len(names) <= lim["max_labels"]:  # (a label typed twice is meant once)
            raise InputError(f"expected 2 to {lim['max_labels']} labels (comma or newline separated), got {len(names)}")
        if template is not None:
            check_template(template)
        query, modality = as_query(await read_upload(file, lim), file.filename, lim)
        try:  # the refusal below is inside the try: an uploaded sound's temporary file is removed either way
            if modality != col.modality:
                a = {"image": "an image", "audio": "a sound"}
                raise UnsupportedQueryError(f"expected {a[col.modality]} file to classify in this collection, got "
                                            f"{a[modality]} file")
            with served.lock, upload_named(query, modality, file.filename):
                preds = col.classify([query], names, templates=[template] if template else DEFAULT_TEMPLATES,
                                     k=min(k, len(names)), abstain=abstain)
        finally:
            if modality == "audio":
                os.unlink(query)
        return {"file": file.filename, **preds[0].to_dict(), "signals": preds.signals}

    @router.post("/collections/{name}/classify/vector", responses=documented(*POSTED))
    def classify_vector(name: str, body: models.ClassifyVectorBody):
        col = served.collection(name)
        names = body.labels  # the spec holds them to what the classifier takes: 2 or more, distinct, stripped
        with served.lock:
            preds = col.classify_vectors([body.vector], names, k=min(body.k, len(names)), abstain=body.abstain,
                                         templates=[check_template(body.template)] if body.template else DEFAULT_TEMPLATES)
        return {**preds[0].to_dict(), "signals": preds.signals}

    return router
