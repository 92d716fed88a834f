"""Time onnxruntime on the segmentation model, the same way benches/segment.rs times tract:
one inference on a [1, 1, N, N] input, after a warm-up, best and median of several runs.

    python ort_bench.py MODEL.onnx --sizes 512 1024 --runs 30 --threads 2

Prints one JSON object: {"threads": T, "results": {"512": {"median_s": ..., "min_s": ...}}}.
"""
import argparse
import json
import time

import numpy as np
import onnxruntime as ort


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--sizes", type=int, nargs="+", default=[512, 1024])
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--threads", type=int, default=0, help="intra-op threads (0: onnxruntime's default)")
    a = ap.parse_args()
    so = ort.SessionOptions()
    so.intra_op_num_threads = a.threads
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(a.model, so, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    rng = np.random.default_rng(1)
    out = {"threads": a.threads, "onnxruntime": ort.__version__, "results": {}}
    for n in a.sizes:
        x = rng.uniform(-1.0, 1.0, size=(1, 1, n, n)).astype(np.float32)
        for _ in range(3):
            sess.run(None, {name: x})
        times = []
        for _ in range(a.runs):
            t0 = time.perf_counter()
            sess.run(None, {name: x})
            times.append(time.perf_counter() - t0)
        out["results"][str(n)] = {"median_s": float(np.median(times)), "min_s": float(min(times))}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
