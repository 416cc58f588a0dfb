"""A network the user exported to ONNX: ``onnx:PATH`` for images, texts or sounds.

Users of this engine often own a model of their domain that no hub knows. Exported to ONNX, it runs
here on ONNX Runtime (the CUDA provider on a GPU where onnxruntime-gpu is installed). What the graph
cannot say (how pixels are prepared, where the tokenizer is, the sound's rate) comes from a JSON
object: the model's metadata property ``retrieval``, overridden key by key by a sidecar file
beside it (``model.onnx`` -> ``model.json``); every key has a default, and an unknown key is
refused with the known ones. ONNX files are protobuf graphs, not pickles: nothing in them runs as code.

Outputs: the first (or ``output``, by name or position); a (n, d) output is taken as it is, a
(n, tokens, d) one is pooled over its tokens (``pool``: ``mean``, masked for text, or ``first``) and
a (n, c, h, w) one over its positions.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

import numpy as np

from retrieval.encoders.base import AudioEncoder, ImageEncoder, TextEncoder
from retrieval.errors import InputError
from retrieval.media.audio import MAX_SECONDS, load_audio
from retrieval.media.images import load_rgb

log = logging.getLogger("retrieval.encoders")
METADATA_KEY = "retrieval"
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class OnnxConfig:
    """How to feed an exported network and read its answer; every field has a default."""

    input: Optional[str] = None        # the graph input of pixels / waveform (default: the first)
    output: Union[str, int] = 0        # which output holds the features, by name or position
    pool: str = "mean"                 # of a (n, tokens, d) output: "mean" (masked for text) or "first"
    size: Optional[int] = None         # image side the network takes (default: its input's static shape, else 224)
    resize: Optional[int] = None       # shorter side before the centre crop to size (default: size)
    mean: Tuple[float, ...] = IMAGENET_MEAN   # per channel, on pixels scaled by `scale`
    std: Tuple[float, ...] = IMAGENET_STD
    scale: float = 1 / 255
    channels: str = "RGB"              # or "BGR"
    layout: str = "NCHW"               # or "NHWC"
    tokenizer: Optional[str] = None    # a folder with tokenizer.json (default: the model's folder), relative to it
    max_length: int = 512              # tokens a text is cut to
    sample_rate: int = 16000           # Hz the waveform is resampled to
    max_seconds: float = MAX_SECONDS   # a longer sound is cut

    def __post_init__(self):
        checks = {"pool": self.pool in ("mean", "first"), "channels": self.channels in ("RGB", "BGR"),
                  "layout": self.layout in ("NCHW", "NHWC"), "mean": len(self.mean) == 3,
                  "std": len(self.std) == 3 and all(s > 0 for s in self.std), "max_length": self.max_length > 0,
                  "sample_rate": self.sample_rate > 0, "max_seconds": self.max_seconds > 0,
                  "size": self.size is None or self.size > 0, "resize": self.resize is None or self.resize > 0}
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise InputError(f"expected valid ONNX preprocessing settings, got {', '.join(f'{k}={getattr(self, k)!r}' for k in bad)} "
                             f"(pool: mean/first, channels: RGB/BGR, layout: NCHW/NHWC, three means and positive stds)")

    @classmethod
    def from_json(cls, settings: Dict, where: str) -> "OnnxConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(settings) - known)
        if unknown:
            raise InputError(f"expected ONNX settings among {sorted(known)} in {where}, got unknown {unknown}")
        settings = {k: tuple(v) if k in ("mean", "std") else v for k, v in settings.items()}
        try:
            return cls(**settings)
        except TypeError as exc:
            raise InputError(f"expected ONNX settings of the right types in {where}: {exc}") from exc


def read_config(path: Path, metadata: Dict[str, str]) -> OnnxConfig:
    """The model's own ``retrieval`` metadata, then the sidecar ``PATH.json`` over it, key by key."""
    settings = {}
    for where, text in ((f"the metadata of {str(path)!r}", metadata.get(METADATA_KEY)),
                        (str(path.with_suffix(".json")), _read(path.with_suffix(".json")))):
        if text is None:
            continue
        try:
            got = json.loads(text)
        except ValueError as exc:
            raise InputError(f"expected a JSON object of ONNX settings in {where}: {exc}") from exc
        if not isinstance(got, dict):
            raise InputError(f"expected a JSON object of ONNX settings in {where}, got {type(got).__name__}")
        settings.update(got)
    return OnnxConfig.from_json(settings, f"the settings of {str(path)!r}")


def _read(path: Path) -> Optional[str]:
    return path.read_text(encoding="utf-8") if path.is_file() else None


def open_session(path: Path, device: str):
    """An ONNX Runtime session: on CUDA where asked for and installed (onnxruntime-gpu), else the CPU."""
    import onnxruntime as ort

    providers = ["CPUExecutionProvider"]
    if str(device).startswith("cuda"):
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise InputError(f"expected ONNX Runtime with CUDA for device {device!r}, got providers "
                             f"{ort.get_available_providers()}; pip install onnxruntime-gpu, or use --device cpu")
        providers.insert(0, "CUDAExecutionProvider")
    try:
        return ort.InferenceSession(str(path), providers=providers)
    except Exception as exc:  # onnxruntime raises its own classes for a damaged or unsupported graph
        raise InputError(f"expected an ONNX model ONNX Runtime can run at {str(path)!r}: {exc}") from exc


def pooled(out: np.ndarray, pool: str, mask: Optional[np.ndarray] = None) -> np.ndarray:
    """(n, d) features from an output of rank 2, 3 (tokens) or 4 (channels first, positions)."""
    out = np.asarray(out, np.float32)
    if out.ndim == 2:
        return out
    if out.ndim == 4:
        return out.mean(axis=(2, 3))
    if out.ndim != 3:
        raise InputError(f"expected an ONNX output of rank 2, 3 or 4 to take features from, got shape {out.shape}")
    if pool == "first":
        return out[:, 0]
    if mask is None:
        return out.mean(axis=1)
    m = mask[:, :, None].astype(np.float32)
    return (out * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1.0)


class _OnnxFile:
    """The session, settings and width shared by the three modalities' classes below."""

    def _setup(self, path, *, name: str, device: str):
        self.path = Path(path).expanduser().resolve()
        if not self.path.is_file():
            raise InputError(f"expected an ONNX model file at {str(path)!r}, found none")
        self.session = open_session(self.path, device)
        self.config = read_config(self.path, self.session.get_modelmeta().custom_metadata_map)
        self.inputs = {i.name: i for i in self.session.get_inputs()}
        self.name, self.device = f"onnx:{self.path}", device  # absolute: the manifest finds it from anywhere
        self._ready()
        self.fingerprint = self._fingerprint()
        self.dim = 0
        self.dim = int(self._encode_batch(self._prepare(self._probe())).shape[1])

    def _ready(self) -> None:
        """What a modality needs beyond the session and settings (the text side's tokenizer)."""

    def _files(self) -> List[Path]:
        """The files besides the model whose content decides its vectors (the text side's tokenizer)."""
        return []

    def _fingerprint(self) -> str:
        """SHA-256 of the model's bytes, its settings and the files beside it that it reads."""
        from retrieval.store.arrow import sha256_file

        parts = [sha256_file(str(self.path)), json.dumps(dataclasses.asdict(self.config), sort_keys=True, default=str)]
        parts += [sha256_file(str(f)) for f in self._files()]
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()

    def _output(self, feeds: Dict[str, np.ndarray]) -> np.ndarray:
        names = [o.name for o in self.session.get_outputs()]
        want = self.config.output
        if isinstance(want, str) and want not in names or isinstance(want, int) and not 0 <= want < len(names):
            raise InputError(f"expected the output {want!r} among {names} of {str(self.path)!r}")
        return self.session.run([want if isinstance(want, str) else names[want]], feeds)[0]

    def _main_input(self) -> str:
        want = self.config.input or next(iter(self.inputs))
        if want not in self.inputs:
            raise InputError(f"expected the input {want!r} among {list(self.inputs)} of {str(self.path)!r}")
        return want


class OnnxImageEncoder(_OnnxFile, ImageEncoder):
    def __init__(self, path, *, name: str = "", device: str = "cpu"):
        self._setup(path, name=name, device=device)

    def _probe(self):
        from PIL import Image

        return [Image.new("RGB", (8, 8), (128, 128, 128))]

    def _side(self) -> int:
        if self.config.size:
            return self.config.size
        shape = self.inputs[self._main_input()].shape
        static = [d for d in (shape[2:4] if self.config.layout == "NCHW" else shape[1:3]) if isinstance(d, int)]
        return static[0] if static else 224

    def _prepare(self, batch: List) -> np.ndarray:
        return np.stack([self._pixels(load_rgb(x)) for x in batch])

    def _pixels(self, img) -> np.ndarray:
        from PIL import Image

        c, side = self.config, self._side()
        short = c.resize or side
        w, h = img.size
        img = img.resize((max(side, round(w * short / min(w, h))), max(side, round(h * short / min(w, h)))),
                         Image.BICUBIC)
        left, top = (img.size[0] - side) // 2, (img.size[1] - side) // 2
        x = np.asarray(img.crop((left, top, left + side, top + side)), np.float32) * c.scale
        x = (x - np.asarray(c.mean, np.float32)) / np.asarray(c.std, np.float32)
        if c.channels == "BGR":
            x = x[:, :, ::-1]
        return np.ascontiguousarray(x.transpose(2, 0, 1) if c.layout == "NCHW" else x)

    def _encode_batch(self, batch: np.ndarray) -> np.ndarray:
        return pooled(self._output({self._main_input(): batch.astype(np.float32)}), self.config.pool)


class OnnxTextEncoder(_OnnxFile, TextEncoder):
    """Texts tokenised by the ``tokenizers`` library from the folder's ``tokenizer.json``; the graph
    gets the inputs it names among input_ids, attention_mask and token_type_ids."""

    def __init__(self, path, *, name: str = "", device: str = "cpu"):
        self._setup(path, name=name, device=device)

    def _ready(self) -> None:
        from tokenizers import Tokenizer

        folder = self.path.parent / self.config.tokenizer if self.config.tokenizer else self.path.parent
        file = folder / "tokenizer.json"
        if not file.is_file():
            raise InputError(f"expected a tokenizer.json beside the text model {str(self.path)!r} (or in the folder "
                             f"named by its 'tokenizer' setting), found none at {str(file)!r}")
        self.tokenizer, self.tokenizer_file = Tokenizer.from_file(str(file)), file
        self.tokenizer.enable_truncation(self.config.max_length)
        self.tokenizer.enable_padding()

    def _files(self) -> List[Path]:
        return [self.tokenizer_file]

    def _probe(self):
        return ["a"]

    def _prepare(self, batch: List[str]) -> Dict[str, np.ndarray]:
        from retrieval.encoders.tokens import arrays

        return arrays(self.tokenizer.encode_batch(list(batch)))

    def _encode_batch(self, batch: Dict[str, np.ndarray]) -> np.ndarray:
        unknown = [k for k in self.inputs if k not in batch]
        if unknown:
            raise InputError(f"expected a text model with inputs among {sorted(batch)}, got {list(self.inputs)} "
                             f"in {str(self.path)!r}")
        feeds = {k: batch[k].astype(np.int32) if "int32" in self.inputs[k].type else batch[k] for k in self.inputs}
        return pooled(self._output(feeds), self.config.pool, batch["attention_mask"])


class OnnxAudioEncoder(_OnnxFile, AudioEncoder):
    """Each sound fed alone as a (1, samples) waveform at ``sample_rate``: padding a batch to one
    length would change what a network that pools over time sees."""

    def __init__(self, path, *, name: str = "", device: str = "cpu"):
        self._setup(path, name=name, device=device)

    def _probe(self):
        return [np.zeros(self.config.sample_rate, np.float32)]

    def _prepare(self, batch: List) -> List[np.ndarray]:
        c = self.config
        return [x if isinstance(x, np.ndarray) else load_audio(x, c.sample_rate, c.max_seconds) for x in batch]

    def _encode_batch(self, batch: List[np.ndarray]) -> np.ndarray:
        name = self._main_input()
        return np.concatenate([pooled(self._output({name: w[None, :].astype(np.float32)}), self.config.pool)
                               for w in batch])


ONNX_ENCODERS = {"image": OnnxImageEncoder, "text": OnnxTextEncoder, "audio": OnnxAudioEncoder}
