"""Train the tumour segmentation network on frames from `lumiq simulate-training`.

    python train.py --data data/train --steps 2000 --out runs/tumour-seg-v1

Every tenth frame (index % 10 == 0) is the validation split, never trained on. Random
128 x 128 crops (frames smaller than a crop are zero-padded, as the runtime pads), the 8
flips/rotations, loss = BCE + soft Dice over pixels outside the ignore mask (label pixels
of tumours with true SNR below --ignore-snr, grown by 2 px). Fixed seeds; deterministic
algorithms; two threads. Writes the weights (state_dict) and a JSON of the settings and
losses to --out.
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from common import TumourUNet, ignore_mask, load_frames, seed_everything


def crop_batch(rng, frames, masks, batch, size):
    xs = np.zeros((batch, 1, size, size), np.float32)
    ys = np.zeros((batch, 1, size, size), np.float32)
    ws = np.zeros((batch, 1, size, size), np.float32)
    for b in range(batch):
        i = rng.integers(len(frames))
        x, lab, _ = frames[i]
        tgt, keep = masks[i]
        r, c = x.shape
        # Offsets may run past the edge (zero padding there, weight 0 past the frame).
        r0 = rng.integers(min(0, r - size), max(0, r - size) + 1)
        c0 = rng.integers(min(0, c - size), max(0, c - size) + 1)
        sr0, sc0 = max(r0, 0), max(c0, 0)
        sr1, sc1 = min(r0 + size, r), min(c0 + size, c)
        dr, dc = sr0 - r0, sc0 - c0
        h, w = sr1 - sr0, sc1 - sc0
        xs[b, 0, dr : dr + h, dc : dc + w] = x[sr0:sr1, sc0:sc1]
        ys[b, 0, dr : dr + h, dc : dc + w] = tgt[sr0:sr1, sc0:sc1]
        ws[b, 0, dr : dr + h, dc : dc + w] = keep[sr0:sr1, sc0:sc1]
        k = rng.integers(4)
        flip = rng.integers(2)
        for a in (xs, ys, ws):
            a[b, 0] = np.rot90(a[b, 0], k)
            if flip:
                a[b, 0] = a[b, 0][:, ::-1]
    return torch.from_numpy(xs), torch.from_numpy(ys), torch.from_numpy(ws)


def loss_fn(logits, target, weight):
    bce = F.binary_cross_entropy_with_logits(logits, target, weight=weight, reduction="sum")
    bce = bce / weight.sum().clamp(min=1.0)
    p = torch.sigmoid(logits) * weight
    t = target * weight
    inter = (p * t).sum()
    dice = 1.0 - (2.0 * inter + 1.0) / (p.sum() + t.sum() + 1.0)
    return bce + dice, bce.item(), dice.item()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--crop", type=int, default=128)
    ap.add_argument("--lr", type=float, default=5e-3)
    ap.add_argument("--ignore-snr", type=float, default=2.5)
    ap.add_argument("--seed", type=int, default=20261127)
    ap.add_argument("--widths", type=str, default="4,8,16,32")
    args = ap.parse_args()

    seed_everything(args.seed)
    rng = np.random.default_rng(args.seed)
    frames = load_frames(args.data)
    train = [f for f in frames if f[2]["index"] % 10 != 0]
    masks = []
    for x, lab, info in train:
        keep = ~ignore_mask(lab, info, args.ignore_snr)
        masks.append(((lab > 0).astype(np.float32), keep.astype(np.float32)))
    widths = tuple(int(w) for w in args.widths.split(","))
    model = TumourUNet(widths)
    n_params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=args.lr, total_steps=args.steps, pct_start=0.1
    )
    print(f"{len(train)} training frames, {n_params} parameters, {args.steps} steps", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    log = []
    t0 = time.time()
    model.train()
    run = [0.0, 0.0]
    for step in range(1, args.steps + 1):
        x, y, w = crop_batch(rng, train, masks, args.batch, args.crop)
        logits = model(x)
        loss, bce, dice = loss_fn(logits, y, w)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        run[0] += bce
        run[1] += dice
        if step % 100 == 0:
            entry = {
                "step": step,
                "bce": run[0] / 100,
                "dice": run[1] / 100,
                "elapsed_s": round(time.time() - t0, 1),
            }
            log.append(entry)
            print(json.dumps(entry), flush=True)
            run = [0.0, 0.0]
    elapsed = time.time() - t0
    model.eval()
    torch.save(model.state_dict(), args.out / "weights.pt")
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    (args.out / "training.json").write_text(
        json.dumps(
            {
                "settings": settings,
                "parameters": n_params,
                "training_frames": len(train),
                "train_time_s": round(elapsed, 1),
                "torch": torch.__version__,
                "log": log,
            },
            indent=2,
        )
    )
    print(f"trained in {elapsed:.0f} s -> {args.out}", flush=True)


if __name__ == "__main__":
    main()
