//! A loaded calibration set: loading the folder (the index parsed and validated, every
//! master it names present), the sensor's facts, and the masters read lazily on first use
//! and cached with their SHA-256 for the life of the set.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use ndarray::Array2;

use super::{CalibrationIndex, INDEX_FILE};
use crate::formats::tiff_io::read_f32_and_sha256;
use crate::formats::FormatError;
use crate::process::SensorFacts;

#[derive(Debug, Clone)]
pub(super) struct Master {
    pub(super) data: Arc<Array2<f32>>,
    pub(super) sha256: String,
}

/// A loaded calibration set.
#[derive(Debug, Clone)]
pub struct CalibrationSet {
    pub dir: PathBuf,
    pub index: CalibrationIndex,
    /// SHA-256 of `calibration.toml`.
    pub index_sha256: String,
    cache: Arc<Mutex<HashMap<String, Master>>>,
}

impl CalibrationSet {
    /// Parse and validate `<dir>/calibration.toml` and check that every master it names
    /// exists as a file inside `dir`. Masters are read lazily (see the module docs).
    pub fn load(dir: &Path) -> Result<CalibrationSet, FormatError> {
        let path = dir.join(INDEX_FILE);
        let bytes = std::fs::read(&path).map_err(|e| FormatError::io(&path, e))?;
        let text = String::from_utf8(bytes).map_err(|_| {
            FormatError::invalid(&path, "is not UTF-8 text", "save the index as UTF-8")
        })?;
        let index = CalibrationIndex::parse(&text, &path)?;
        index.validate(&path)?;
        for (key, file) in index.files() {
            let rel = Path::new(file);
            if file.is_empty()
                || rel.is_absolute()
                || rel
                    .components()
                    .any(|c| !matches!(c, std::path::Component::Normal(_)))
            {
                return Err(FormatError::bad_field(
                    &path,
                    key,
                    format!("{file:?} is not a plain file name inside the set"),
                    "name the master by its path relative to the set's folder",
                ));
            }
            let full = dir.join(rel);
            if !full.is_file() {
                return Err(FormatError::bad_field(
                    &path,
                    key,
                    format!("{} does not exist", full.display()),
                    "copy the whole calibration set folder, or rebuild it with `lumiq calibrate`",
                ));
            }
        }
        let index_sha256 = {
            use sha2::{Digest, Sha256};
            format!("{:x}", Sha256::digest(text.as_bytes()))
        };
        Ok(CalibrationSet {
            dir: dir.to_path_buf(),
            index,
            index_sha256,
            cache: Arc::new(Mutex::new(HashMap::new())),
        })
    }

    /// Path of the index file.
    pub fn index_path(&self) -> PathBuf {
        self.dir.join(INDEX_FILE)
    }

    /// The sensor facts of the set.
    pub fn sensor_facts(&self) -> SensorFacts {
        let s = &self.index.sensor;
        SensorFacts {
            gain_e_per_adu: s.gain_e_per_adu,
            read_noise_e: s.read_noise_e,
            saturation_adu: s.saturation_adu,
            pixel_pitch_um: s.pixel_pitch_um,
        }
    }

    /// Read (once) a master and its SHA-256.
    pub(super) fn master(&self, file: &str) -> Result<Master, FormatError> {
        if let Some(m) = self.cache.lock().expect("cache lock").get(file) {
            return Ok(m.clone());
        }
        let path = self.dir.join(file);
        let (data, sha256) = read_f32_and_sha256(&path)?;
        let m = Master {
            data: Arc::new(data),
            sha256,
        };
        self.cache
            .lock()
            .expect("cache lock")
            .insert(file.to_string(), m.clone());
        Ok(m)
    }

    pub(super) fn check_size(
        &self,
        what: &str,
        file: &str,
        binning: u32,
        master: &Array2<f32>,
        rows: usize,
        cols: usize,
    ) -> Result<(), FormatError> {
        let (mr, mc) = master.dim();
        if (mr, mc) != (rows, cols) {
            return Err(FormatError::invalid(
                &self.dir.join(file),
                format!(
                    "{what} calibration is for binning {binning} / size {mc}x{mr}, \
                     frame is binning {binning} / size {cols}x{rows}"
                ),
                "use a set made at the frame's binning and sensor size \
                 (`lumiq calibrate` with bias, dark and flat frames taken like this frame)",
            ));
        }
        Ok(())
    }
}
