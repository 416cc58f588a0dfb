"""The on-disk format: manifests and atomic writes, the one reader of a collection, the sharded
format, bridge files, Arrow helpers, the cache location and metadata filters."""
