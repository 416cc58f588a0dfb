"""Cross-modal retrieval with encoders that were never trained together.

>>> from retrieval import Collection, build_collection
>>> build_collection("corpus/", "anchors.parquet", "indexes/demo")           # doctest: +SKIP
>>> Collection.open("indexes/demo").search("an emoji of a red apple", k=5)  # doctest: +SKIP
"""

__version__ = "0.1.0"

from retrieval.api.collection import Collection, Hit  # noqa: E402
from retrieval.build.builder import build_collection  # noqa: E402
from retrieval.errors import CollectionFormatError, InputError, RetrievalError, UnknownNameError  # noqa: E402

__all__ = ["Collection", "Hit", "build_collection", "RetrievalError", "InputError", "UnknownNameError",
           "CollectionFormatError", "__version__"]
