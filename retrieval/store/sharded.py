"""The sharded format: a folder of shards (each a normal collection, see :mod:`retrieval.store.format`)
and a top-level manifest listing them with their manifests' checksums. Written by
:func:`retrieval.distributed.build_sharded`, searched by :class:`retrieval.api.sharded.ShardedCollection`."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Dict

from retrieval.errors import CollectionFormatError
from retrieval.store.arrow import sha256_file
from retrieval.store.format import manifest_checksum

SHARDED_FORMAT = "retrieval-sharded-collection"
# 2: the manifest checksums its own content (manifest_sha256); 1 is still read.
SHARDED_VERSION = 2


def read_sharded_manifest(folder: Path) -> Dict:
    folder = Path(folder)
    try:
        m = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise CollectionFormatError(f"expected a readable manifest.json in {str(folder)!r}: {exc}") from exc
    if not isinstance(m, dict) or m.get("format") != SHARDED_FORMAT or m.get("format_version", 99) > SHARDED_VERSION:
        got = m.get("format") if isinstance(m, dict) else type(m).__name__
        raise CollectionFormatError(f"expected a {SHARDED_FORMAT} version <= {SHARDED_VERSION} in {str(folder)!r}, "
                                    f"got {got!r} version {m.get('format_version') if isinstance(m, dict) else None!r}")
    if m["format_version"] >= 2 and m.get("manifest_sha256") != manifest_checksum(m):
        raise CollectionFormatError(f"expected the sharded manifest in {str(folder)!r} to match its own checksum "
                                    f"(manifest_sha256), it does not: it was edited or damaged; rebuild it")

    for s in m["shards"]:
        f = folder / s["name"] / "manifest.json"
        if os.path.basename(s["name"]) != s["name"] or not f.is_file():
            raise CollectionFormatError(f"expected shard {s['name']!r} inside {str(folder)!r}; it is missing")
        if sha256_file(str(f)) != s["manifest_sha256"]:
            raise CollectionFormatError(f"shard {s['name']!r}'s manifest does not match the sharded manifest: "
                                        f"the collection was modified; rebuild it")
    return m


def is_sharded(folder) -> bool:
    """Whether ``folder`` holds a sharded collection: a peek at the manifest's format name only (the
    reader that follows verifies everything)."""
    try:
        return json.loads((Path(folder) / "manifest.json").read_text(encoding="utf-8")).get("format") == SHARDED_FORMAT
    except (OSError, ValueError, AttributeError):
        return False
