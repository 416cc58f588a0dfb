"""Building collections: BuildOptions and the defaults, anchor sets and their cache, the build itself,
add / delete, reanchor (new anchors) and reencode (a new encoder). Imports the layers below, never the facade."""
