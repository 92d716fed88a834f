#!/usr/bin/env python3
"""Fallback for benches/peer/run.sh while `lumiq calibrate` is not available: build a lumiq
calibration set (docs/calibration-set.md layout: calibration.toml + float32 TIFF masters)
for ONE binning from raw frames written by `lumiq simulate --calibration-frames`.

  bias  = median of the raw biases                                  (ADU)
  dark  = median of the raw darks - bias: dark charge for their exposure (ADU)
  flat  = median of (raw flat - bias - dark scaled to the flat's exposure), divided by the
          3-sigma-clipped mean of the central box (side = min(rows, cols) // 32), so the
          flat is 1.0 on the optical axis, as lumiq's own masters are
  bad   = pixels whose dark charge stands > 8 robust sigmas above the median, and columns
          more than half of whose pixels do (unbinned coordinates: binning 1 only)

Plain medians (no clipping), no photon transfer: gain, read noise, saturation and the
radiance coefficient are given on the command line (the simulated instrument's values).
Not a replacement for `lumiq calibrate`; it exists so the benchmark can run without it.
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import tifffile
from astropy.stats import sigma_clipped_stats


def frames_of(raw_dir, binning, kind):
    out = []
    for d in sorted(raw_dir.iterdir()):
        meta_path = d / "acquisition.json"
        if not meta_path.is_file():
            continue
        meta = json.loads(meta_path.read_text())
        if meta.get("kind") == kind and int(meta["binning"]) == binning:
            out.append((meta, d / meta["frames"]["luminescent"]))
    if not out:
        sys.exit(f"{raw_dir}: no raw {kind} frames at binning {binning}")
    return out


def median_of(items):
    stack = np.stack([tifffile.imread(p).astype(np.float32) for _, p in items])
    return np.median(stack, axis=0).astype(np.float32), stack


def noise_adu(stack):
    """One-sigma noise of the median of the stack, from the first two frames' difference."""
    if len(stack) < 2:
        return 1.0
    frame_sigma = float(np.std(stack[0] - stack[1]) / np.sqrt(2))
    return frame_sigma * 1.2533 / np.sqrt(len(stack))


def write_tiff(path, data):
    tifffile.imwrite(path, np.ascontiguousarray(data, dtype=np.float32), photometric="minisblack")


def toml_pairs(pairs):
    rows = [", ".join(f"[{x}, {y}]" for x, y in pairs[i:i + 8]) for i in range(0, len(pairs), 8)]
    return "[\n    " + ",\n    ".join(rows) + ",\n]" if rows else "[]"


def main(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("raw_dir", type=Path)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--binning", type=int, default=1)
    p.add_argument("--instrument-id", default="sim-ivis-01")
    p.add_argument("--gain", type=float, required=True)
    p.add_argument("--read-noise", type=float, required=True)
    p.add_argument("--saturation", type=float, required=True)
    p.add_argument("--pixel-pitch-um", type=float, default=13.5)
    p.add_argument("--coefficient", type=float, required=True)
    p.add_argument("--coefficient-rel-uncertainty", type=float, default=0.03)
    a = p.parse_args(argv)
    b = a.binning
    if b != 1:
        sys.exit("only binning 1 is supported (bad pixels are written in unbinned coordinates)")
    a.out.mkdir(parents=True, exist_ok=True)

    biases = frames_of(a.raw_dir, b, "bias")
    darks = frames_of(a.raw_dir, b, "dark")
    flats = frames_of(a.raw_dir, b, "flat")
    bias, bias_stack = median_of(biases)
    del bias_stack
    dark_raw, dark_stack = median_of(darks)
    dark = dark_raw - bias
    dark_noise = noise_adu(dark_stack)
    del dark_stack
    dark_exposure = float(darks[0][0]["exposure_s"])
    dark_temp = float(darks[0][0]["sensor_temp_c"])
    flat_meta = flats[0][0]
    flat_raw, flat_stack = median_of(flats)
    del flat_stack
    flat = flat_raw - bias - dark * (float(flat_meta["exposure_s"]) / dark_exposure)
    rows, cols = flat.shape
    side = max(3, min(rows, cols) // 32)
    r0, c0 = (rows - side) // 2, (cols - side) // 2
    level = sigma_clipped_stats(flat[r0:r0 + side, c0:c0 + side], sigma=3.0)[0]
    flat = flat / level
    flat[~np.isfinite(flat) | (flat <= 0)] = 1.0  # lumiq refuses non-positive flats

    med = float(np.median(dark))
    mad = float(np.median(np.abs(dark - med))) * 1.4826
    hot = dark > med + 8 * max(mad, 1e-3)
    bad_cols = [int(c) for c in np.nonzero(hot.mean(axis=0) > 0.5)[0]]
    hot[:, bad_cols] = False
    ys, xs = np.nonzero(hot)
    bad_pixels = list(zip(xs.tolist(), ys.tolist()))

    t = f"{dark_exposure:g}"
    names = {
        "bias": f"bias_b{b}.tiff",
        "dark": f"dark_b{b}_{t}s_{dark_temp:.1f}C.tiff",
        "flat": f"flat_b{b}_fov{flat_meta['fov_cm']:g}_f{flat_meta['f_number']:g}_"
                f"{flat_meta.get('emission_filter', 'open')}.tiff",
    }
    write_tiff(a.out / names["bias"], bias)
    write_tiff(a.out / names["dark"], dark)
    write_tiff(a.out / names["flat"], flat)
    created = darks[-1][0]["acquired_at"]
    index = f"""# lumiq calibration set written by benches/peer/make_calibration_set.py (benchmark fallback).

schema = "lumiq.calibration"
schema_version = 1
id = "{a.instrument_id}-bench-b{b}"
instrument_id = "{a.instrument_id}"
created_at = "{created}"

[sensor]
width_px = {cols * b}
height_px = {rows * b}
pixel_pitch_um = {a.pixel_pitch_um}
gain_e_per_adu = {a.gain}
read_noise_e = {a.read_noise}
saturation_adu = {a.saturation}
noise_source = "given on the command line (simulated instrument's values)"

[[bias]]
binning = {b}
file = "{names['bias']}"
frames_combined = {len(biases)}
noise_adu = {a.read_noise / a.gain * 1.2533 / np.sqrt(len(biases)):.4f}

[[dark]]
binning = {b}
exposure_s = {dark_exposure}
sensor_temp_c = {dark_temp}
file = "{names['dark']}"
frames_combined = {len(darks)}
noise_adu = {dark_noise:.4f}

[[flat]]
fov_cm = {flat_meta['fov_cm']}
binning = {b}
filter = "{flat_meta.get('emission_filter', 'open')}"
f_number = {flat_meta['f_number']}
file = "{names['flat']}"
frames_combined = {len(flats)}

[bad_pixels]
pixels = {toml_pairs(bad_pixels)}
columns = {bad_cols}

[[coefficient]]
fov_cm = {flat_meta['fov_cm']}
f_number = {flat_meta['f_number']}
c = {a.coefficient}
rel_uncertainty = {a.coefficient_rel_uncertainty}
"""
    (a.out / "calibration.toml").write_text(index)
    print(f"wrote {a.out}: {len(bad_pixels)} hot pixels, bad columns {bad_cols}", file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1:])
