//! Finding the segmentation model file and its manifest entry, and proving the file is the
//! one the manifest describes (sha256) before anything parses it.
//!
//! Owns: the search order (`--model PATH`, `$LUMIQ_MODEL`, `models/` in the working
//! directory, the repository's `models/`, the installed `/usr/share/lumiq/models/`) and the
//! manifest's format. Does not own inference (`runtime`).

use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::SegmentError;
use crate::process::model_input::PAD_MULTIPLE;

/// Environment variable naming the model file when `--model` is not given.
pub const MODEL_ENV: &str = "LUMIQ_MODEL";
/// File name of the default model.
pub const DEFAULT_MODEL_FILE: &str = "tumour-seg-v1.onnx";
/// The manifest sits in the model's folder under this name.
pub const MANIFEST_FILE: &str = "manifest.toml";
/// Where a package installs the models.
pub const INSTALLED_MODELS_DIR: &str = "/usr/share/lumiq/models";

/// One model as `manifest.toml` describes it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ManifestEntry {
    pub name: String,
    /// File name, relative to the manifest's folder.
    pub file: String,
    /// Lowercase hex sha256 of the file.
    pub sha256: String,
    /// ONNX opset the file was exported with.
    pub opset: u32,
    /// Probability at or above which a pixel is tumour.
    pub threshold: f32,
    /// What the network outputs; the runtime takes "logits" (and applies the sigmoid).
    #[serde(default)]
    pub output_kind: Option<String>,
    /// Sides the network accepts are multiples of this.
    #[serde(default)]
    pub pad_multiple: Option<usize>,
}

/// The entries of a manifest: `[[model]]` tables, a single `[model]` table, or the
/// entry's keys at the top level.
fn entries(text: &str) -> Result<Vec<ManifestEntry>, toml::de::Error> {
    let value: toml::Table = toml::from_str(text)?;
    let parse = |v: toml::Value| -> Result<ManifestEntry, toml::de::Error> { v.try_into() };
    match value.get("model") {
        Some(toml::Value::Array(items)) => items.iter().cloned().map(parse).collect(),
        Some(t @ toml::Value::Table(_)) => Ok(vec![parse(t.clone())?]),
        _ => Ok(vec![parse(toml::Value::Table(value))?]),
    }
}

/// The model file to use: `explicit`, else `$LUMIQ_MODEL`, else the first
/// `tumour-seg-v1.onnx` found in `models/` under the working directory, the repository's
/// `models/`, or `/usr/share/lumiq/models/`.
pub fn resolve_model_path(explicit: Option<&Path>) -> Result<PathBuf, SegmentError> {
    if let Some(p) = explicit {
        return Ok(p.to_path_buf());
    }
    if let Some(p) = std::env::var_os(MODEL_ENV) {
        return Ok(PathBuf::from(p));
    }
    let candidates = [
        Path::new("models").join(DEFAULT_MODEL_FILE),
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("models")
            .join(DEFAULT_MODEL_FILE),
        Path::new(INSTALLED_MODELS_DIR).join(DEFAULT_MODEL_FILE),
    ];
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .ok_or_else(|| SegmentError::NotFound {
            tried: candidates.to_vec(),
        })
}

/// The manifest entry of `model_path` (the entry whose `file` is its file name, in the
/// `manifest.toml` beside it).
pub fn manifest_entry(model_path: &Path) -> Result<(PathBuf, ManifestEntry), SegmentError> {
    let dir = model_path.parent().unwrap_or(Path::new("."));
    let manifest = dir.join(MANIFEST_FILE);
    let text = std::fs::read_to_string(&manifest).map_err(|e| SegmentError::Manifest {
        path: manifest.clone(),
        reason: format!(
            "cannot read it ({e}); a model is used only with the manifest that gives its sha256: keep {MANIFEST_FILE} beside the model file"
        ),
    })?;
    let parsed = entries(&text).map_err(|e| SegmentError::Manifest {
        path: manifest.clone(),
        reason: format!(
            "not a valid manifest ({}); each model needs name, file, sha256, opset and threshold",
            e.message()
        ),
    })?;
    let file_name = model_path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let entry = parsed
        .into_iter()
        .find(|m| m.file == file_name)
        .ok_or_else(|| SegmentError::Manifest {
            path: manifest.clone(),
            reason: format!("no model entry with file = {file_name:?}; add the model's entry (name, file, sha256, opset, threshold) or pass a model the manifest lists"),
        })?;
    if let Some(kind) = entry.output_kind.as_deref().filter(|k| *k != "logits") {
        return Err(SegmentError::Manifest {
            path: manifest,
            reason: format!(
                "model {:?}: output_kind = {kind:?}; this runtime applies the sigmoid to logits: export the network without its final sigmoid and write output_kind = \"logits\"",
                entry.name
            ),
        });
    }
    if let Some(p) = entry
        .pad_multiple
        .filter(|&p| p == 0 || PAD_MULTIPLE % p != 0)
    {
        return Err(SegmentError::Manifest {
            path: manifest,
            reason: format!(
                "model {:?}: pad_multiple = {p} does not divide the input contract's {PAD_MULTIPLE} (src/process/model_input.rs); retrain for it or change the contract",
                entry.name
            ),
        });
    }
    if !(entry.threshold > 0.0 && entry.threshold < 1.0) {
        return Err(SegmentError::Manifest {
            path: manifest,
            reason: format!(
                "model {:?}: threshold = {} is not a probability strictly between 0 and 1",
                entry.name, entry.threshold
            ),
        });
    }
    Ok((manifest, entry))
}

/// Read the model file and prove it is the one its manifest describes, without parsing it
/// (the cheap check `lumiq config check` makes): its manifest entry, its sha256 and its
/// bytes.
pub fn read_verified(model_path: &Path) -> Result<(ManifestEntry, String, Vec<u8>), SegmentError> {
    let (manifest_path, entry) = manifest_entry(model_path)?;
    let bytes = std::fs::read(model_path).map_err(|source| SegmentError::Read {
        path: model_path.to_path_buf(),
        source,
    })?;
    let sha256 = verify(model_path, &manifest_path, &entry, &bytes)?;
    Ok((entry, sha256, bytes))
}

/// Lowercase hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Check `bytes` (the content of `model_path`) against the manifest entry.
pub fn verify(
    model_path: &Path,
    manifest_path: &Path,
    entry: &ManifestEntry,
    bytes: &[u8],
) -> Result<String, SegmentError> {
    let actual = sha256_hex(bytes);
    if !actual.eq_ignore_ascii_case(entry.sha256.trim()) {
        return Err(SegmentError::HashMismatch {
            file: model_path.to_path_buf(),
            manifest: manifest_path.to_path_buf(),
            expected: entry.sha256.trim().to_ascii_lowercase(),
            actual,
        });
    }
    Ok(actual)
}
