"""Object-level metrics of the exported ONNX model (run with onnxruntime, as a runtime
would) on any generated set, at the manifest's threshold, beside the classical detector's
results recorded in the same frames' JSON.

    python evaluate.py --data data/heldout [--all]

Without --all only the validation split (index % 10 == 0) is used; held-out sets
(`--profile heldout`, another seed) are never trained on, so use --all for them. This is
the model card's quick check; `lumiq eval` is the full evaluation (flux error, boundary
IoU, the combined detector).
"""

import argparse
import json
import tomllib
from pathlib import Path

import numpy as np
import onnxruntime as ort

from common import load_frames, object_metrics, pad_to_multiple

MODELS_DIR = Path(__file__).resolve().parent


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--all", action="store_true")
    ap.add_argument("--threshold", type=float, default=None)
    args = ap.parse_args()
    manifest = tomllib.loads((MODELS_DIR / "manifest.toml").read_text())["model"]
    threshold = args.threshold if args.threshold is not None else manifest["threshold"]
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    sess = ort.InferenceSession(str(MODELS_DIR / manifest["file"]), opts, providers=["CPUExecutionProvider"])
    frames = load_frames(args.data)
    if not args.all:
        frames = [f for f in frames if f[2]["index"] % 10 == 0]
    probs = []
    for x, _, _ in frames:
        r, c = x.shape
        logit = sess.run(["output"], {"input": pad_to_multiple(x)[None, None]})[0][0, 0, :r, :c]
        probs.append(1.0 / (1.0 + np.exp(-logit)))
    m = object_metrics(frames, probs, threshold)
    m["model"] = manifest["name"]
    m["sha256"] = manifest["sha256"]
    m["data"] = str(args.data)
    print(json.dumps(m, indent=1))


if __name__ == "__main__":
    main()
