//! The sequences a technician expects, run on an [`Imager`] (a camera and the imager's
//! controller): prepare (door closed and locked, stage, filter, LED off, cooling locked),
//! the LED-lit photograph, the auto-exposed luminescent frame, its dark, and kinetic series.
//!
//! Owns: the order of steps and the interlock. The door is checked closed and locked before
//! anything is exposed; during every exposure the controller's events are polled between
//! transfers and an opened door aborts; after every frame the door is asked for again, so a
//! door opened and closed within one exposure is still caught. The LED is switched off
//! after the photograph whatever happened. Blocking: run on a dedicated thread.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::autoexpose::{self, AutoExposureConfig, Decision, FrameStats};
use super::cooling::{CoolingLock, LockChange};
use super::dark::{self, DarkPolicy, DarkReport, DarkSource, LibraryDark};
use crate::acquisition::{
    AcquisitionMeta, AcquisitionSettings, PhotographMeta, RawAcquisition, SourceFormat,
};
use crate::camera::{Camera, CameraCounters};
use crate::camera::{
    CameraCountersSnapshot, CameraError, CancelToken, Clock, DeviceInfo, Frame, FrameRequest,
    Shutter,
};
use crate::controller::driver::ControllerCountersSnapshot;
use crate::controller::{Controller, ControllerError, ControllerInfo, Event, Shelf};
use crate::formats::calibration_set::CalibrationSet;

/// The photograph's settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PhotographSettings {
    pub exposure_s: f64,
    pub binning: u32,
    pub led_percent: u8,
}

/// Who and what is imaged (copied into the acquisition folder).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Subjects {
    pub study_id: Option<String>,
    pub subject_ids: Vec<String>,
    pub injection_time: Option<DateTime<Utc>>,
    pub view: Option<String>,
}

/// Everything a sequence needs to know.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SequenceConfig {
    pub instrument_id: String,
    pub cooling_setpoint_c: f64,
    /// Stage position (sets the field of view).
    pub shelf: char,
    /// Emission filter wheel position (0: open).
    pub filter_position: u8,
    /// The lens's f-number.
    pub f_number: f64,
    pub photograph: PhotographSettings,
    pub auto_exposure: AutoExposureConfig,
    pub dark: DarkPolicy,
    pub subjects: Subjects,
}

impl SequenceConfig {
    /// The simulated instrument's settings, with its dark library at `library`.
    pub fn simulated(library: PathBuf, injection_time: Option<DateTime<Utc>>) -> Self {
        SequenceConfig {
            instrument_id: "sim-ivis-01".into(),
            cooling_setpoint_c: -90.0,
            shelf: 'D',
            filter_position: 0,
            f_number: 1.0,
            photograph: PhotographSettings {
                exposure_s: 0.2,
                binning: 4,
                led_percent: 100,
            },
            auto_exposure: AutoExposureConfig::default(),
            dark: DarkPolicy {
                library,
                max_age_days: 90.0,
                frames: 5,
                retake_after_relock: false,
            },
            subjects: Subjects {
                study_id: Some("SIM-STUDY-1".into()),
                subject_ids: (101..=105).map(|i| format!("M{i}")).collect(),
                injection_time,
                view: Some("dorsal".into()),
            },
        }
    }
}

/// A sequence that could not finish. Messages say what to do.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error(transparent)]
    Camera(#[from] CameraError),
    #[error(transparent)]
    Controller(#[from] ControllerError),
    #[error("the imager's door is open; close it and start the capture again")]
    DoorOpen,
    #[error("the imager's door was opened during the {during}; the frame was discarded and nothing was written; close the door and capture again")]
    DoorOpened { during: String },
    #[error("the {during} was aborted: {reason}; nothing was written")]
    Aborted { during: String, reason: String },
    #[error("dark library {library}: {problem}")]
    Dark { library: String, problem: String },
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    AutoExposure(#[from] super::autoexpose::AutoExposureConfigError),
    #[error("{path}: {problem}")]
    Output { path: String, problem: String },
    #[error("capture cancelled; nothing was written")]
    Cancelled,
}

impl CaptureError {
    fn from_camera(e: CameraError, during: &str) -> CaptureError {
        match e {
            CameraError::Aborted(reason) if reason.contains("door") => CaptureError::DoorOpened {
                during: during.into(),
            },
            CameraError::Aborted(reason) => CaptureError::Aborted {
                during: during.into(),
                reason,
            },
            CameraError::Cancelled => CaptureError::Cancelled,
            e => CaptureError::Camera(e),
        }
    }
}

/// One auto-exposure frame and what was decided from it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExposureStep {
    /// "probe", "final" or "retake".
    pub role: &'static str,
    pub exposure_s: f64,
    pub binning: u32,
    pub stats: FrameStats,
}

/// How the luminescent exposure was chosen.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AutoExposureReport {
    pub steps: Vec<ExposureStep>,
    pub exposure_s: f64,
    pub binning: u32,
    pub predicted_peak_adu: f64,
    pub saturation_unavoidable: bool,
    /// The final frame still has saturated pixels (flagged by processing).
    pub saturated: bool,
}

/// A frame's summary in the report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FrameSummary {
    pub block_id: u64,
    pub started_at: DateTime<Utc>,
    pub exposure_s: f64,
    pub binning: u32,
    pub sensor_temp_c: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_since_injection_s: Option<f64>,
}

impl FrameSummary {
    fn of(f: &Frame, injection: Option<DateTime<Utc>>) -> Self {
        FrameSummary {
            block_id: f.block_id,
            started_at: f.started_at,
            exposure_s: f.exposure_s,
            binning: f.binning,
            sensor_temp_c: f.sensor_temp_c,
            time_since_injection_s: injection
                .map(|i| (f.started_at - i).num_milliseconds() as f64 / 1000.0),
        }
    }
}

/// State of the imager when the sequence started.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Prepared {
    pub camera: DeviceInfo,
    pub controller: ControllerInfo,
    pub shelf: char,
    pub fov_cm: f64,
    pub filter: String,
    pub cooling_setpoint_c: f64,
    pub locked_temp_c: f64,
    /// Time spent waiting for the cooling lock, s.
    pub cooling_wait_s: f64,
}

/// `capture.json`: how an acquisition folder came to be.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CaptureReport {
    pub schema: &'static str,
    pub schema_version: u32,
    pub sequence: &'static str,
    pub simulated: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub faults_injected: Vec<String>,
    pub prepared: Prepared,
    pub photograph: Option<FrameSummary>,
    pub auto_exposure: Option<AutoExposureReport>,
    pub luminescent: FrameSummary,
    pub dark: DarkReport,
    pub camera_counters: CameraCountersSnapshot,
    pub controller_counters: ControllerCountersSnapshot,
    /// A kinetic series' frame: which series, and which frame of it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub series: Option<crate::sequence::SeriesFrameRef>,
}

/// One acquisition, ready to be written.
#[derive(Debug, Clone)]
pub struct Capture {
    pub meta: AcquisitionMeta,
    pub luminescent: Frame,
    pub photograph: Option<Frame>,
    pub report: CaptureReport,
}

impl Capture {
    /// The frames and metadata as an acquisition folder holds them (a copy of the pixels).
    pub fn raw_acquisition(&self) -> RawAcquisition {
        RawAcquisition {
            meta: self.meta.clone(),
            luminescent_adu: (*self.luminescent.pixels).clone(),
            photograph_adu: self.photograph.as_ref().map(|p| (*p.pixels).clone()),
            imported_rois: vec![],
            source: SourceFormat::LumiqFolder,
        }
    }
}

/// A camera and the imager's controller, driven together.
pub struct Imager {
    pub camera: Camera,
    pub controller: Controller,
    pub cancel: CancelToken,
    /// When the cooling lock was last gained, as seen by [`Imager::prepare`] and
    /// [`Imager::poll_cooling`].
    pub cooling: CoolingLock,
    clock: Arc<dyn Clock>,
    simulated: bool,
}

impl std::fmt::Debug for Imager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Imager")
            .field("camera", &self.camera)
            .finish()
    }
}

impl Imager {
    pub fn new(camera: Camera, controller: Controller, simulated: bool) -> Self {
        let clock = camera.clock();
        Imager {
            camera,
            controller,
            cancel: CancelToken::new(),
            cooling: CoolingLock::default(),
            clock,
            simulated,
        }
    }

    pub fn clock(&self) -> Arc<dyn Clock> {
        self.clock.clone()
    }

    /// Read the sensor's temperature and cooling lock, and note a lock lost or gained in
    /// [`Imager::cooling`]. Returns (temperature °C, locked).
    pub fn poll_cooling(&mut self) -> Result<(f64, bool), CameraError> {
        let temp_c = self.camera.sensor_temp_c()?;
        let locked = self.camera.read("TemperatureLocked")? == 1;
        self.note_lock(locked);
        Ok((temp_c, locked))
    }

    fn note_lock(&mut self, locked: bool) {
        let setpoint_c = self.camera.cooling_setpoint_c();
        match self
            .cooling
            .observe(locked, setpoint_c, self.clock.utc_now())
        {
            LockChange::Gained => {
                tracing::info!("cooling locked at {:.1} °C", setpoint_c.unwrap_or(f64::NAN))
            }
            LockChange::Lost => tracing::warn!("the camera lost its cooling lock"),
            LockChange::None => {}
        }
    }

    fn check_cancel(&self) -> Result<(), CaptureError> {
        if self.cancel.is_cancelled() {
            Err(CaptureError::Cancelled)
        } else {
            Ok(())
        }
    }

    /// Door closed and locked, stage and filter in place, LED off, cooling locked.
    pub fn prepare(&mut self, cfg: &SequenceConfig) -> Result<Prepared, CaptureError> {
        self.check_cancel()?;
        let controller = self.controller.identify()?;
        self.controller.poll_events()?;
        let (open, _) = self.controller.door()?;
        if open {
            return Err(CaptureError::DoorOpen);
        }
        match self.controller.set_lock(true) {
            Err(ControllerError::DoorOpen) => return Err(CaptureError::DoorOpen),
            r => r?,
        }
        let shelf = Shelf::from_letter(&cfg.shelf.to_string()).ok_or_else(|| {
            CaptureError::Config(format!("shelf {:?}: use A, B, C or D", cfg.shelf))
        })?;
        let fov_cm = self.controller.set_shelf(shelf)?;
        let filter = self.controller.set_filter(cfg.filter_position)?;
        self.controller.set_led(0)?;
        self.camera.set_cooling(cfg.cooling_setpoint_c)?;
        // A lock lost since the last look is seen here, before waiting for it again.
        self.poll_cooling()?;
        let t0 = self.clock.elapsed();
        let locked_temp_c = self
            .camera
            .wait_for_lock(&self.cancel)
            .map_err(|e| CaptureError::from_camera(e, "cooling"))?;
        self.note_lock(true);
        Ok(Prepared {
            camera: self.camera.info().clone(),
            controller,
            shelf: cfg.shelf,
            fov_cm,
            filter,
            cooling_setpoint_c: cfg.cooling_setpoint_c,
            locked_temp_c,
            cooling_wait_s: (self.clock.elapsed() - t0).as_secs_f64(),
        })
    }

    /// Take one frame under the interlock: events polled between transfers, the door
    /// asked for afterwards.
    pub(super) fn frame(&mut self, req: &FrameRequest, what: &str) -> Result<Frame, CaptureError> {
        self.check_cancel()?;
        let ctrl = &mut self.controller;
        let mut door_event = false;
        let mut watch = || match ctrl.poll_events() {
            Ok(events) if events.contains(&Event::DoorOpened) => {
                door_event = true;
                Some("the door was opened".to_string())
            }
            Ok(_) => None,
            Err(e) => Some(format!("the interlock cannot be checked: {e}")),
        };
        let frame = self
            .camera
            .acquire(req, &self.cancel, &mut watch)
            .map_err(|e| CaptureError::from_camera(e, what))?;
        let events = self.controller.poll_events()?;
        let (open, _) = self.controller.door()?;
        let events_after = self.controller.poll_events()?;
        if open
            || door_event
            || events.contains(&Event::DoorOpened)
            || events_after.contains(&Event::DoorOpened)
        {
            let c = self.camera.counters();
            CameraCounters::inc(&c.aborted);
            CameraCounters::inc(&c.frames_discarded);
            return Err(CaptureError::DoorOpened {
                during: what.into(),
            });
        }
        Ok(frame)
    }

    /// The LED-lit photograph (the LED is off again afterwards, whatever happened).
    pub fn photograph(&mut self, cfg: &SequenceConfig) -> Result<Frame, CaptureError> {
        let p = &cfg.photograph;
        self.controller.set_led(p.led_percent)?;
        let r = self.frame(
            &FrameRequest {
                exposure_s: p.exposure_s,
                binning: p.binning,
                shutter: Shutter::Auto,
                require_lock: false,
            },
            "photograph",
        );
        let off = self.controller.set_led(0);
        let f = r?;
        off?;
        Ok(f)
    }

    /// The luminescent frame with auto-exposure.
    pub fn luminescent(
        &mut self,
        cfg: &SequenceConfig,
    ) -> Result<(Frame, AutoExposureReport), CaptureError> {
        let ae = &cfg.auto_exposure;
        ae.validate()?;
        let mut steps = Vec::new();
        let mut decision = autoexpose::first_probe(ae);
        let mut probes = 0;
        let (exposure_s, binning, predicted, unavoidable) = loop {
            match decision {
                Decision::Probe {
                    exposure_s,
                    binning,
                } => {
                    probes += 1;
                    let f = self.frame(&lum_request(exposure_s, binning), "auto-exposure probe")?;
                    let stats = autoexpose::frame_stats(&f.pixels, ae.saturation_adu);
                    tracing::info!(
                        "auto-exposure probe {probes}: {exposure_s} s at binning {binning}: peak {:.0} ADU over a {:.0} ADU base",
                        stats.peak_adu,
                        stats.base_adu
                    );
                    steps.push(ExposureStep {
                        role: "probe",
                        exposure_s,
                        binning,
                        stats,
                    });
                    decision = autoexpose::after_probe(ae, exposure_s, binning, &stats, probes);
                }
                Decision::Final {
                    exposure_s,
                    binning,
                    predicted_peak_adu,
                    saturation_unavoidable,
                } => {
                    break (
                        exposure_s,
                        binning,
                        predicted_peak_adu,
                        saturation_unavoidable,
                    )
                }
            }
        };
        let mut t = exposure_s;
        let mut retakes = 0;
        loop {
            let f = self.frame(&lum_request(t, binning), "luminescent exposure")?;
            let stats = autoexpose::frame_stats(&f.pixels, ae.saturation_adu);
            steps.push(ExposureStep {
                role: if retakes == 0 { "final" } else { "retake" },
                exposure_s: t,
                binning,
                stats,
            });
            match autoexpose::retake(ae, t, &stats, retakes) {
                Some(shorter) => {
                    tracing::warn!(
                        "luminescent frame at {t} s saturates {} pixels; retaking at {shorter} s",
                        stats.saturated_px
                    );
                    retakes += 1;
                    t = shorter;
                }
                None => {
                    let report = AutoExposureReport {
                        steps,
                        exposure_s: t,
                        binning,
                        predicted_peak_adu: predicted,
                        saturation_unavoidable: unavoidable,
                        saturated: stats.saturated_px > 0,
                    };
                    return Ok((f, report));
                }
            }
        }
    }

    /// The dark for `lum`: from the library, or acquired with the shutter closed and
    /// added to it.
    pub fn dark(
        &mut self,
        cfg: &SequenceConfig,
        lum: &Frame,
        meta: &AcquisitionMeta,
    ) -> Result<DarkReport, CaptureError> {
        let lib = &cfg.dark.library;
        let dark_err = |problem: String| CaptureError::Dark {
            library: lib.display().to_string(),
            problem,
        };
        let set = CalibrationSet::load(lib).map_err(|e| dark_err(format!("{e}")))?;
        if set.index.instrument_id != cfg.instrument_id {
            return Err(dark_err(format!(
                "is for instrument {:?}, not {:?}; pass the library of this instrument",
                set.index.instrument_id, cfg.instrument_id
            )));
        }
        let now = self.clock.utc_now();
        let verdict = dark::check_library(
            &set.index,
            lum.binning,
            lum.exposure_s,
            lum.sensor_temp_c,
            now,
            cfg.dark.max_age_days,
            cfg.dark.retake_after_relock.then_some(&self.cooling),
        );
        match verdict {
            LibraryDark::Usable(d) => Ok(DarkReport {
                source: DarkSource::Library,
                reason: None,
                library: lib.display().to_string(),
                library_id: set.index.id.clone(),
                file: d.file,
                binning: d.binning,
                exposure_s: d.exposure_s,
                sensor_temp_c: d.sensor_temp_c,
                frames_acquired: 0,
            }),
            LibraryDark::Needed { reason } => {
                tracing::info!("taking {} darks: {reason}", cfg.dark.frames);
                if !set.index.bias.iter().any(|b| b.binning == lum.binning) {
                    return Err(dark_err(format!(
                        "has no bias at binning {}; add bias frames at that binning with `lumiq calibrate`",
                        lum.binning
                    )));
                }
                let req = FrameRequest {
                    exposure_s: lum.exposure_s,
                    binning: lum.binning,
                    shutter: Shutter::Closed,
                    require_lock: true,
                };
                let mut darks = Vec::new();
                for _ in 0..cfg.dark.frames.max(2) {
                    darks.push(self.frame(&req, "dark exposure")?);
                }
                let entry = dark::add_darks_to_library(
                    lib,
                    &set.index,
                    meta,
                    &darks,
                    self.camera.cooling_setpoint_c(),
                    self.clock.utc_now(),
                )
                .map_err(|e| {
                    dark_err(format!(
                        "cannot add the new darks: {}",
                        crate::errors::one_line(&e)
                    ))
                })?;
                Ok(DarkReport {
                    source: DarkSource::Acquired,
                    reason: Some(reason),
                    library: lib.display().to_string(),
                    library_id: set.index.id.clone(),
                    file: entry.file,
                    binning: entry.binning,
                    exposure_s: entry.exposure_s,
                    sensor_temp_c: entry.sensor_temp_c,
                    frames_acquired: darks.len(),
                })
            }
        }
    }

    fn meta(
        &self,
        cfg: &SequenceConfig,
        prepared: &Prepared,
        lum: &Frame,
        photo: Option<&Frame>,
    ) -> AcquisitionMeta {
        AcquisitionMeta {
            instrument_id: cfg.instrument_id.clone(),
            acquired_at: lum.started_at,
            settings: AcquisitionSettings {
                exposure_s: lum.exposure_s,
                binning: lum.binning,
                f_number: cfg.f_number,
                fov_cm: prepared.fov_cm,
                sensor_temp_c: lum.sensor_temp_c,
                emission_filter: prepared.filter.clone(),
                shelf: Some(prepared.shelf.to_string()),
            },
            study_id: cfg.subjects.study_id.clone(),
            subject_ids: cfg.subjects.subject_ids.clone(),
            injection_time: cfg.subjects.injection_time,
            view: cfg.subjects.view.clone(),
            photograph: photo.map(|p| PhotographMeta {
                exposure_s: p.exposure_s,
                binning: p.binning,
            }),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn report(
        &self,
        sequence: &'static str,
        cfg: &SequenceConfig,
        prepared: &Prepared,
        photo: Option<&Frame>,
        ae: Option<AutoExposureReport>,
        lum: &Frame,
        dark: DarkReport,
    ) -> CaptureReport {
        let inj = cfg.subjects.injection_time;
        CaptureReport {
            schema: "lumiq.capture",
            schema_version: 1,
            sequence,
            simulated: self.simulated,
            faults_injected: Vec::new(),
            prepared: prepared.clone(),
            photograph: photo.map(|p| FrameSummary::of(p, inj)),
            auto_exposure: ae,
            luminescent: FrameSummary::of(lum, inj),
            dark,
            camera_counters: self.camera.counters_snapshot(),
            controller_counters: self.controller.counters().snapshot(),
            series: None,
        }
    }

    /// Release the door lock (best effort: the sequence's own error matters more).
    pub(super) fn finish(&mut self) {
        if let Err(e) = self.controller.set_led(0) {
            tracing::warn!("switching the LED off: {e}");
        }
        if let Err(e) = self.controller.set_lock(false) {
            tracing::warn!("releasing the door lock: {e}");
        }
    }

    /// Photograph, auto-exposed luminescent frame and its dark.
    pub fn standard(&mut self, cfg: &SequenceConfig) -> Result<Capture, CaptureError> {
        let r = self.standard_inner(cfg);
        self.finish();
        r
    }

    fn standard_inner(&mut self, cfg: &SequenceConfig) -> Result<Capture, CaptureError> {
        let prepared = self.prepare(cfg)?;
        let photo = self.photograph(cfg)?;
        let (lum, ae) = self.luminescent(cfg)?;
        let meta = self.meta(cfg, &prepared, &lum, Some(&photo));
        let dark = self.dark(cfg, &lum, &meta)?;
        self.check_cancel()?;
        let report = self.report(
            "standard",
            cfg,
            &prepared,
            Some(&photo),
            Some(ae),
            &lum,
            dark,
        );
        Ok(Capture {
            meta,
            luminescent: lum,
            photograph: Some(photo),
            report,
        })
    }

    /// A kinetic series: one photograph, auto-exposure once, then `n` luminescent frames
    /// started every `interval` with the same exposure and binning, and their dark.
    pub fn kinetic(
        &mut self,
        cfg: &SequenceConfig,
        n: usize,
        interval: Duration,
    ) -> Result<Vec<Capture>, CaptureError> {
        let r = self.kinetic_inner(cfg, n, interval);
        self.finish();
        r
    }

    fn kinetic_inner(
        &mut self,
        cfg: &SequenceConfig,
        n: usize,
        interval: Duration,
    ) -> Result<Vec<Capture>, CaptureError> {
        if n == 0 {
            return Err(CaptureError::Config(
                "a kinetic series needs at least one frame".into(),
            ));
        }
        let prepared = self.prepare(cfg)?;
        let photo = self.photograph(cfg)?;
        let (first, ae) = self.luminescent(cfg)?;
        if interval.as_secs_f64() < first.exposure_s {
            return Err(CaptureError::Config(format!(
                "the interval ({} s) is shorter than the exposure auto-exposure chose ({} s); use a longer interval",
                interval.as_secs_f64(),
                first.exposure_s
            )));
        }
        // Frame k starts k intervals after the first one started.
        let since_first = (self.clock.utc_now() - first.started_at)
            .to_std()
            .unwrap_or(Duration::ZERO);
        let t0 = self.clock.elapsed().saturating_sub(since_first);
        let mut frames = vec![first.clone()];
        for k in 1..n {
            let start = t0 + interval * k as u32;
            let now = self.clock.elapsed();
            if start > now {
                let wait = start - now;
                // Sleep in short steps so a cancellation is seen.
                let mut left = wait;
                while left > Duration::ZERO {
                    self.check_cancel()?;
                    let step = left.min(Duration::from_secs(1));
                    self.clock.sleep(step);
                    left -= step;
                }
            }
            frames.push(self.frame(
                &lum_request(first.exposure_s, first.binning),
                "kinetic frame",
            )?);
        }
        let meta0 = self.meta(cfg, &prepared, &first, Some(&photo));
        let dark = self.dark(cfg, &first, &meta0)?;
        let mut out = Vec::new();
        for (i, f) in frames.into_iter().enumerate() {
            let meta = self.meta(cfg, &prepared, &f, Some(&photo));
            let report = self.report(
                "kinetic",
                cfg,
                &prepared,
                Some(&photo),
                (i == 0).then(|| ae.clone()),
                &f,
                dark.clone(),
            );
            out.push(Capture {
                meta,
                luminescent: f,
                photograph: Some(photo.clone()),
                report,
            });
        }
        Ok(out)
    }
}

fn lum_request(exposure_s: f64, binning: u32) -> FrameRequest {
    FrameRequest {
        exposure_s,
        binning,
        shutter: Shutter::Auto,
        require_lock: true,
    }
}
