"""Shared by train.py, export.py and evaluate.py: the network, data loading, the target
and ignore masks, and the object-level matching used for the model card's metrics.

The network's input is defined in src/process/model_input.rs (asinh of the per-pixel
significance on the detector's working grid); frames come from
`lumiq simulate-training` (see src/simulate/training.rs for the file layout).
"""

import json
import os
import random
from pathlib import Path

import numpy as np
import torch
from torch import nn

# Height and width of the network's input must be multiples of this
# (model_input::PAD_MULTIPLE).
PAD_MULTIPLE = 16


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(2)
    os.environ.setdefault("PYTHONHASHSEED", str(seed))


def conv_bn(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class TumourUNet(nn.Module):
    """A small U-Net: three 2x poolings (input sides multiples of 8; the runtime pads to
    16), ConvTranspose upsampling (no bilinear Resize), concatenated skips, one logit
    per pixel."""

    def __init__(self, widths=(4, 8, 16, 32)):
        super().__init__()
        c1, c2, c3, c4 = widths
        self.enc1 = nn.Sequential(conv_bn(1, c1), conv_bn(c1, c1))
        self.enc2 = nn.Sequential(conv_bn(c1, c2), conv_bn(c2, c2))
        self.enc3 = nn.Sequential(conv_bn(c2, c3), conv_bn(c3, c3))
        self.bottom = nn.Sequential(conv_bn(c3, c4), conv_bn(c4, c4))
        self.pool = nn.MaxPool2d(2)
        self.up3 = nn.ConvTranspose2d(c4, c3, 2, stride=2)
        self.dec3 = conv_bn(2 * c3, c3)
        self.up2 = nn.ConvTranspose2d(c3, c2, 2, stride=2)
        self.dec2 = conv_bn(2 * c2, c2)
        self.up1 = nn.ConvTranspose2d(c2, c1, 2, stride=2)
        self.dec1 = conv_bn(2 * c1, c1)
        self.head = nn.Conv2d(c1, 1, 1)

    def forward(self, x):
        e1 = self.enc1(x)
        e2 = self.enc2(self.pool(e1))
        e3 = self.enc3(self.pool(e2))
        b = self.bottom(self.pool(e3))
        d3 = self.dec3(torch.cat([self.up3(b), e3], dim=1))
        d2 = self.dec2(torch.cat([self.up2(d3), e2], dim=1))
        d1 = self.dec1(torch.cat([self.up1(d2), e1], dim=1))
        return self.head(d1)


def load_frames(data_dir: Path):
    """Every frame of a generated set: (input f32, labels u8, info dict), index order."""
    frames = []
    for j in sorted((data_dir / "frames").glob("*.json")):
        stem = str(j)[: -len(".json")]
        x = np.load(stem + ".input.npy")
        lab = np.load(stem + ".labels.npy")
        info = json.loads(j.read_text())
        assert x.shape == lab.shape == (info["rows"], info["cols"]), j
        frames.append((x, lab, info))
    if not frames:
        raise SystemExit(
            f"no frames in {data_dir}/frames: run `lumiq simulate-training --out {data_dir}` first"
        )
    return frames


def ignore_mask(lab: np.ndarray, info: dict, ignore_snr: float, grow_px: int = 2) -> np.ndarray:
    """Pixels around tumours whose true SNR is below `ignore_snr` (too faint for any
    method): their label pixels grown by `grow_px`. The loss leaves them out."""
    ign = np.zeros(lab.shape, dtype=bool)
    for t in info["tumours"]:
        if t["snr"] < ignore_snr:
            ign |= lab == t["label"]
    if grow_px > 0 and ign.any():
        g = ign.copy()
        for dy in range(-grow_px, grow_px + 1):
            for dx in range(-grow_px, grow_px + 1):
                g |= np.roll(np.roll(ign, dy, axis=0), dx, axis=1)
        ign = g
    return ign


def pad_to_multiple(x: np.ndarray, multiple: int = PAD_MULTIPLE) -> np.ndarray:
    r, c = x.shape
    rr = -(-r // multiple) * multiple
    cc = -(-c // multiple) * multiple
    out = np.zeros((rr, cc), dtype=x.dtype)
    out[:r, :c] = x
    return out


def predict_prob(model: nn.Module, x: np.ndarray) -> np.ndarray:
    """Tumour probability on a frame of any size (padded, then cropped back)."""
    r, c = x.shape
    xp = pad_to_multiple(x.astype(np.float32))
    with torch.no_grad():
        logit = model(torch.from_numpy(xp)[None, None])[0, 0].numpy()
    return 1.0 / (1.0 + np.exp(-logit[:r, :c]))


def label_components(mask: np.ndarray):
    from scipy import ndimage

    return ndimage.label(mask, structure=np.ones((3, 3), dtype=int))


def match(pred_mask: np.ndarray, info: dict):
    """A predicted component finds the brightest tumour whose centre pixel it covers; a
    component that finds none is a false positive (the rule of
    simulate::training::match_regions and `lumiq eval`, on the working grid)."""
    comps, n = label_components(pred_mask)
    tumours = info["tumours"]
    rows, cols = pred_mask.shape
    credited = {}
    for i, t in enumerate(tumours):
        c, r = (int(np.floor(v)) for v in t["centre_work_px"])
        if 0 <= r < rows and 0 <= c < cols and comps[r, c] > 0:
            k = comps[r, c]
            if k not in credited or t["total_flux"] > tumours[credited[k]]["total_flux"]:
                credited[k] = i
    found = np.zeros(len(tumours), dtype=bool)
    for i in credited.values():
        found[i] = True
    return found, int(n - len(credited))


SNR_BINS = [(1.0, 2.0), (2.0, 3.0), (3.0, 5.0), (5.0, 10.0), (10.0, 20.0), (20.0, 100.0), (100.0, 1e9)]


def object_metrics(frames, probs, threshold: float):
    """Completeness per true-SNR bin and false positives per frame, for the model at
    `threshold` and for the classical detector (from the frames' JSON)."""
    rows = []
    fp_model = 0
    fp_classical = 0
    for (x, lab, info), p in zip(frames, probs):
        found, fp = match(p > threshold, info)
        fp_model += fp
        fp_classical += info["classical_false_positives"]
        for t, f in zip(info["tumours"], found):
            rows.append((t["snr"], bool(f), bool(t["classical_found"])))
    bins = []
    for lo, hi in SNR_BINS:
        sel = [(m, c) for s, m, c in rows if lo <= s < hi]
        if sel:
            bins.append(
                {
                    "snr": [lo, hi],
                    "tumours": len(sel),
                    "model": sum(m for m, _ in sel) / len(sel),
                    "classical": sum(c for _, c in sel) / len(sel),
                }
            )
    return {
        "threshold": threshold,
        "frames": len(frames),
        "fp_per_frame_model": fp_model / len(frames),
        "fp_per_frame_classical": fp_classical / len(frames),
        "completeness": bins,
    }


def pixel_iou(frames, probs, threshold: float, ignore_snr: float) -> float:
    inter = 0
    union = 0
    for (x, lab, info), p in zip(frames, probs):
        keep = ~ignore_mask(lab, info, ignore_snr)
        pred = (p > threshold) & keep
        true = (lab > 0) & keep
        inter += int((pred & true).sum())
        union += int((pred | true).sum())
    return inter / max(union, 1)
