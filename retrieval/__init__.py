"""Cross-modal retrieval with encoders that were never trained together.

>>> from retrieval import Collection, build_collection
>>> build_collection("corpus/", "anchors.parquet", "indexes/demo")           # doctest: +SKIP
>>> Collection.open("indexes/demo").search("an emoji of a red apple", k=5)  # doctest: +SKIP
"""

from retrieval.api import BuildOptions, Collection, Hit, ShardedCollection, build_collection, open_collection
from retrieval.errors import CollectionFormatError, InputError, RetrievalError, UnknownNameError
from retrieval.version import __version__

__all__ = ["Collection", "ShardedCollection", "Hit", "open_collection", "build_collection", "BuildOptions",
           "RetrievalError", "InputError", "UnknownNameError", "CollectionFormatError", "__version__"]
