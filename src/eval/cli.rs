//! `lumiq eval`: flags, the tables it prints and the JSON it writes.
//!
//! Owns: what the user sees of an evaluation. The metrics are the parent module's.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use super::{best_at_fp, evaluate, EvalSpec, PointMetrics, SNR_BINS};
use crate::process::{Detector, ProcessingParams, SegmentationModel};
use crate::segment::{self, TractSegmenter};
use crate::simulate::training::Profile;

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Held-out frames to generate and score.
    #[arg(long, default_value_t = 60)]
    pub frames: u64,
    /// Seed of the set (training uses others; see models/README.md).
    #[arg(long, default_value_t = 9001)]
    pub seed: u64,
    /// Parameter ranges to draw from.
    #[arg(long, value_enum, default_value = "heldout")]
    pub profile: Profile,
    /// Segmentation model (default: $LUMIQ_MODEL, then models/tumour-seg-v1.onnx).
    #[arg(long, value_name = "PATH")]
    pub model: Option<PathBuf>,
    /// Only the classical detector's sweep (no model needed).
    #[arg(long)]
    pub classical_only: bool,
    /// Classical detection thresholds to sweep, in sigmas.
    #[arg(long, value_delimiter = ',', default_values_t = [3.5, 4.0, 4.5, 5.0, 6.0])]
    pub sigmas: Vec<f64>,
    /// Model probability thresholds to sweep.
    #[arg(long, value_delimiter = ',', default_values_t = [0.2, 0.35, 0.5, 0.65, 0.8, 0.9])]
    pub thresholds: Vec<f64>,
    /// Write every operating point's metrics here as JSON.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

fn label(m: &PointMetrics) -> String {
    match m.point.detector {
        Detector::Classical => format!("classical {:.1}σ", m.point.threshold),
        d => format!("{} p≥{:.2}", d.as_str(), m.point.threshold),
    }
}

fn row(m: &PointMetrics) -> String {
    let bins: Vec<String> = (0..SNR_BINS.len())
        .map(|i| {
            let c = m.completeness_of(i);
            if c.is_nan() {
                format!("{:>7}", "-")
            } else {
                format!("{:>6.1}%", 100.0 * c)
            }
        })
        .collect();
    format!(
        "{:<20}{}{:>9.2}{:>9.2}%{:>8.2}%{:>7.3}{:>7.3}",
        label(m),
        bins.join(""),
        m.false_positives_per_frame(),
        100.0 * m.flux_abs_error_snr20,
        100.0 * m.flux_bias_snr20,
        m.mask_iou,
        m.boundary_iou
    )
}

pub fn run(a: EvalArgs) -> anyhow::Result<()> {
    let defaults = ProcessingParams::default();
    let model = if a.classical_only {
        None
    } else {
        let path = segment::resolve_model_path(a.model.as_deref())?;
        Some(TractSegmenter::load(&path)?)
    };
    let spec = EvalSpec {
        profile: a.profile,
        seed: a.seed,
        frames: a.frames,
        classical_sigmas: a.sigmas.clone(),
        model_thresholds: a.thresholds.clone(),
    };
    let started = std::time::Instant::now();
    let metrics = evaluate(&spec, model.as_ref().map(|m| m as &dyn SegmentationModel))
        .context("evaluation failed")?;
    let elapsed = started.elapsed().as_secs_f64();
    let totals: Vec<usize> = metrics
        .first()
        .map(|m| m.completeness.iter().map(|c| c.1).collect())
        .unwrap_or_default();
    println!(
        "{} frames of profile {:?}, seed {}; {:.0} s",
        a.frames, a.profile, a.seed, elapsed
    );
    if let Some(m) = &model {
        let id = m.identity();
        println!(
            "model {} sha256 {} (manifest threshold {})",
            id.name, id.sha256, id.threshold
        );
    }
    println!(
        "completeness by true (matched-filter) SNR; tumours per bin: {}",
        SNR_BINS
            .iter()
            .zip(&totals)
            .map(|((lo, hi), n)| if hi.is_finite() {
                format!("{lo}–{hi}: {n}")
            } else {
                format!("≥{lo}: {n}")
            })
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "{:<20}{:>7}{:>7}{:>7}{:>7}{:>7}{:>9}{:>10}{:>9}{:>7}{:>7}",
        "method",
        "2–3",
        "3–5",
        "5–10",
        "10–20",
        "≥20",
        "FP/frame",
        "|Δflux|",
        "Δflux",
        "IoU",
        "bIoU"
    );
    for m in &metrics {
        println!("{}", row(m));
    }
    // The comparison the issue asks for: completeness at SNR 3–5 at the classical
    // detector's false-positive rate (its default threshold).
    let bin = 1;
    if let Some(reference) = metrics.iter().find(|m| {
        m.point.detector == Detector::Classical
            && (m.point.threshold - defaults.detection_sigma).abs() < 1e-9
    }) {
        let fp = reference.false_positives_per_frame();
        println!(
            "at the classical detector's FP rate ({fp:.2}/frame at {:.1}σ): SNR 3–5 completeness",
            defaults.detection_sigma
        );
        for detector in [Detector::Classical, Detector::Model, Detector::Combined] {
            if let Some(best) = best_at_fp(
                metrics.iter().filter(|m| m.point.detector == detector),
                bin,
                fp,
            ) {
                println!(
                    "  {:<20}{:>6.1}%  ({:+.1} points vs classical {:.1}σ), {:.2} FP/frame",
                    label(best),
                    100.0 * best.completeness_of(bin),
                    100.0 * (best.completeness_of(bin) - reference.completeness_of(bin)),
                    defaults.detection_sigma,
                    best.false_positives_per_frame()
                );
            }
        }
    }
    if let Some(out) = &a.out {
        let json = serde_json::json!({
            "profile": a.profile,
            "seed": a.seed,
            "frames": a.frames,
            "detection_sigma": defaults.detection_sigma,
            "snr_bins": SNR_BINS.iter().map(|&(lo, hi)| [lo, if hi.is_finite() { hi } else { -1.0 }]).collect::<Vec<_>>(),
            "model": model.as_ref().map(|m| m.identity().clone()),
            "points": metrics,
        });
        std::fs::write(out, serde_json::to_string_pretty(&json)?)
            .with_context(|| format!("{}: cannot write the results", out.display()))?;
    }
    Ok(())
}
