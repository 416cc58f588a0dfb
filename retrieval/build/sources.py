"""Where anchors come from: a source names a local table or folder, a pack, or a dataset.

``--anchors`` takes a path (a table or a folder of files with sidecar captions), ``pack:NAME`` (pairs
made from what is installed here, retrieval/datasets/packs.py), ``hf:NAME[:SPLIT][#image=COL,caption=COL]``
or the folder of a dataset saved with ``save_to_disk`` (retrieval/datasets/hub.py). Packs and
datasets are written once into the cache as ordinary anchor tables, so every source ends as a
local table the build reads the same way. Several sources are combined (retrieval/build/anchors.py);
a collection records them joined by :data:`SEPARATOR`, and reads them back the same way.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import List, Optional, Sequence, Union

from retrieval.store.cache import default_cache_dir

PACK = "pack:"
SEPARATOR = " + "


def split_sources(sources: Union[str, os.PathLike, Sequence]) -> List[str]:
    """One source or several, as a list: a sequence, or a string of sources joined by SEPARATOR (as
    a manifest records them) that is not itself a path."""
    if isinstance(sources, (list, tuple)):
        return [str(s) for s in sources]
    text = os.fspath(sources) if isinstance(sources, os.PathLike) else str(sources)
    if SEPARATOR in text and not os.path.exists(text):
        return text.split(SEPARATOR)
    return [text]


def local_table(source: str, show_progress_bar: Optional[bool] = None) -> str:
    """The local table or folder ``source`` names, making a pack's or a dataset's table first."""
    from retrieval.datasets import hub

    if source.startswith(PACK):
        from retrieval.datasets.packs import pack_table

        return str(pack_table(source[len(PACK):], Path(default_cache_dir()), show_progress_bar))
    if source.startswith(hub.PREFIX) or hub.is_saved_dataset(source.partition("#")[0]):
        return str(hub.pairs_table(source, Path(default_cache_dir()), show_progress_bar))
    return source
