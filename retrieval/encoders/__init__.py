"""Unimodal encoders behind one contract; see :mod:`retrieval.encoders.base`."""

from retrieval.encoders.base import AudioEncoder, Encoder, ImageEncoder, TextEncoder, l2_normalise
from retrieval.encoders.registry import (
                                         DEFAULT_ENCODERS,
                                         ENTRY_POINT_GROUP,
                                         REGISTRY,
                                         Backend,
                                         check_as_built,
                                         encoder_meta,
                                         load_encoder,
                                         load_encoder_as_built,
                                         parse_spec,
)

__all__ = ["AudioEncoder", "Encoder", "ImageEncoder", "TextEncoder", "l2_normalise", "DEFAULT_ENCODERS", "REGISTRY",
           "Backend", "ENTRY_POINT_GROUP",
           "check_as_built", "encoder_meta", "load_encoder", "load_encoder_as_built", "parse_spec"]
