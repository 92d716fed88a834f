//! Opening the instrument the settings name: the USB camera or the simulated one, the
//! serial controller or the simulated one, and the acquisition sequence, with the parts a
//! simulated instrument must keep alive.
//!
//! Owns: turning `[camera]`, `[controller]` and `[acquisition]` into an [`Imager`] and a
//! [`SequenceConfig`]. Does not own the devices' protocols ([`crate::camera`],
//! [`crate::controller`]).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::acquire::{
    simulated_imager, simulated_sequence, Imager, SequenceConfig, SimulatedOptions,
};
use crate::camera::usb::{UsbCameraConfig, UsbConnector};
use crate::camera::{Camera, CameraConfig, RegisterMap, SystemClock};
use crate::config::{CameraKind, ControllerKind, Settings};
use crate::controller::{Controller, ControllerConfig};

use super::DaemonError;

/// The opened instrument and what keeps its simulated parts alive.
pub(crate) struct Instrument {
    pub(crate) imager: Imager,
    pub(crate) sequence: SequenceConfig,
    pub(crate) keep: Box<dyn std::any::Any + Send>,
    pub(crate) truth: TruthFn,
    /// The simulated instrument's box (door, LED, flat-field panel); `None` for hardware.
    pub(crate) sim_box: Option<crate::controller::SimBox>,
    /// Brings the mounted reference source into view for a QC acquisition (`true`) and
    /// takes it away after (`false`). On the real instrument the source stays mounted, so
    /// this does nothing; the simulated box lays the source on an empty stage.
    pub(crate) qc_source: QcSourceFn,
}

/// See [`Instrument::qc_source`].
pub(crate) type QcSourceFn = Box<dyn Fn(bool) + Send>;

/// Open the instrument `[camera]` and `[controller]` name, with the sequence settings of
/// `[acquisition]` and the calibration set at `calibration_dir` (also `lumiq calibrate
/// --guided`'s instrument).
pub(crate) fn open_instrument(
    settings: &Settings,
    calibration_dir: PathBuf,
) -> Result<Instrument, DaemonError> {
    let camera_cfg = CameraConfig {
        lock_timeout: Duration::from_secs(settings.acquisition.cooling_timeout_s),
        ..CameraConfig::default()
    };
    let mut sim_box_out = None;
    let mut qc_source: QcSourceFn = Box::new(|_| {});
    let (imager, mut sequence, keep, truth): (Imager, SequenceConfig, Box<dyn std::any::Any + Send>, TruthFn) =
        match (settings.camera.kind, settings.controller.kind) {
            (CameraKind::Simulated, ControllerKind::Simulated) => {
                let opts = SimulatedOptions {
                    seed: settings.camera.seed,
                    camera: camera_cfg,
                    response: settings.camera.sim_response,
                    ..SimulatedOptions::default()
                };
                let epoch = opts.epoch;
                let sim = simulated_imager(opts)?;
                let sequence = simulated_sequence(calibration_dir, epoch);
                let crate::acquire::SimulatedImager {
                    imager,
                    camera,
                    sim_box,
                    clock,
                    controller,
                } = sim;
                sim_box_out = Some(sim_box.clone());
                if let Some(procedure) = settings.qc_procedure().ok().flatten().filter(|_| settings.qc_mounted()) {
                    let (bx, clk) = (sim_box.clone(), clock.clone());
                    qc_source = Box::new(move |present| {
                        use crate::camera::Clock as _;
                        let disc = present.then(|| crate::simulate::acquisition::LightDisc {
                            centre_cm: procedure.placement.centre_cm,
                            radius_cm: procedure.placement.radius_cm,
                            radiance: procedure.source.expected_radiance(clk.utc_now()),
                        });
                        bx.set_reference_source(disc);
                    });
                }
                let cam = camera.clone();
                let truth: TruthFn = Box::new(move |c: &crate::acquire::Capture| {
                    cam.truth(c.meta.binning, c.meta.fov_cm)
                });
                (imager, sequence, Box::new((camera, sim_box, clock, controller)), truth)
            }
            (CameraKind::Usb, ControllerKind::Serial) => {
                let map = RegisterMap::builtin();
                let usb = UsbCameraConfig::new(map.vendor_id, map.product_id, settings.camera.serial.clone());
                let mut ccfg = ControllerConfig::new(settings.controller.path.display().to_string());
                ccfg.baud_rate = settings.controller.baud;
                let controller = Controller::open(ccfg).map_err(crate::acquire::CaptureError::from)?;
                let camera = Camera::open(
                    Box::new(UsbConnector::new(usb)),
                    map,
                    Arc::new(SystemClock::new()),
                    camera_cfg,
                )
                .map_err(crate::acquire::CaptureError::from)?;
                let mut sequence = SequenceConfig::simulated(calibration_dir, None);
                sequence.subjects = Default::default();
                (Imager::new(camera, controller, false), sequence, Box::new(()), Box::new(|_: &crate::acquire::Capture| None))
            }
            (c, k) => {
                return Err(DaemonError::Setup(format!(
                    "camera.kind = {c:?} with controller.kind = {k:?}: use \"simulated\" for both (the simulated imager) or \"usb\" with \"serial\" (the real one)"
                )))
            }
        };
    let shelf = settings.acquisition.shelf.chars().next().unwrap_or('D');
    sequence.instrument_id = settings.instrument.id.clone();
    sequence.cooling_setpoint_c = settings.camera.cooling_setpoint_c;
    sequence.shelf = shelf;
    sequence.filter_position = settings.acquisition.filter_position;
    sequence.f_number = settings.acquisition.f_number;
    sequence.dark.max_age_days = settings.acquisition.dark_max_age_days;
    sequence.dark.retake_after_relock = settings.acquisition.dark_retake_after_relock;
    sequence.auto_exposure.binnings = settings.acquisition.binnings.clone();
    sequence.auto_exposure.validate().map_err(|e| {
        DaemonError::Setup(format!(
            "acquisition.binnings = {:?}: {e} (env LUMIQ_ACQUISITION__BINNINGS)",
            settings.acquisition.binnings
        ))
    })?;
    Ok(Instrument {
        imager,
        sequence,
        keep,
        truth,
        sim_box: sim_box_out,
        qc_source,
    })
}

type TruthFn = Box<dyn Fn(&crate::acquire::Capture) -> Option<crate::simulate::Truth> + Send>;
