"""The package version, in the bottom layer so that any layer may record it (manifests do)."""

__version__ = "0.1.0"
