"""Uploaded files as queries: read within the size limit, an image decoded with a pixel limit, a
sound written to a temporary file (its decoder reads paths) whose errors name the upload instead."""

import contextlib
import tempfile
from pathlib import Path
from typing import Dict, Optional

from fastapi import UploadFile
from starlette.exceptions import HTTPException

from retrieval.api import media_modality, open_image
from retrieval.errors import InputError, RetrievalError


async def read_upload(file: UploadFile, lim: Dict) -> bytes:
    data = await file.read(lim["max_body_bytes"] + 1)
    if not data:
        raise InputError(f"expected a non-empty file upload, got an empty {file.filename!r}")
    if len(data) > lim["max_body_bytes"]:
        raise HTTPException(413, f"expected a file of at most {lim['max_body_bytes']} bytes")
    return data


def as_query(data: bytes, filename: str, lim: Dict):
    """(query object, modality): an image decoded with limits, or a sound in a temporary file
    (the caller removes it)."""
    kind = media_modality(filename or "")
    if kind == "audio":
        suffix = Path(filename).suffix.lower()
        tmp = tempfile.NamedTemporaryFile(suffix=suffix, delete=False)
        tmp.write(data)
        tmp.close()
        return tmp.name, "audio"
    try:
        img = open_image(data, name=filename or "the upload", max_pixels=lim["max_image_pixels"])
    except InputError as exc:
        raise InputError(f"{exc} (uploads: an image such as png, jpg or webp, or a sound such as wav, mp3, "
                         f"ogg or flac, named by its extension)") from None
    with img:
        return img.copy(), "image"


@contextlib.contextmanager
def upload_named(query, modality: str, filename: Optional[str]):
    """An uploaded sound is read from a temporary file: an error about it names the upload, not
    where the server put it."""
    try:
        yield
    except RetrievalError as exc:
        if modality != "audio" or str(query) not in str(exc):
            raise
        name = filename or "the upload"
        raise type(exc)(str(exc).replace(repr(str(query)), repr(name)).replace(str(query), name)) from None
