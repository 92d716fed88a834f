#!/usr/bin/env bash
# tract vs onnxruntime on the same segmentation model, same machine, same run.
#
#   bash benches/segment/run.sh
#
# Steps: creates benches/segment/.venv with the pinned onnxruntime (requirements.txt), runs
# `cargo bench --bench segment` (tract, one inference at 512² and 1024², the plan built
# before timing), then ort_bench.py on the same model file with onnxruntime's default
# threads and with one thread, and prints median times side by side with the ratio.
# Environment: LUMIQ_MODEL (default models/tumour-seg-v1.onnx), PYTHON (default python3).
# A benchmark, not a test: it never fails on the numbers. Results: BENCHMARKS.md.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
VENV="$HERE/.venv"
PYTHON=${PYTHON:-python3}
MODEL=${LUMIQ_MODEL:-$ROOT/models/tumour-seg-v1.onnx}
[[ -f "$MODEL" ]] || { echo "run.sh: error: $MODEL not found (set LUMIQ_MODEL)" >&2; exit 1; }

req_sum=$(sha256sum "$HERE/requirements.txt" | cut -d' ' -f1)
if [[ ! -x "$VENV/bin/python" || "$(cat "$VENV/.requirements.sha256" 2>/dev/null)" != "$req_sum" ]]; then
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet -r "$HERE/requirements.txt"
    echo "$req_sum" >"$VENV/.requirements.sha256"
fi
PY="$VENV/bin/python"

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
(cd "$ROOT" && LUMIQ_MODEL="$MODEL" cargo bench --quiet --bench segment -- segment/ >&2)
TARGET_DIR=$(cd "$ROOT" && cargo metadata --format-version 1 --no-deps \
    | "$PY" -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
ORT_DEFAULT=$("$PY" "$HERE/ort_bench.py" "$MODEL" --sizes 512 1024 --threads 0)
ORT_ONE=$("$PY" "$HERE/ort_bench.py" "$MODEL" --sizes 512 1024 --threads 1)
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

"$PY" - "$TARGET_DIR/criterion/segment" "$ORT_DEFAULT" "$ORT_ONE" "$MODEL" "$LOAD_BEFORE" "$LOAD_AFTER" <<'PYEOF'
import json, os, sys
from pathlib import Path
crit, ort_def, ort_one = Path(sys.argv[1]), json.loads(sys.argv[2]), json.loads(sys.argv[3])
model, load_before, load_after = sys.argv[4], sys.argv[5], sys.argv[6]
def tract_median(name):
    est = json.loads((crit / name / "new" / "estimates.json").read_text())
    return est["median"]["point_estimate"] / 1e9
print(f"model {model} ({os.path.getsize(model)} bytes); {os.cpu_count()} cpus; "
      f"load average {load_before} before, {load_after} after; onnxruntime {ort_def['onnxruntime']}")
print("median time of one inference, ms (threads: all cores / one)")
print(f"{'input':<8}{'tract':>9}{'ort':>9}{'ratio':>8}{'tract 1t':>10}{'ort 1t':>9}{'ratio':>8}  goal")
for n in ("512", "1024"):
    t, t1 = tract_median(f"tract_{n}"), tract_median(f"tract_{n}_1thread")
    o = ort_def["results"][n]["median_s"]
    o1 = ort_one["results"][n]["median_s"]
    best_t, best_o = min(t, t1), min(o, o1)
    ratio = best_t / best_o
    goal = "best tract <= 1.2x best ort" + (" and <= 50 ms" if n == "512" else "")
    met = ratio <= 1.2 and (n != "512" or best_t <= 0.050)
    print(f"{n + '²':<8}{t * 1e3:>9.1f}{o * 1e3:>9.1f}{t / o:>7.2f}x{t1 * 1e3:>10.1f}{o1 * 1e3:>9.1f}{t1 / o1:>7.2f}x"
          f"  {goal}: {ratio:.2f}x, {best_t * 1e3:.1f} ms: {'met' if met else 'MISSED'}")
PYEOF
