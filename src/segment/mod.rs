//! The tumour-segmentation model at run time: the ONNX file checked against its manifest,
//! parsed once with tract, optimised once per input size (plans cached), and run on the
//! model input of a frame's working grid, padded and tiled, returning the probability map
//! (the sigmoid of the network's logits, `process::model_input`'s contract).
//!
//! Owns: model files, their sha256 check, tract, threads for inference. Does not own what
//! the model sees (`process::model_input` builds the input) nor what its mask becomes
//! (`process::pipeline` turns it into regions with the classical detector's deblending,
//! growth and photometry): the core receives this runtime as a [`SegmentationModel`] value.
//!
//! Inference is CPU work on tract's own thread pool; callers on an async runtime run the
//! job that uses it on a blocking thread, never on the runtime's workers.

pub mod manifest;
pub mod tiling;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ndarray::{Array2, ArrayView2, ArrayView3, Axis};
use tract_onnx::prelude::*;
use tract_onnx::tract_hir::infer::Factoid;
use tract_onnx::tract_hir::internal::DimLike;

use crate::process::model_input::{PAD_MULTIPLE, TILE_OVERLAP_PX};
use crate::process::{Detector, ModelFailure, ModelIdentity, SegmentationModel};
pub use manifest::{resolve_model_path, ManifestEntry, MODEL_ENV};
pub use tiling::TileLayout;

/// The detector `lumiq process` and the daemon use when none is chosen: the winner of
/// `lumiq eval` on the held-out set (models/README.md, "Evaluation").
pub const DEFAULT_DETECTOR: Detector = Detector::Model;

/// Working grids up to this side (after padding) run in one pass; larger ones are tiled
/// with tiles of this side.
pub const MAX_TILE_PX: usize = 1024;

/// The default layout: the input contract's pad multiple and tile overlap
/// (`model_input::PAD_MULTIPLE`, `model_input::TILE_OVERLAP_PX`), [`MAX_TILE_PX`].
pub const DEFAULT_LAYOUT: TileLayout = TileLayout {
    pad_multiple_px: PAD_MULTIPLE,
    max_tile_px: MAX_TILE_PX,
    overlap_px: TILE_OVERLAP_PX,
};

/// Why a model cannot be loaded or run. Every message names the file and the fix.
#[derive(Debug, thiserror::Error)]
pub enum SegmentError {
    #[error("no segmentation model found (tried {}); pass --model PATH or set {MODEL_ENV}, or choose --detector classical", .tried.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "))]
    NotFound { tried: Vec<PathBuf> },
    #[error("{}: cannot read the model file ({source}); check the path given by --model or {MODEL_ENV}", .path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {reason}", .path.display())]
    Manifest { path: PathBuf, reason: String },
    #[error("{}: sha256 is {actual} but {} says {expected}: the file is not the model the manifest describes; restore the committed file (git checkout {}) or, for a new model, update the manifest and the model card", .file.display(), .manifest.display(), .file.display())]
    HashMismatch {
        file: PathBuf,
        manifest: PathBuf,
        expected: String,
        actual: String,
    },
    #[error("{}: tract cannot use this model: {reason}", .file.display())]
    Model { file: PathBuf, reason: String },
    #[error("segmentation input: {0}")]
    Input(String),
    #[error("inference failed: {0}")]
    Inference(String),
}

type Plan = Arc<TypedRunnableModel>;

/// A loaded model: parsed once; one optimised plan per input size, built on first use (or
/// by [`TractSegmenter::prepare`]) and kept.
pub struct TractSegmenter {
    identity: ModelIdentity,
    file: PathBuf,
    model: InferenceModel,
    channels: usize,
    layout: TileLayout,
    options: RunOptions,
    plans: Mutex<HashMap<(usize, usize), Plan>>,
}

impl std::fmt::Debug for TractSegmenter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TractSegmenter")
            .field("identity", &self.identity)
            .field("file", &self.file)
            .field("channels", &self.channels)
            .field("layout", &self.layout)
            .finish()
    }
}

impl TractSegmenter {
    /// Load the model at `path` (see [`resolve_model_path`]): read it, check its sha256
    /// against the `manifest.toml` beside it, parse it. Inference uses as many threads as
    /// the machine has cores.
    pub fn load(path: &Path) -> Result<TractSegmenter, SegmentError> {
        let (entry, sha256, bytes) = manifest::read_verified(path)?;
        let model_err = |reason: String| SegmentError::Model {
            file: path.to_path_buf(),
            reason,
        };
        let model = tract_onnx::onnx()
            .model_for_read(&mut bytes.as_slice())
            .map_err(|e| model_err(format!("{e:#}")))?;
        if model.inputs.len() != 1 || model.outputs.len() != 1 {
            return Err(model_err(format!(
                "it has {} inputs and {} outputs; a segmentation model has one of each",
                model.inputs.len(),
                model.outputs.len()
            )));
        }
        let fact = model
            .input_fact(0)
            .map_err(|e| model_err(format!("{e:#}")))?;
        let channels = fact
            .shape
            .dims()
            .nth(1)
            .and_then(|d| d.concretize())
            .and_then(|d| d.to_usize().ok())
            .ok_or_else(|| {
                model_err(format!(
                    "its input {fact:?} has no fixed channel count; export it as [1, C, H, W] with C fixed"
                ))
            })?;
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        Ok(TractSegmenter {
            identity: ModelIdentity {
                name: entry.name,
                sha256,
                opset: entry.opset,
                threshold: entry.threshold,
            },
            file: path.to_path_buf(),
            model,
            channels,
            layout: DEFAULT_LAYOUT,
            options: RunOptions {
                executor: Some(executor(threads)),
                ..RunOptions::default()
            },
            plans: Mutex::new(HashMap::new()),
        })
    }

    /// Run inference on `threads` threads (default: one per core).
    pub fn with_threads(mut self, threads: usize) -> TractSegmenter {
        self.options.executor = Some(executor(threads));
        self.plans.lock().expect("plan cache").clear();
        self
    }

    /// Use another padding and tiling layout (tests use small tiles).
    pub fn with_layout(mut self, layout: TileLayout) -> Result<TractSegmenter, SegmentError> {
        layout
            .validate()
            .map_err(|e| SegmentError::Input(e.to_string()))?;
        self.layout = layout;
        self.plans.lock().expect("plan cache").clear();
        Ok(self)
    }

    pub fn identity(&self) -> &ModelIdentity {
        &self.identity
    }

    pub fn file(&self) -> &Path {
        &self.file
    }

    /// Channels of the model's input.
    pub fn channels(&self) -> usize {
        self.channels
    }

    pub fn layout(&self) -> &TileLayout {
        &self.layout
    }

    /// Build (and cache) the plans a working grid of `rows` × `cols` needs, so the first
    /// frame of that size does not pay for optimisation.
    pub fn prepare(&self, rows: usize, cols: usize) -> Result<(), SegmentError> {
        let (pr, pc) = (self.layout.padded(rows), self.layout.padded(cols));
        for rs in self.layout.spans(pr) {
            for cs in self.layout.spans(pc) {
                self.plan(rs.len, cs.len)?;
            }
        }
        Ok(())
    }

    /// Probability map of `input` (the single-channel `model_input::model_input`),
    /// padded and tiled by the layout; same rows and columns as the input.
    pub fn run(&self, input: ArrayView2<f32>) -> Result<Array2<f32>, SegmentError> {
        self.run_channels(input.insert_axis(Axis(0)))
    }

    /// [`run`](Self::run) for an input of several channels (channels × rows × cols).
    pub fn run_channels(&self, input: ArrayView3<f32>) -> Result<Array2<f32>, SegmentError> {
        if input.dim().0 != self.channels {
            return Err(SegmentError::Input(format!(
                "{} channels given, the model {} takes {}",
                input.dim().0,
                self.identity.name,
                self.channels
            )));
        }
        if input.iter().any(|v| !v.is_finite()) {
            return Err(SegmentError::Input(
                "the input holds NaN or infinite values".into(),
            ));
        }
        let run = || tiling::run_tiled(input, &self.layout, |tile| self.run_pass(tile));
        // Design: tract keeps per-thread state while its pool works. Entered from a worker
        // of another rayon pool (a caller's par_iter), the waiting worker would steal that
        // pool's next job, which may enter tract again on the same thread and find the
        // state borrowed. Such callers get a plain thread for the inference.
        if rayon::current_thread_index().is_some() {
            std::thread::scope(|s| s.spawn(run).join()).unwrap_or_else(|panic| {
                std::panic::resume_unwind(panic);
            })
        } else {
            run()
        }
    }

    /// One inference on an input whose sides the model accepts as they are (multiples of
    /// the pad multiple): the probability, sigmoid of the network's logits.
    pub fn run_pass(&self, input: ArrayView3<f32>) -> Result<Array2<f32>, SegmentError> {
        let (_, rows, cols) = input.dim();
        let plan = self.plan(rows, cols)?;
        let tensor = Tensor::from(input.insert_axis(Axis(0)).to_owned());
        let outputs = plan
            .run(tvec!(tensor.into()))
            .map_err(|e| SegmentError::Inference(format!("{e:#}")))?;
        let view = outputs[0]
            .to_plain_array_view::<f32>()
            .map_err(|e| SegmentError::Inference(format!("{e:#}")))?;
        if view.shape() != [1, 1, rows, cols] {
            return Err(SegmentError::Inference(format!(
                "the model returned shape {:?} for an input of {rows}×{cols}; expected [1, 1, {rows}, {cols}]",
                view.shape()
            )));
        }
        Ok(Array2::from_shape_fn((rows, cols), |(r, c)| {
            sigmoid(view[[0, 0, r, c]])
        }))
    }

    /// The optimised plan for an input of `rows` × `cols` (built once, then cached).
    fn plan(&self, rows: usize, cols: usize) -> Result<Plan, SegmentError> {
        let mut plans = self.plans.lock().expect("plan cache");
        if let Some(p) = plans.get(&(rows, cols)) {
            return Ok(p.clone());
        }
        let err = |e: TractError| SegmentError::Model {
            file: self.file.clone(),
            reason: format!("cannot prepare it for a {rows}×{cols} input: {e:#}"),
        };
        let plan = self
            .model
            .clone()
            .with_input_fact(0, f32::fact([1, self.channels, rows, cols]).into())
            .and_then(|m| m.into_optimized())
            .and_then(|m| m.into_runnable_with_options(&self.options))
            .map_err(err)?;
        plans.insert((rows, cols), plan.clone());
        Ok(plan)
    }
}

/// tract's executor for `threads` threads (its own pool when more than one).
fn executor(threads: usize) -> tract_linalg::multithread::Executor {
    if threads > 1 {
        tract_linalg::multithread::Executor::multithread_with_name(threads, "lumiq-tract")
    } else {
        tract_linalg::multithread::Executor::SingleThread
    }
}

/// Logistic function, stable for large |x|.
fn sigmoid(x: f32) -> f32 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

impl SegmentationModel for TractSegmenter {
    fn probability(&self, input: ArrayView2<f32>) -> Result<Array2<f32>, ModelFailure> {
        self.run(input).map_err(ModelFailure::new)
    }

    fn identity(&self) -> &ModelIdentity {
        &self.identity
    }
}
