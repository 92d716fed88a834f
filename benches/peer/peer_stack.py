#!/usr/bin/env python3
"""The Python "peer stack" a user would otherwise run on one lumiq acquisition.

Given a lumiq acquisition folder (acquisition.json + luminescent.tiff), the bias, dark and
flat masters (32-bit float TIFFs, e.g. from a lumiq calibration set) and the sensor's
gain, read noise and saturation level, it does what a user of the standard Python
astronomy stack would do to get tumour fluxes, timing each stage with time.perf_counter:

  read          tifffile: the raw frame, the three masters; json: the metadata
  ccdproc       CCDData, create_deviation (gain, read noise: the per-pixel uncertainty that
                lumiq's variance map corresponds to), subtract_bias, subtract_dark (scaled
                by exposure), flat_correct (flat already 1.0 on axis: norm_value=1)
  cosmic_rays   astroscrappy.detect_cosmics (gain, readnoise, satlevel; default niter=4)
  background    photutils Background2D: box = lumiq's 1.5 cm cell in pixels, SExtractor
                estimator, 3-sigma clipping, 3x3 median filter of the mesh (the default)
  detection     sep.extract on the background-subtracted frame, err = background rms,
                threshold 5, minarea = lumiq's 0.01 cm^2 in pixels, default deblending
  photometry    sep.kron_radius + sep.sum_ellipse (2.5 Kron radii, SExtractor's
                FLUX_AUTO), converted to photons/s with the frame's calibration coefficient

Prints one JSON object: per-stage seconds, their sum (total_s), the time spent importing
the libraries (import_s, not in total_s), the number of detections and their fluxes.
Used by benches/peer/run.sh; see BENCHMARKS.md.
"""

import time

_T_START = time.perf_counter()

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import astropy.units as u  # noqa: E402
import astroscrappy  # noqa: E402
import ccdproc  # noqa: E402
import numpy as np  # noqa: E402
import sep  # noqa: E402
import tifffile  # noqa: E402
from astropy.nddata import CCDData  # noqa: E402
from astropy.stats import SigmaClip  # noqa: E402
from photutils.background import Background2D, SExtractorBackground  # noqa: E402

_T_IMPORTED = time.perf_counter()

# lumiq's ProcessingParams defaults (src/process/mod.rs), in cm at the object plane.
BACKGROUND_BOX_CM = 1.5
MIN_AREA_CM2 = 0.01
DETECTION_SIGMA = 5.0
BACKGROUND_CLIP_SIGMA = 3.0


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("folder", type=Path, help="lumiq acquisition folder")
    p.add_argument("--bias", type=Path, required=True, help="master bias, float32 TIFF, ADU")
    p.add_argument("--dark", type=Path, required=True,
                   help="master dark charge (bias removed), float32 TIFF, ADU")
    p.add_argument("--dark-exposure", type=float, required=True,
                   help="exposure the dark master was taken at, s")
    p.add_argument("--flat", type=Path, required=True,
                   help="master flat, float32 TIFF, 1.0 on the optical axis")
    p.add_argument("--gain", type=float, required=True, help="e-/ADU")
    p.add_argument("--read-noise", type=float, required=True, help="e- rms")
    p.add_argument("--saturation", type=float, required=True, help="ADU")
    p.add_argument("--coefficient", type=float, default=None,
                   help="radiance per count/s per unbinned pixel (photons/s/cm^2/sr); "
                        "fluxes are reported in photons/s when given")
    return p.parse_args(argv)


def main(argv):
    a = parse_args(argv)
    stages = {}

    # --- read -------------------------------------------------------------------------
    t = time.perf_counter()
    meta = json.loads((a.folder / "acquisition.json").read_text())
    raw = tifffile.imread(a.folder / meta["frames"]["luminescent"])
    bias = tifffile.imread(a.bias)
    dark = tifffile.imread(a.dark)
    flat = tifffile.imread(a.flat)
    stages["read"] = time.perf_counter() - t
    exposure_s = float(meta["exposure_s"])
    binning = int(meta["binning"])
    rows, cols = raw.shape
    pixel_cm = float(meta["fov_cm"]) / cols
    box_px = max(4, round(BACKGROUND_BOX_CM / pixel_cm))
    min_area_px = max(3, math.ceil(MIN_AREA_CM2 / pixel_cm**2))

    # --- ccdproc: bias, dark, flat ------------------------------------------------------
    t = time.perf_counter()
    ccd = CCDData(raw.astype(np.float32), unit=u.adu)
    ccd = ccdproc.create_deviation(ccd, gain=a.gain * u.electron / u.adu,
                                   readnoise=a.read_noise * u.electron)
    ccd = ccdproc.subtract_bias(ccd, CCDData(bias, unit=u.adu))
    ccd = ccdproc.subtract_dark(ccd, CCDData(dark, unit=u.adu),
                                dark_exposure=a.dark_exposure * u.s,
                                data_exposure=exposure_s * u.s, scale=True)
    ccd = ccdproc.flat_correct(ccd, CCDData(flat, unit=u.adu), norm_value=1.0)
    stages["ccdproc"] = time.perf_counter() - t

    # --- cosmic rays ---------------------------------------------------------------------
    t = time.perf_counter()
    crmask, clean = astroscrappy.detect_cosmics(
        np.ascontiguousarray(ccd.data, dtype=np.float32),
        gain=a.gain, readnoise=a.read_noise, satlevel=a.saturation)
    stages["cosmic_rays"] = time.perf_counter() - t

    # --- background ----------------------------------------------------------------------
    t = time.perf_counter()
    bkg = Background2D(clean, box_px, filter_size=(3, 3),
                       sigma_clip=SigmaClip(sigma=BACKGROUND_CLIP_SIGMA),
                       bkg_estimator=SExtractorBackground())
    net = np.ascontiguousarray(clean - bkg.background, dtype=np.float32)
    rms = np.ascontiguousarray(bkg.background_rms, dtype=np.float32)
    stages["background"] = time.perf_counter() - t

    # --- detection -----------------------------------------------------------------------
    t = time.perf_counter()
    sep.set_extract_pixstack(max(300_000, rows * cols // 4))
    sep.set_sub_object_limit(4096)
    objects = sep.extract(net, DETECTION_SIGMA, err=rms, minarea=min_area_px)
    stages["detection"] = time.perf_counter() - t

    # --- photometry (Kron / FLUX_AUTO) ---------------------------------------------------
    t = time.perf_counter()
    fluxes = []
    if len(objects):
        x, y = objects["x"], objects["y"]
        a_, b_, th = objects["a"], objects["b"], objects["theta"]
        kronrad, _ = sep.kron_radius(net, x, y, a_, b_, th, 6.0)
        r = np.maximum(2.5 * kronrad, 1.0)
        counts, counts_err, _ = sep.sum_ellipse(net, x, y, a_, b_, th, r, err=rms, subpix=1)
        if a.coefficient is not None:
            # Phi = 4 pi sum(L) A_px, L = C counts / (t b^2) (counts already flat-corrected).
            scale = 4 * math.pi * a.coefficient / (exposure_s * binning**2) * pixel_cm**2
            counts, counts_err = counts * scale, counts_err * scale
        fluxes = [{"x": float(xi), "y": float(yi), "flux": float(f), "flux_err": float(e)}
                  for xi, yi, f, e in zip(x, y, counts, counts_err)]
    stages["photometry"] = time.perf_counter() - t

    out = {
        "tool": "peer_stack.py",
        "frame": [rows, cols],
        "binning": binning,
        "box_px": box_px,
        "min_area_px": min_area_px,
        "import_s": _T_IMPORTED - _T_START,
        "stages_s": stages,
        "total_s": sum(stages.values()),
        "n_detections": len(objects),
        "n_cosmic_ray_pixels": int(crmask.sum()),
        "flux_unit": "photons/s" if a.coefficient is not None else "flat-corrected ADU",
        "detections": fluxes,
        "versions": {m.__name__: getattr(m, "__version__", "?")
                     for m in (np, ccdproc, astroscrappy, sep, tifffile)}
        | {"photutils": __import__("photutils").__version__,
           "astropy": __import__("astropy").__version__,
           "python": sys.version.split()[0]},
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1:])
