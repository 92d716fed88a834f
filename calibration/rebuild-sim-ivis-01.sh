#!/usr/bin/env bash
# Rebuild calibration/sim-ivis-01, the simulated instrument's calibration set, from
# simulated raw frames: 12 biases, 12 darks (60 s, -90 °C) and 12 flats (FOV 22.4 cm, f/1,
# filter "open") at binnings 4 and 8, combined by `lumiq calibrate`.
#
# The two commands (once the CLI is wired):
#   cargo run --release -- simulate --calibration-frames --binnings 4,8 --frames 12 --out "$raw"
#   cargo run --release -- calibrate --id sim-ivis-01-sim-calibration-v1 \
#       --out calibration/sim-ivis-01 "$raw"
#
# Until then (or with --via-test) the same library functions run from an ignored test:
#   cargo test --release --lib generate_sim_instrument_set -- --ignored
# which uses calibrate::simulate_raw_calibration_frames and calibrate::build_set with
# calibrate::sim_instrument_options (coefficients for FOV 12.5 and 22.4 cm at f/1..16, and a
# fixed created_at so a rebuild is byte-identical).
set -euo pipefail
cd "$(dirname "$0")/.."

via_test() {
    cargo test --release --lib generate_sim_instrument_set -- --ignored --nocapture
}

if [[ "${1:-}" == "--via-test" ]]; then
    via_test
    exit 0
fi

raw=$(mktemp -d)
trap 'rm -rf "$raw"' EXIT
if ! cargo run --release -- simulate --calibration-frames --binnings 4,8 --frames 12 \
    --out "$raw/frames" 2>"$raw/err"; then
    if grep -q "not wired" "$raw/err"; then
        echo "the CLI does not simulate calibration frames yet; using the ignored test" >&2
        via_test
        exit 0
    fi
    cat "$raw/err" >&2
    exit 1
fi
staging="calibration/sim-ivis-01.new"
rm -rf "$staging"
cargo run --release -- calibrate --id sim-ivis-01-sim-calibration-v1 --out "$staging" "$raw/frames"
rm -rf calibration/sim-ivis-01
mv "$staging" calibration/sim-ivis-01
du -sh calibration/sim-ivis-01
