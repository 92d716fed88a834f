#!/usr/bin/env bash
# lumiq vs the Python peer stack, end to end, on the same 2048x2048 frame in the same run.
#
#   bash benches/peer/run.sh
#
# Steps:
#   1. creates benches/peer/.venv (if missing or if requirements.txt changed) and installs
#      the pinned peer stack from benches/peer/requirements.txt;
#   2. builds lumiq in release;
#   3. simulates a 2048x2048 acquisition (binning 1, 60 s) and raw calibration frames
#      (binning 1), and builds the calibration set with `lumiq calibrate
#      --simulated-instrument` -- or, where that command is not available, with
#      make_calibration_set.py (medians of the same raw frames); both sides then use the
#      same bias/dark/flat masters, sensor facts and radiance coefficient;
#   4. times `lumiq process` (wall clock, best of $LUMIQ_RUNS, hyperfine when installed) and
#      peer_stack.py (wall clock, best of $PEER_RUNS) on the same folder;
#   5. prints a table of the stages and the end-to-end ratio, and writes summary.json.
#
# Environment: LUMIQ_BENCH_WORK (scratch folder, default benches/peer/.work, wiped at the
# start), LUMIQ_RUNS (default 5), PEER_RUNS (default 3), PYTHON (default python3, >= 3.11).
# Results: BENCHMARKS.md. A benchmark, not a test: it never fails on the numbers.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
VENV="$HERE/.venv"
WORK=${LUMIQ_BENCH_WORK:-$HERE/.work}
LUMIQ_RUNS=${LUMIQ_RUNS:-5}
PEER_RUNS=${PEER_RUNS:-3}
PYTHON=${PYTHON:-python3}
GOAL_RATIO=40

# The simulated scene: SceneSpec's default tumour fluxes (benches/quantify.rs uses the same
# seed and fluxes, so the criterion benchmark and this script see the same luminescent frame).
SEED=1
FLUX=(2e6 2e8)
# The simulated instrument (src/simulate/instrument.rs) -- used only by the fallback that
# builds the calibration set without `lumiq calibrate`.
GAIN=1.5 READ_NOISE=5.0 SATURATION=65000 COEFFICIENT=7.223e5

step() { printf '\n== %s\n' "$*" >&2; }
die() { printf 'run.sh: error: %s\n' "$*" >&2; exit 1; }
now() { date +%s.%N; }

# ---------------------------------------------------------------------------------------
step "1/5 Python peer stack in $VENV"
command -v "$PYTHON" >/dev/null || die "$PYTHON not found: install Python >= 3.11 or set PYTHON"
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || die "$PYTHON is $("$PYTHON" -V 2>&1); the pinned stack needs Python >= 3.11 (set PYTHON)"
req_sum=$(sha256sum "$HERE/requirements.txt" | cut -d' ' -f1)
if [[ ! -x "$VENV/bin/python" || "$(cat "$VENV/.requirements.sha256" 2>/dev/null)" != "$req_sum" ]]; then
    "$PYTHON" -m venv "$VENV" || die "cannot create a venv (on Debian: apt-get install python3-venv)"
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
    "$VENV/bin/python" -m pip install --quiet -r "$HERE/requirements.txt"
    echo "$req_sum" >"$VENV/.requirements.sha256"
else
    echo "up to date (requirements.txt unchanged)" >&2
fi
PY="$VENV/bin/python"

# ---------------------------------------------------------------------------------------
step "2/5 cargo build --release"
(cd "$ROOT" && cargo build --release --quiet --bin lumiq)
TARGET_DIR=$(cd "$ROOT" && cargo metadata --format-version 1 --no-deps \
    | "$PY" -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
LUMIQ="$TARGET_DIR/release/lumiq"
[[ -x "$LUMIQ" ]] || die "$LUMIQ was not built"

# ---------------------------------------------------------------------------------------
step "3/5 simulate a 2048x2048 acquisition and its calibration in $WORK"
rm -rf "$WORK"
mkdir -p "$WORK"
ACQ="$WORK/acquisition"
CALRAW="$WORK/calibration-frames"
CALSET="$WORK/calibration-set"
"$LUMIQ" simulate --out "$ACQ" --binning 1 --exposure-s 60 --seed "$SEED" --flux "${FLUX[@]}"
"$LUMIQ" simulate --out "$CALRAW" --calibration-frames --binnings 1 \
    || die "\`lumiq simulate --calibration-frames\` failed: the raw bias/dark/flat frames are needed"
CAL_SOURCE="lumiq calibrate --simulated-instrument"
if ! "$LUMIQ" calibrate --simulated-instrument --out "$CALSET" "$CALRAW" \
    || ! "$LUMIQ" process "$ACQ" --calibration "$CALSET" --compact >/dev/null; then
    echo "lumiq calibrate is not usable here: building the set with make_calibration_set.py" >&2
    CAL_SOURCE="make_calibration_set.py (medians of the same raw frames)"
    rm -rf "$CALSET"
    "$PY" "$HERE/make_calibration_set.py" "$CALRAW" --out "$CALSET" --binning 1 \
        --gain "$GAIN" --read-noise "$READ_NOISE" --saturation "$SATURATION" \
        --coefficient "$COEFFICIENT"
    "$LUMIQ" process "$ACQ" --calibration "$CALSET" --compact >/dev/null \
        || die "lumiq process refuses the fallback calibration set in $CALSET"
fi
# The binning-1 masters and the sensor facts the set gives lumiq, for the peer stack.
eval "$("$PY" - "$CALSET" "$ACQ" <<'EOF'
import json, shlex, sys, tomllib
from pathlib import Path
cal, acq = Path(sys.argv[1]), Path(sys.argv[2])
idx = tomllib.loads((cal / "calibration.toml").read_text())
m = json.loads((acq / "acquisition.json").read_text())
b = m["binning"]
pick = lambda kind: [e for e in idx.get(kind, []) if e["binning"] == b]
dark = min(pick("dark"), key=lambda e: (abs(e["sensor_temp_c"] - m["sensor_temp_c"]),
                                       abs(e["exposure_s"] - m["exposure_s"])))
flat = [e for e in pick("flat") if abs(e["fov_cm"] - m["fov_cm"]) <= 0.05
        and abs(e["f_number"] - m["f_number"]) <= 0.01][0]
coef = [c for c in idx.get("coefficient", []) if abs(c["fov_cm"] - m["fov_cm"]) <= 0.05
        and abs(c["f_number"] - m["f_number"]) <= 0.01]
s = idx["sensor"]
out = {"BIAS": cal / pick("bias")[0]["file"], "DARK": cal / dark["file"],
       "DARK_EXPOSURE": dark["exposure_s"], "FLAT": cal / flat["file"],
       "SET_GAIN": s["gain_e_per_adu"], "SET_READ_NOISE": s["read_noise_e"],
       "SET_SATURATION": s["saturation_adu"], "SET_COEFFICIENT": coef[0]["c"] if coef else ""}
for k, v in out.items():
    print(f"{k}={shlex.quote(str(v))}")
EOF
)"
PEER_ARGS=("$ACQ" --bias "$BIAS" --dark "$DARK" --dark-exposure "$DARK_EXPOSURE" --flat "$FLAT"
           --gain "$SET_GAIN" --read-noise "$SET_READ_NOISE" --saturation "$SET_SATURATION")
[[ -n "$SET_COEFFICIENT" ]] && PEER_ARGS+=(--coefficient "$SET_COEFFICIENT")
LUMIQ_CMD=("$LUMIQ" process "$ACQ" --calibration "$CALSET" --compact)
"${LUMIQ_CMD[@]}" >"$WORK/lumiq_record.json"

# ---------------------------------------------------------------------------------------
step "4/5 timing on the same folder ($LUMIQ_RUNS x lumiq, $PEER_RUNS x peer stack)"
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
if command -v hyperfine >/dev/null; then
    LUMIQ_TIMER="hyperfine, 1 warm-up run, best of $LUMIQ_RUNS"
    hyperfine --style basic --warmup 1 --runs "$LUMIQ_RUNS" \
        --export-json "$WORK/lumiq_hyperfine.json" "$(printf '%q ' "${LUMIQ_CMD[@]}")" >&2
    LUMIQ_BEST=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["results"][0]["min"])' \
        "$WORK/lumiq_hyperfine.json")
else
    LUMIQ_TIMER="bash loop, 1 warm-up run, best of $LUMIQ_RUNS (hyperfine not installed)"
    "${LUMIQ_CMD[@]}" >/dev/null
    LUMIQ_BEST=inf
    for ((i = 1; i <= LUMIQ_RUNS; i++)); do
        t0=$(now); "${LUMIQ_CMD[@]}" >/dev/null; t1=$(now)
        LUMIQ_BEST=$("$PY" -c "print(min(float('$LUMIQ_BEST'), $t1 - $t0))")
        echo "lumiq process run $i: $("$PY" -c "print(f'{$t1 - $t0:.3f}')") s" >&2
    done
fi
PEER_BEST=inf
PEER_BEST_JSON=
for ((i = 1; i <= PEER_RUNS; i++)); do
    t0=$(now)
    "$PY" "$HERE/peer_stack.py" "${PEER_ARGS[@]}" >"$WORK/peer_$i.json" 2>"$WORK/peer_$i.stderr"
    t1=$(now)
    wall=$("$PY" -c "print($t1 - $t0)")
    echo "peer stack run $i: $("$PY" -c "print(f'{$wall:.3f}')") s" >&2
    if "$PY" -c "import sys; sys.exit(not ($wall < float('$PEER_BEST')))"; then
        PEER_BEST=$wall
        PEER_BEST_JSON="$WORK/peer_$i.json"
    fi
done
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

# ---------------------------------------------------------------------------------------
step "5/5 results"
"$PY" - "$PEER_BEST_JSON" "$WORK/lumiq_record.json" "$WORK/summary.json" <<EOF
import json, platform, os, sys
peer = json.load(open(sys.argv[1]))
record = json.load(open(sys.argv[2]))
lumiq_s, peer_wall = float("$LUMIQ_BEST"), float("$PEER_BEST")
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
mem = next((l.split()[1] for l in open("/proc/meminfo") if l.startswith("MemTotal")), "0")
names = {"read": "read frame + masters (tifffile)",
         "ccdproc": "bias/dark/flat + deviation (ccdproc)",
         "cosmic_rays": "cosmic rays (astroscrappy, niter 4)",
         "background": "background (photutils Background2D)",
         "detection": "detection (sep.extract)",
         "photometry": "photometry (sep Kron ellipses)"}
rows = [(names.get(k, k), v) for k, v in peer["stages_s"].items()]
w = 58
print(f"machine: {os.cpu_count()} cpus, {cpu}, {int(mem) / 2**20:.1f} GiB; "
      f"load average {'$LOAD_BEFORE'} before, {'$LOAD_AFTER'} after timing")
print(f"frame: {peer['frame'][0]}x{peer['frame'][1]}, binning {peer['binning']}; "
      f"calibration set from $CAL_SOURCE")
print(f"{'stage':<{w}}{'seconds':>10}")
print("-" * (w + 10))
for name, s in rows:
    print(f"{'peer: ' + name:<{w}}{s:>10.3f}")
print(f"{'peer: sum of stages (script, after imports)':<{w}}{peer['total_s']:>10.3f}")
print(f"{'peer: library imports':<{w}}{peer['import_s']:>10.3f}")
print(f"{'peer: wall clock, best of $PEER_RUNS (whole python process)':<{w}}{peer_wall:>10.3f}")
print(f"{'lumiq process: wall clock, best of $LUMIQ_RUNS (whole process)':<{w}}{lumiq_s:>10.3f}")
print("-" * (w + 10))
ratio = peer_wall / lumiq_s
ratio_stages = peer["total_s"] / lumiq_s
print(f"{'end-to-end ratio (peer wall / lumiq wall)':<{w}}{ratio:>9.1f}x")
print(f"{'ratio without python imports (peer stages / lumiq wall)':<{w}}{ratio_stages:>9.1f}x")
verdict = "met" if ratio >= $GOAL_RATIO else "MISSED"
print(f"goal >= ${GOAL_RATIO}x faster end to end: {verdict}")
print(f"detections: lumiq {len(record.get('regions', []))}, peer {peer['n_detections']}; "
      f"cosmic-ray pixels flagged by astroscrappy: {peer['n_cosmic_ray_pixels']}")
json.dump({"lumiq_wall_best_s": lumiq_s, "lumiq_timer": "$LUMIQ_TIMER",
           "peer_wall_best_s": peer_wall, "peer": peer,
           "lumiq_regions": len(record.get("regions", [])),
           "ratio_wall": ratio, "ratio_without_imports": ratio_stages,
           "calibration_source": "$CAL_SOURCE",
           "load_before": "$LOAD_BEFORE", "load_after": "$LOAD_AFTER",
           "machine": {"cpus": os.cpu_count(), "cpu": cpu, "mem_kib": int(mem),
                       "platform": platform.platform()}},
          open(sys.argv[3], "w"), indent=2)
EOF
echo "lumiq timed with: $LUMIQ_TIMER; details in $WORK/summary.json" >&2
