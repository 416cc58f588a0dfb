"""Texts to token arrays with the ``tokenizers`` library alone, from a model's ``tokenizer.json``.

Importing transformers to build its tokenizer costs a server about 1.5 s of start-up for what the Rust
library runs as is. A packaged or ``hf:`` text model uses it only where the export that made its
network checked it against transformers' own tokenizer on :data:`PROBES` (:func:`agreeing_settings`),
and that check is kept in the export's record beside the files' hash it was made with.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

INPUTS = ("input_ids", "attention_mask", "token_type_ids")

# Texts on which the two tokenizers must give the same ids: empty, cased, accented, other scripts,
# emoji, punctuation, numbers, spacing, and one past any window so that truncation is compared too.
PROBES = ["", "a red apple", "A Red APPLE!", "Crème brûlée, naïve café", "東京の猫 and Москва", "🍎🚀 emoji",
          "don't-stop... (really?) #1 @home", "3.14159 and 1,000,000", "  spaced   out\ttext\n",
          " ".join(f"word{i} of a long text" for i in range(200))]


def arrays(encodings) -> Dict[str, np.ndarray]:
    """The tokenizers library's encodings of a batch as int64 arrays, by the names models take."""
    made = {"input_ids": [e.ids for e in encodings], "attention_mask": [e.attention_mask for e in encodings],
            "token_type_ids": [e.type_ids for e in encodings]}
    return {k: np.asarray(v, np.int64) for k, v in made.items()}


class RawTokenizer:
    """``tokenizer.json`` set to pad each batch to its longest text and cut texts at ``max_length``
    tokens, as transformers' tokenizer does when called with ``padding=True, truncation=True``."""

    def __init__(self, file: Path, settings: Dict, max_length: int):
        from tokenizers import Tokenizer

        self.tokenizer = Tokenizer.from_file(str(file))
        self.tokenizer.enable_truncation(max_length)
        self.tokenizer.enable_padding(direction=settings["side"], pad_id=settings["pad_id"],
                                      pad_type_id=settings["pad_type_id"], pad_token=settings["pad_token"])

    def __call__(self, texts: Sequence[str]) -> Dict[str, np.ndarray]:
        return arrays(self.tokenizer.encode_batch(list(texts)))


def hf_arrays(hf_tokenizer, texts: Sequence[str], max_length: int) -> Dict[str, np.ndarray]:
    tok = hf_tokenizer(list(texts), padding=True, truncation=True, max_length=max_length, return_tensors="np")
    return {k: np.asarray(tok[k], np.int64) for k in INPUTS if k in tok}


def agreeing_settings(hf_tokenizer, folder: Path, max_length: int, inputs: List[str]) -> Optional[Dict]:
    """The padding settings under which ``folder/tokenizer.json`` gives what ``hf_tokenizer`` gives on
    every batch of :data:`PROBES` (one at a time and all together), for ``inputs``; None if it has no
    such file, no padding token, or differs anywhere."""
    file = Path(folder) / "tokenizer.json"
    if not file.is_file() or hf_tokenizer.pad_token is None:
        return None
    settings = {"side": hf_tokenizer.padding_side, "pad_id": int(hf_tokenizer.pad_token_id),
                "pad_type_id": int(getattr(hf_tokenizer, "pad_token_type_id", 0) or 0),
                "pad_token": str(hf_tokenizer.pad_token)}
    try:
        raw = RawTokenizer(file, settings, max_length)
    except Exception:  # a tokenizer.json this library version cannot read: transformers keeps the job
        return None
    for batch in [PROBES] + [[p] for p in PROBES]:
        want, got = hf_arrays(hf_tokenizer, batch, max_length), raw(batch)
        if any(k not in want or want[k].shape != got[k].shape or (want[k] != got[k]).any() for k in inputs):
            return None
    return settings
