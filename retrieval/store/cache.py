"""Where cached encodings live (anchors, label names): shared by every layer that caches."""

from __future__ import annotations

import os


def default_cache_dir() -> str:
    """``$RETRIEVAL_CACHE`` if set, else ``~/.cache/retrieval``."""
    return os.environ.get("RETRIEVAL_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "retrieval")
