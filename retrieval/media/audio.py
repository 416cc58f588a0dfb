"""Reading sound files into mono waveforms, with errors that name the file."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Union

import numpy as np

from retrieval.errors import InputError

AUDIO_EXTENSIONS = (".wav", ".mp3", ".ogg", ".oga", ".flac", ".aiff", ".aif")
# A query is one clip; minutes of audio would stall a search and blow up memory. Corpus clips longer
# than this are truncated (encoders see the first MAX_SECONDS), which is said in the docs.
MAX_SECONDS = 60.0


def is_audio_path(path: Union[str, os.PathLike]) -> bool:
    return str(path).lower().endswith(AUDIO_EXTENSIONS)


def load_audio(path: Union[str, os.PathLike], sr: Optional[float], max_seconds: float = MAX_SECONDS) -> np.ndarray:
    """Decode a sound file to a mono float32 waveform at ``sr`` Hz (``None``: the file's own rate),
    at most ``max_seconds`` long.

    >>> load_audio("bell.oga", 44100.0).dtype  # doctest: +SKIP
    dtype('float32')
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(f"expected a sound file, got {str(p)!r}, which does not exist or is not a file")
    try:
        import librosa
    except ImportError as exc:
        raise InputError("audio needs the packages librosa and soundfile: pip install librosa soundfile") from exc
    try:
        import warnings

        with warnings.catch_warnings():  # librosa warns before falling back to audioread; the error below is enough
            warnings.simplefilter("ignore")
            y, _ = librosa.load(str(p), sr=sr, mono=True, duration=max_seconds)
    except Exception as exc:  # soundfile, audioread and ffmpeg raise many unrelated types
        why = str(exc).strip() or "no decoder on this machine could read it (not a sound, or a format they lack)"
        raise InputError(f"expected a readable sound file ({', '.join(AUDIO_EXTENSIONS)}), got {str(p)!r}: "
                         f"{type(exc).__name__}: {why}") from exc
    if y.size == 0:
        raise InputError(f"expected a sound file with at least one sample, got {str(p)!r}, which is empty")
    if not np.all(np.isfinite(y)):
        raise InputError(f"expected finite samples in {str(p)!r}, got NaN or infinity")
    return y.astype(np.float32)
