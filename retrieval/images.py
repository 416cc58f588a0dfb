"""Reading images from disk into RGB, with errors that name the file."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Union

from PIL import Image, UnidentifiedImageError

from .errors import InputError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")

ImageLike = Union[str, os.PathLike, Image.Image]


def load_rgb(image: ImageLike, background=(255, 255, 255)) -> Image.Image:
    """Open an image (path or PIL image) as RGB; transparency is composited on white.

    Emoji and icons are RGBA with a transparent background; flattening on black would turn their
    outlines into noise for an encoder trained on photos.

    >>> load_rgb("tests/data/apple.png").mode  # doctest: +SKIP
    'RGB'
    """
    if isinstance(image, Image.Image):
        img = image
    else:
        path = Path(image)
        if not path.is_file():
            raise InputError(f"expected an image file, got {str(path)!r}, which does not exist or is not a file")
        try:
            img = Image.open(path)
            img.load()  # force decoding now so truncated files fail here, not later in a batch
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
            raise InputError(f"expected a readable image, got {str(path)!r}: {exc}") from exc
    if img.mode in ("RGBA", "LA", "P", "PA"):
        img = img.convert("RGBA")
        canvas = Image.new("RGBA", img.size, background + (255,))
        canvas.alpha_composite(img)
        return canvas.convert("RGB")
    return img.convert("RGB")


def is_image_path(path: Union[str, os.PathLike]) -> bool:
    return str(path).lower().endswith(IMAGE_EXTENSIONS)
