//! The camera driver against the simulated camera, through the full USB codec and the
//! transport seam: registers, pending acknowledges, the cooling lock, frames, every fault
//! knob (recovered once, failing cleanly when persistent), the reconnect loop,
//! cancellation and the interlock hook. Time is simulated: nothing here sleeps.

use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use lumiq::camera::control::Status;
use lumiq::camera::sim_scene::FramePhysics;
use lumiq::camera::{
    Camera, CameraConfig, CameraError, CancelToken, Clock, FaultKnob, FaultPlan, FrameRequest,
    RegisterMap, Shutter, SimCamera, SimCameraConfig, SimClock,
};

struct Rig {
    camera: Camera,
    sim: SimCamera,
    clock: Arc<SimClock>,
}

fn rig_with(faults: Vec<FaultPlan>, physics: FramePhysics, cfg: CameraConfig) -> Rig {
    let clock = Arc::new(SimClock::new(
        Utc.with_ymd_and_hms(2026, 3, 2, 9, 0, 0).unwrap(),
    ));
    let dyn_clock: Arc<dyn Clock> = clock.clone();
    let sim = SimCamera::new(
        SimCameraConfig {
            physics,
            faults,
            ..SimCameraConfig::default()
        },
        dyn_clock.clone(),
        None,
    );
    let camera = Camera::open(
        Box::new(sim.connector()),
        RegisterMap::builtin(),
        dyn_clock,
        cfg,
    )
    .expect("the simulated camera opens");
    Rig { camera, sim, clock }
}

fn rig(faults: Vec<FaultPlan>) -> Rig {
    rig_with(faults, FramePhysics::Pattern, CameraConfig::default())
}

fn never() -> impl FnMut() -> Option<String> {
    || None
}

fn lum(exposure_s: f64, binning: u32) -> FrameRequest {
    FrameRequest {
        exposure_s,
        binning,
        shutter: Shutter::Auto,
        require_lock: true,
    }
}

/// The pattern the simulated camera sends with `FramePhysics::Pattern` (seed 0 not known
/// to the test: check its structure instead).
fn assert_pattern(f: &lumiq::camera::Frame) {
    let p = &f.pixels;
    let (h, w) = p.dim();
    assert_eq!(
        (h, w),
        (2048 / f.binning as usize, 2048 / f.binning as usize)
    );
    for y in [0usize, 1, h / 2, h - 1] {
        for x in [0usize, 1, w / 3, w - 1] {
            let next = p[[y, (x + 1) % w]] as i64 - p[[y, x]] as i64;
            if x + 1 < w && (p[[y, x]] as i64 - 500) % 1024 < 1017 {
                assert_eq!(next, 7, "pixel ({x},{y}) breaks the ramp");
            }
        }
    }
}

#[test]
fn identity_and_registers_round_trip_through_the_codec() {
    let mut r = rig(vec![]);
    let info = r.camera.info().clone();
    assert_eq!(info.serial, "SIM-0001");
    assert_eq!((info.sensor_width_px, info.sensor_height_px), (2048, 2048));
    r.camera.write("ExposureTime", 2_500_000).unwrap();
    assert_eq!(r.camera.read("ExposureTime").unwrap(), 2_500_000);
    // Binning answers with PENDING_ACK first.
    r.camera.write("Binning", 8).unwrap();
    assert_eq!(r.camera.read("PayloadSize").unwrap(), 256 * 256 * 2);
    assert!(r.camera.counters_snapshot().pending_acks >= 1);
    // The host checks values against the map before sending...
    let e = r.camera.write("Binning", 3).unwrap_err();
    assert!(matches!(e, CameraError::BadValue { .. }), "{e}");
    assert!(e.to_string().contains("not one of"), "{e}");
    // ...and the device refuses what the map forbids.
    let e = r.camera.write("SensorTemperature", 0).unwrap_err();
    assert!(e.to_string().contains("read-only"), "{e}");
    assert_eq!(r.camera.read_string("FirmwareVersion").unwrap(), "1.4.2");
    let _ = Status::WriteProtect;
}

#[test]
fn cooling_settles_and_locks_in_simulated_time() {
    let mut r = rig(vec![]);
    assert!((r.camera.sensor_temp_c().unwrap() - 20.0).abs() < 0.1);
    r.camera.set_cooling(-90.0).unwrap();
    let t0 = r.clock.elapsed();
    let wall = std::time::Instant::now();
    let temp = r.camera.wait_for_lock(&CancelToken::new()).unwrap();
    assert!((temp + 90.0).abs() <= 0.5, "{temp}");
    let waited = (r.clock.elapsed() - t0).as_secs_f64();
    assert!(
        (300.0..900.0).contains(&waited),
        "cool-down took {waited} s of simulated time"
    );
    assert!(
        wall.elapsed() < Duration::from_secs(5),
        "simulated time must not sleep"
    );
}

#[test]
fn cooling_that_never_locks_is_a_clear_timeout() {
    let cfg = CameraConfig {
        lock_timeout: Duration::from_secs(60),
        ..CameraConfig::default()
    };
    let mut r = rig_with(vec![], FramePhysics::Pattern, cfg);
    r.camera.set_cooling(-90.0).unwrap();
    let e = r.camera.wait_for_lock(&CancelToken::new()).unwrap_err();
    let text = e.to_string();
    assert!(matches!(e, CameraError::CoolingTimeout { .. }), "{text}");
    assert!(
        text.contains("did not lock at -90.0 °C within 60 s"),
        "{text}"
    );
}

#[test]
fn frames_arrive_whole_at_every_binning_and_transfer_size() {
    for (binning, transfer) in [(8u32, 1u32 << 20), (4, 4096), (1, 1 << 20)] {
        let cfg = CameraConfig {
            transfer_size: transfer,
            ..CameraConfig::default()
        };
        let mut r = rig_with(vec![], FramePhysics::Pattern, cfg);
        r.camera.set_cooling(-90.0).unwrap();
        let t0 = r.clock.elapsed();
        let f = r
            .camera
            .acquire(&lum(30.0, binning), &CancelToken::new(), &mut never())
            .unwrap();
        assert_eq!(f.binning, binning);
        assert_eq!(f.exposure_s, 30.0);
        assert!(f.shutter_open && f.temperature_locked);
        assert!((f.sensor_temp_c + 90.0).abs() < 0.6, "{}", f.sensor_temp_c);
        assert_pattern(&f);
        assert!(r.clock.elapsed() - t0 >= Duration::from_secs(30));
        let c = r.camera.counters_snapshot();
        assert_eq!((c.frames_ok, c.frames_discarded), (1, 0));
    }
}

#[test]
fn darks_are_taken_with_the_shutter_closed_and_show_dark_current() {
    let mut r = rig_with(
        vec![],
        FramePhysics::Scene(lumiq::simulate::SceneSpec::default()),
        CameraConfig::default(),
    );
    r.camera.set_cooling(-90.0).unwrap();
    let req = FrameRequest {
        shutter: Shutter::Closed,
        ..lum(60.0, 8)
    };
    let cold = r
        .camera
        .acquire(&req, &CancelToken::new(), &mut never())
        .unwrap();
    assert!(!cold.shutter_open);
    // Warmer sensor: more dark current, same exposure.
    r.camera.set_cooling(-40.0).unwrap();
    r.camera.wait_for_lock(&CancelToken::new()).unwrap();
    let warm = r
        .camera
        .acquire(&req, &CancelToken::new(), &mut never())
        .unwrap();
    let mean = |f: &lumiq::camera::Frame| {
        f.pixels.iter().map(|&v| v as f64).sum::<f64>() / f.pixels.len() as f64
    };
    assert!(
        mean(&warm) > mean(&cold) + 20.0,
        "{} vs {}",
        mean(&warm),
        mean(&cold)
    );
    // The lit frame of the same scene is far brighter than the dark.
    r.camera.set_cooling(-90.0).unwrap();
    let lit = r
        .camera
        .acquire(&lum(60.0, 8), &CancelToken::new(), &mut never())
        .unwrap();
    let max = |f: &lumiq::camera::Frame| *f.pixels.iter().max().unwrap();
    assert!(max(&lit) > 5000, "{}", max(&lit));
}

fn check_recovers(knob: FaultKnob) {
    let mut r = rig(vec![FaultPlan::once(knob)]);
    r.camera.set_cooling(-90.0).unwrap();
    let f = r
        .camera
        .acquire(&lum(30.0, 8), &CancelToken::new(), &mut never())
        .unwrap_or_else(|e| panic!("{}: {e}", knob.name()));
    assert_pattern(&f);
    assert_eq!(r.sim.faults_fired().get(&knob), Some(&1));
    let c = r.camera.counters_snapshot();
    assert_eq!(c.frames_ok, 1, "{}", knob.name());
    assert_eq!(c.frames_discarded, 1, "{}: {c:?}", knob.name());
    assert_eq!(c.frame_retries, 1, "{}", knob.name());
    let specific = match knob {
        FaultKnob::DisconnectMidPayload => {
            assert_eq!(c.disconnects, 1);
            assert!(
                c.reconnect_attempts > 1,
                "the camera stays away for a while: {c:?}"
            );
            c.reconnects
        }
        FaultKnob::TruncatedPayload => c.truncated_payloads,
        FaultKnob::BadTrailer => c.bad_trailer_status,
        FaultKnob::Stall => c.stalls_cleared,
        FaultKnob::WrongBlockId => c.wrong_block_ids,
        FaultKnob::DoorOpen => unreachable!(),
    };
    assert_eq!(specific, 1, "{}: {c:?}", knob.name());
    // The next frame is clean.
    r.camera
        .acquire(&lum(30.0, 8), &CancelToken::new(), &mut never())
        .unwrap();
}

#[test]
fn every_transport_fault_is_recovered_once() {
    for knob in FaultKnob::ALL.into_iter().filter(|k| k.recoverable()) {
        check_recovers(knob);
    }
}

#[test]
fn a_persistent_fault_fails_cleanly_after_the_configured_attempts() {
    for knob in FaultKnob::ALL.into_iter().filter(|k| k.recoverable()) {
        let mut r = rig(vec![FaultPlan::always(knob)]);
        r.camera.set_cooling(-90.0).unwrap();
        let e = r
            .camera
            .acquire(&lum(30.0, 8), &CancelToken::new(), &mut never())
            .unwrap_err();
        let text = e.to_string();
        assert!(
            matches!(e, CameraError::FrameFailed { attempts: 3, .. }),
            "{}: {text}",
            knob.name()
        );
        assert!(text.contains("nothing was kept"), "{text}");
        let c = r.camera.counters_snapshot();
        assert_eq!(
            (c.frames_ok, c.frames_discarded),
            (0, 3),
            "{}: {c:?}",
            knob.name()
        );
    }
}

#[test]
fn the_reconnect_loop_gives_up_with_a_clear_error() {
    let cfg = CameraConfig {
        reconnect_timeout: Duration::from_secs(10),
        ..CameraConfig::default()
    };
    let mut r = rig_with(vec![], FramePhysics::Pattern, cfg);
    r.sim.unplug(Duration::from_secs(3600));
    let e = r.camera.read("Status").unwrap_err();
    let text = e.to_string();
    assert!(matches!(e, CameraError::ReconnectTimeout { .. }), "{text}");
    assert!(text.contains("did not come back within"), "{text}");
    let c = r.camera.counters_snapshot();
    assert_eq!(c.disconnects, 1);
    assert!(c.reconnect_attempts >= 3, "{c:?}");
}

#[test]
fn a_camera_that_comes_back_gets_its_settings_again() {
    let mut r = rig(vec![]);
    r.camera.set_cooling(-90.0).unwrap();
    r.camera.wait_for_lock(&CancelToken::new()).unwrap();
    r.sim.unplug(Duration::from_secs(2));
    // The first command finds the camera gone, reconnects and restores the cooling.
    assert_eq!(r.camera.read("CoolerEnable").unwrap(), 1);
    assert_eq!(r.camera.read("CoolingSetpoint").unwrap(), -9000);
    assert_eq!(r.camera.read("StreamEnable").unwrap(), 1);
    let c = r.camera.counters_snapshot();
    assert_eq!((c.disconnects, c.reconnects), (1, 1), "{c:?}");
}

#[test]
fn cancellation_is_seen_between_transfers() {
    let mut r = rig(vec![]);
    r.camera.set_cooling(-90.0).unwrap();
    let cancel = CancelToken::new();
    let mut polls = 0;
    let c2 = cancel.clone();
    let mut watch = || {
        polls += 1;
        if polls == 5 {
            c2.cancel();
        }
        None
    };
    r.camera.wait_for_lock(&CancelToken::new()).unwrap();
    let t0 = r.clock.elapsed();
    let e = r
        .camera
        .acquire(&lum(120.0, 8), &cancel, &mut watch)
        .unwrap_err();
    assert!(matches!(e, CameraError::Cancelled), "{e}");
    assert!(
        r.clock.elapsed() - t0 < Duration::from_secs(60),
        "cancelled early, not after the exposure"
    );
    assert_eq!(r.camera.counters_snapshot().aborted, 1);
    // The camera is usable again at once.
    r.camera
        .acquire(&lum(1.0, 8), &CancelToken::new(), &mut never())
        .unwrap();
}

#[test]
fn the_interlock_hook_aborts_the_exposure() {
    let mut r = rig(vec![]);
    r.camera.set_cooling(-90.0).unwrap();
    let mut n = 0;
    let mut watch = || {
        n += 1;
        (n > 3).then(|| "the door was opened".to_string())
    };
    let e = r
        .camera
        .acquire(&lum(60.0, 8), &CancelToken::new(), &mut watch)
        .unwrap_err();
    assert!(
        matches!(e, CameraError::Aborted(ref m) if m.contains("door")),
        "{e}"
    );
}

#[test]
fn bad_requests_are_refused_before_anything_is_sent() {
    let mut r = rig(vec![]);
    let e = r
        .camera
        .acquire(&lum(0.0, 8), &CancelToken::new(), &mut never())
        .unwrap_err();
    assert!(e.to_string().contains("ExposureTime"), "{e}");
    let e = r
        .camera
        .acquire(&lum(1.0, 3), &CancelToken::new(), &mut never())
        .unwrap_err();
    assert!(e.to_string().contains("Binning"), "{e}");
    let e = r.camera.set_cooling(-150.0).unwrap_err();
    assert!(e.to_string().contains("CoolingSetpoint"), "{e}");
}

/// A camera that goes silent on the stream until its port is reset.
struct Muted {
    inner: Box<dyn lumiq::camera::Transport>,
    muted: Arc<std::sync::atomic::AtomicBool>,
}

impl lumiq::camera::Transport for Muted {
    fn send_control(&mut self, p: &[u8], t: Duration) -> Result<(), lumiq::camera::TransportError> {
        self.inner.send_control(p, t)
    }
    fn recv_control(
        &mut self,
        b: &mut [u8],
        t: Duration,
    ) -> Result<usize, lumiq::camera::TransportError> {
        self.inner.recv_control(b, t)
    }
    fn recv_stream(
        &mut self,
        b: &mut [u8],
        t: Duration,
    ) -> Result<usize, lumiq::camera::TransportError> {
        if self.muted.load(std::sync::atomic::Ordering::SeqCst) {
            let _ = self.inner.recv_stream(b, t); // time passes, the data is lost
            return Err(lumiq::camera::TransportError::Timeout);
        }
        self.inner.recv_stream(b, t)
    }
    fn clear_stream_halt(&mut self) -> Result<(), lumiq::camera::TransportError> {
        self.inner.clear_stream_halt()
    }
    fn reset(&mut self) -> Result<(), lumiq::camera::TransportError> {
        self.muted.store(false, std::sync::atomic::Ordering::SeqCst);
        self.inner.reset()
    }
    fn describe(&self) -> String {
        "muted".into()
    }
}

struct MutedConnector {
    inner: lumiq::camera::sim::SimConnector,
    muted: Arc<std::sync::atomic::AtomicBool>,
}

impl lumiq::camera::Connector for MutedConnector {
    fn connect(
        &mut self,
    ) -> Result<Box<dyn lumiq::camera::Transport>, lumiq::camera::TransportError> {
        Ok(Box::new(Muted {
            inner: self.inner.connect()?,
            muted: self.muted.clone(),
        }))
    }
    fn describe(&self) -> String {
        "muted simulated camera".into()
    }
}

#[test]
fn a_camera_that_stops_streaming_is_reset_and_the_frame_retaken() {
    let clock = Arc::new(SimClock::new(
        Utc.with_ymd_and_hms(2026, 3, 2, 9, 0, 0).unwrap(),
    ));
    let dyn_clock: Arc<dyn Clock> = clock.clone();
    let sim = SimCamera::new(
        SimCameraConfig {
            physics: FramePhysics::Pattern,
            ..SimCameraConfig::default()
        },
        dyn_clock.clone(),
        None,
    );
    let muted = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let connector = MutedConnector {
        inner: sim.connector(),
        muted: muted.clone(),
    };
    let mut camera = Camera::open(
        Box::new(connector),
        RegisterMap::builtin(),
        dyn_clock,
        CameraConfig::default(),
    )
    .unwrap();
    camera.set_cooling(-90.0).unwrap();
    let t0 = clock.elapsed();
    let f = camera
        .acquire(&lum(20.0, 8), &CancelToken::new(), &mut never())
        .unwrap();
    assert_pattern(&f);
    let c = camera.counters_snapshot();
    assert_eq!(
        (c.frame_timeouts, c.resets, c.reconnects, c.frames_ok),
        (1, 1, 1, 1),
        "{c:?}"
    );
    // It waited out exposure + read-out + margin once before resetting.
    assert!(clock.elapsed() - t0 >= Duration::from_secs(30));
    // Settings survived the reset.
    assert_eq!(camera.read("CoolingSetpoint").unwrap(), -9000);
}
