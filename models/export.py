"""Validate a trained network, choose its decision threshold, export it to ONNX and write
the manifest.

    python export.py --run runs/v1 --data data/train --name tumour-seg-v1

1. On the validation split (frames with index % 10 == 0, never trained on), the decision
   threshold is the lowest on a grid whose false positives per frame do not exceed the
   classical detector's on the same frames (the issue's "same false-positive rate").
2. ONNX at opset 17 (TorchScript exporter; BatchNorm folded into the convolutions), input
   "input" [1, 1, H, W] and output "output" [1, 1, H, W] (logits) with H and W declared
   dynamic; checked against torch with onnxruntime at several sizes (max abs difference).
3. models/<name>.onnx, models/manifest.toml (sha256 included) and
   <run>/metrics.json (the numbers the model card quotes).
"""

import argparse
import hashlib
import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch

from common import (
    PAD_MULTIPLE,
    TumourUNet,
    load_frames,
    object_metrics,
    pixel_iou,
    predict_prob,
    seed_everything,
)

OPSET = 17
THRESHOLDS = [round(t, 2) for t in np.arange(0.05, 0.96, 0.05)] + [0.97, 0.98, 0.99]
MODELS_DIR = Path(__file__).resolve().parent


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--name", default="tumour-seg-v1")
    args = ap.parse_args()
    seed_everything(0)

    info = json.loads((args.run / "training.json").read_text())
    widths = tuple(int(w) for w in info["settings"]["widths"].split(","))
    ignore_snr = info["settings"]["ignore_snr"]
    model = TumourUNet(widths)
    model.load_state_dict(torch.load(args.run / "weights.pt"))
    model.eval()

    frames = load_frames(args.data)
    val = [f for f in frames if f[2]["index"] % 10 == 0]
    probs = [predict_prob(model, x) for x, _, _ in val]
    sweep = [object_metrics(val, probs, t) for t in THRESHOLDS]
    classical_fp = sweep[0]["fp_per_frame_classical"]
    ok = [m for m in sweep if m["fp_per_frame_model"] <= classical_fp]
    chosen = ok[0] if ok else sweep[-1]
    threshold = chosen["threshold"]
    iou = pixel_iou(val, probs, threshold, ignore_snr)
    print(json.dumps({"threshold": threshold, "pixel_iou": iou, **chosen}, indent=1))

    onnx_path = MODELS_DIR / f"{args.name}.onnx"
    dummy = torch.zeros(1, 1, 64, 64)
    torch.onnx.export(
        model,
        (dummy,),
        str(onnx_path),
        opset_version=OPSET,
        input_names=["input"],
        output_names=["output"],
        dynamic_axes={"input": {2: "H", 3: "W"}, "output": {2: "H", 3: "W"}},
        do_constant_folding=True,
        dynamo=False,
    )
    m = onnx.load(str(onnx_path))
    onnx.checker.check_model(m)
    ops = sorted({n.op_type for n in m.graph.node})
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    max_diff = 0.0
    for shape in [(64, 64), (128, 256), (256, 256), (512, 512)]:
        x = np.random.default_rng(1).standard_normal((1, 1) + shape).astype(np.float32)
        with torch.no_grad():
            ref = model(torch.from_numpy(x)).numpy()
        out = sess.run(["output"], {"input": x})[0]
        max_diff = max(max_diff, float(np.abs(out - ref).max()))
    sha = hashlib.sha256(onnx_path.read_bytes()).hexdigest()
    size = onnx_path.stat().st_size
    print(f"{onnx_path.name}: {size} bytes, sha256 {sha}, ops {ops}, max |ort - torch| {max_diff:.2e}")

    data_manifest = json.loads((args.data / "manifest.json").read_text())
    metrics = {
        "name": args.name,
        "sha256": sha,
        "bytes": size,
        "opset": OPSET,
        "ops": ops,
        "max_abs_diff_onnxruntime_vs_torch": max_diff,
        "threshold": threshold,
        "validation_frames": len(val),
        "pixel_iou": iou,
        "at_threshold": chosen,
        "sweep": [
            {
                "threshold": s["threshold"],
                "fp_per_frame_model": s["fp_per_frame_model"],
                "completeness": {f"{b['snr'][0]:g}-{b['snr'][1]:g}": round(b["model"], 3) for b in s["completeness"]},
            }
            for s in sweep
        ],
        "training": {k: info[k] for k in ("parameters", "training_frames", "train_time_s", "torch")},
        "training_settings": info["settings"],
        "data": {k: data_manifest[k] for k in ("generator", "profile", "seed", "frames", "tumours")},
    }
    (args.run / "metrics.json").write_text(json.dumps(metrics, indent=2))
    r = data_manifest["ranges"]
    manifest = f"""# The segmentation model lumiq may load. The runtime refuses a file whose sha256
# differs from this one. Written by models/export.py; see models/README.md (the model card).
[model]
name = "{args.name}"
file = "{onnx_path.name}"
sha256 = "{sha}"
opset = {OPSET}
input_name = "input"
output_name = "output"
# Output: logits, [1, 1, H, W]; sigmoid(logit) >= threshold marks tumour pixels.
output_kind = "logits"
threshold = {threshold}
# Input: [1, 1, H, W] f32 on the detector's working grid, asinh(net / sigma); the exact
# definition (and the grid's block size) is src/process/model_input.rs::model_input.
input_definition = "src/process/model_input.rs::model_input"
pad_multiple = {PAD_MULTIPLE}

[training]
generator = "{data_manifest['generator']}"
profile = "{data_manifest['profile']}"
data_seed = {data_manifest['seed']}
frames = {data_manifest['frames']}
validation = "frames with index % 10 == 0"
torch_seed = {info['settings']['seed']}
steps = {info['settings']['steps']}
snr_range = [{r['snr'][0]}, {r['snr'][1]}]
sigma_range_cm = [{r['sigma_cm'][0]}, {r['sigma_cm'][1]}]
ignore_snr_below = {ignore_snr}
"""
    (MODELS_DIR / "manifest.toml").write_text(manifest)
    print("wrote", MODELS_DIR / "manifest.toml")


if __name__ == "__main__":
    main()
