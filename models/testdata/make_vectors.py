"""Write the onnxruntime reference vector that tests/segment.rs compares tract against.

    python models/testdata/make_vectors.py [models/tumour-seg-v1.onnx]

Run it (with benches/segment/requirements.txt installed) whenever the model file changes.
Writes, beside this script:
  vector_input.f32     the model input, [1, 1, 64, 96] little-endian float32 (row-major):
                       asinh of unit-noise significance with five Gaussian spots of peak
                       significance 3 to 60, two of them touching (fixed seed 20261127);
  vector_output.f32    onnxruntime's output for it, same shape, float32 (the logits);
  vector.json          shape, the model file's sha256 and the onnxruntime version.
"""
import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort

HERE = Path(__file__).resolve().parent
ROWS, COLS = 64, 96


def main() -> None:
    model = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE.parent / "tumour-seg-v1.onnx"
    rng = np.random.default_rng(20261127)
    z = rng.standard_normal((ROWS, COLS))
    yy, xx = np.mgrid[0:ROWS, 0:COLS] + 0.5
    for cy, cx, sigma, peak in [(16, 20, 1.5, 60.0), (18, 24, 1.5, 30.0), (44, 70, 2.5, 8.0),
                                (50, 30, 1.2, 4.0), (10, 85, 3.0, 3.0)]:
        z += peak * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma**2))
    x = np.arcsinh(z).astype(np.float32).reshape(1, 1, ROWS, COLS)
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(model), so, providers=["CPUExecutionProvider"])
    y = sess.run(None, {sess.get_inputs()[0].name: x})[0].astype(np.float32)
    assert y.shape == (1, 1, ROWS, COLS), y.shape
    x.astype("<f4").tofile(HERE / "vector_input.f32")
    y.astype("<f4").tofile(HERE / "vector_output.f32")
    meta = {"shape": [1, 1, ROWS, COLS], "model_file": model.name,
            "model_sha256": hashlib.sha256(model.read_bytes()).hexdigest(),
            "onnxruntime": ort.__version__, "output": "logits"}
    (HERE / "vector.json").write_text(json.dumps(meta, indent=2) + "\n")
    print(json.dumps(meta))


if __name__ == "__main__":
    main()
