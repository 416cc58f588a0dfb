"""Reading images from disk (or from uploaded bytes) into RGB, with errors that name the file.

Decoding is bounded: an image larger than ``max_pixels`` is refused from its header, before its
pixels are decompressed (a "decompression bomb", a small PNG that expands to gigabytes). The bound
is an argument, not Pillow's process-wide ``Image.MAX_IMAGE_PIXELS``, so that a library call never
changes what other code in the process may open.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Optional, Union

from PIL import Image, UnidentifiedImageError

from retrieval.errors import InputError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")
# Pillow's own default limit (its MAX_IMAGE_PIXELS): about 9,500 x 9,500. Larger images are refused.
DEFAULT_MAX_PIXELS = 89_478_485

ImageLike = Union[str, os.PathLike, Image.Image]


def _too_large(what: str, max_pixels: int, size: Optional[tuple] = None) -> InputError:
    got = (f"{what}, of {size[0]} x {size[1]} = {size[0] * size[1]:,} pixels" if size
           else f"{what}, larger than Pillow's own limit ({2 * (Image.MAX_IMAGE_PIXELS or 0):,} pixels)")
    return InputError(f"expected an image of at most {max_pixels:,} pixels, got {got}; it was refused without "
                      f"being decoded (a decompression bomb, or a picture too large to search with)")


def open_image(source: Union[str, os.PathLike, bytes], *, name: Optional[str] = None,
               max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Decode an image file or an upload's bytes, refusing anything over ``max_pixels`` from its
    header. ``name`` is what errors call it (an upload's file name)."""
    data = isinstance(source, (bytes, bytearray))
    what = repr(name if name is not None else ("the upload" if data else str(source)))
    try:
        img = Image.open(io.BytesIO(source) if data else source)  # reads the header only
        if img.width * img.height > max_pixels:
            img.close()
            raise _too_large(what, max_pixels, img.size)
        img.load()  # force decoding now so truncated files fail here, not later in a batch
        return img
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):  # Pillow's own limit (or -W error)
        raise _too_large(what, max_pixels) from None
    except UnidentifiedImageError:
        # Pillow's own message names an in-memory buffer by its address: say what was given instead.
        raise InputError(f"expected a readable image (png, jpg, webp, bmp, gif, tif), got {what}, which Pillow "
                         f"cannot identify as one") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"expected a readable image, got {what}: {exc}") from exc


def load_rgb(image: ImageLike, background=(255, 255, 255), *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
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
        img = open_image(path, max_pixels=max_pixels)
    if img.mode in ("RGBA", "LA", "P", "PA"):
        img = img.convert("RGBA")
        canvas = Image.new("RGBA", img.size, background + (255,))
        canvas.alpha_composite(img)
        return canvas.convert("RGB")
    return img.convert("RGB")


def is_image_path(path: Union[str, os.PathLike]) -> bool:
    return str(path).lower().endswith(IMAGE_EXTENSIONS)
