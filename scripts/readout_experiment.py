"""Experiment: other readouts of the same frozen EfficientNet-Lite0 (max pooling, GeM, flip
averaging, grayscale input) for Noto-only anchors, each configured by the same seen+unseen 4-fold
validation as the engine default. Run after `retrieval eval --suite emoji-xstyle` (it reuses that
suite's cached emoji data):  .venv/bin/python scripts/readout_experiment.py
Output: results/experiments/readout.md."""
import os

import numpy as np
import pyarrow.parquet as pq
import torch

from retrieval.encoders import load_encoder
from retrieval.encoders.image import center_square
from retrieval.evaluation import methods as M
from retrieval.evaluation.data import data_dir, load_emoji
from retrieval.evaluation.harness import TEMPLATES, EmojiTask, choose, emoji_splits
from retrieval.media.images import load_rgb

enc = load_encoder("efficientnet-lite0","image")
d = str(data_dir("emoji"))
a = pq.read_table(d+"/anchors.parquet").to_pylist()
c = pq.read_table(d+"/corpus.parquet").to_pylist()
styles = {"noto":[os.path.join(d,r["image"]) for r in a], "twemoji":[r["image"] for r in c]}
feats = {}
for style, paths in styles.items():
    acc = {k: [] for k in ("avg","max","gem","flip","gray")}
    for i in range(0, len(paths), 64):
        imgs = [center_square(load_rgb(p),224) for p in paths[i:i+64]]
        arr = np.stack([np.asarray(im,np.float32) for im in imgs])
        gray = np.stack([np.asarray(im.convert("L").convert("RGB"),np.float32) for im in imgs])
        def fmap(x):
            with torch.inference_mode():
                return enc.model.extract_features(torch.from_numpy((x-127)/128).permute(0,3,1,2))
        f = fmap(arr)
        ff = fmap(arr[:, :, ::-1].copy())
        fg = fmap(gray)
        acc["avg"].append(f.mean((2,3)).numpy())
        acc["max"].append(f.amax((2,3)).numpy())
        acc["gem"].append(f.clamp(min=1e-6).pow(3).mean((2,3)).pow(1/3).numpy())
        acc["flip"].append(((f.mean((2,3))+ff.mean((2,3)))/2).numpy())
        acc["gray"].append(fg.mean((2,3)).numpy())
    feats[style] = {k: np.vstack(v) for k, v in acc.items()}
    print(style, "done", flush=True)
data = load_emoji(enc, load_encoder("minilm","text"), list(TEMPLATES))
s = emoji_splits(data.names)
for ro in ("avg","max","gem","flip","gray"):
    data.images["noto"], data.images["twemoji"] = feats["noto"][ro], feats["twemoji"][ro]
    val = [EmojiTask(data, a_, q_) for a_, q_ in s["folds"]] + [EmojiTask(data, s["anchor"], q_) for _, q_ in s["folds"]]
    best, m = choose(val, center="both")
    tu = EmojiTask(data, s["anchor"], s["query"]).evaluate(M.asif, **best)
    ts = EmojiTask(data, s["all"], s["query"]).evaluate(M.asif, **best)
    print(ro, best, "val", round(m["R@10"],3), "test unseen R@1/R@10", round(tu["R@1"],3), round(tu["R@10"],3), "seen", round(ts["R@1"],3), round(ts["R@10"],3), flush=True)
