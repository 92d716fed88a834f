//! The simulated imager controller and the light-tight box it runs: door (with its lock),
//! photograph LED, stage shelves, emission filter wheel, heated stage and the flat-field
//! panel a technician may lay on the stage.
//!
//! Owns: [`SimBox`], the box's state, shared with the simulated camera (the LED lights its
//! photographs, an open door floods its frames, the shelf sets its field of view), and
//! [`SimController`], a thread that serves the device side of the serial protocol on the
//! master end of a real pseudo-terminal; the driver opens the slave end by its path, as it
//! would open `/dev/ttyUSB0`. Events are sent when the box changes (door opened or closed,
//! start button) — always before the reply to the next command, so a host that asks
//! `DOOR?` after an exposure has seen every door event that happened during it.

use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use serialport::{SerialPort, TTYPort};

use crate::simulate::acquisition::LightDisc;

use super::protocol::{
    DeviceError, Event, Kind, LineDecoder, LineError, Message, Request, Response, Shelf, FILTERS,
    MAX_SEQ,
};

/// The state of the box.
#[derive(Debug, Clone, PartialEq)]
pub struct BoxState {
    pub door_open: bool,
    pub door_locked: bool,
    pub led_percent: u8,
    pub shelf: Shelf,
    pub filter: u8,
    pub stage_setpoint_c: Option<f64>,
    pub stage_temp_c: f64,
    /// Presses of the start button so far.
    pub start_presses: u64,
    /// The evenly lit flat-field panel lies on the stage, filling the field of view (a
    /// technician places it for `lumiq calibrate --guided`).
    pub flat_panel: bool,
    /// A reference light source lies on the empty stage (the daily QC), hiding the scene.
    pub reference_source: Option<LightDisc>,
}

impl BoxState {
    pub fn fov_cm(&self) -> f64 {
        self.shelf.fov_cm()
    }
    /// Transmission of the emission filter for bioluminescence: 1 open, 0.2 band-passes.
    pub fn filter_transmission(&self) -> f64 {
        if self.filter == 0 {
            1.0
        } else {
            0.2
        }
    }
}

impl Default for BoxState {
    fn default() -> Self {
        BoxState {
            door_open: false,
            door_locked: false,
            led_percent: 0,
            shelf: Shelf::D,
            filter: 0,
            stage_setpoint_c: None,
            stage_temp_c: 21.0,
            start_presses: 0,
            flat_panel: false,
            reference_source: None,
        }
    }
}

/// The simulated box (clone it freely: clones share the state).
#[derive(Debug, Clone, Default)]
pub struct SimBox(Arc<Mutex<BoxState>>);

impl SimBox {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn state(&self) -> BoxState {
        self.0.lock().expect("box lock").clone()
    }
    fn with<T>(&self, f: impl FnOnce(&mut BoxState) -> T) -> T {
        f(&mut self.0.lock().expect("box lock"))
    }
    /// A person opens the door; refused while the lock is engaged.
    pub fn open_door(&self) -> bool {
        self.with(|s| {
            if s.door_locked {
                false
            } else {
                s.door_open = true;
                true
            }
        })
    }
    /// The door is forced open (a broken lock, a power cut of the solenoid).
    pub fn force_door_open(&self) {
        self.with(|s| s.door_open = true)
    }
    pub fn close_door(&self) {
        self.with(|s| s.door_open = false)
    }
    pub fn press_start(&self) {
        self.with(|s| s.start_presses += 1)
    }
    /// A person lays the flat-field panel on the stage (or takes it away).
    pub fn set_flat_panel(&self, placed: bool) {
        self.with(|s| s.flat_panel = placed)
    }
    /// The reference light source is on the stage, alone (or taken away: `None`).
    pub fn set_reference_source(&self, source: Option<LightDisc>) {
        self.with(|s| s.reference_source = source)
    }
}

/// Misbehaviour of the simulated controller, for tests of the driver.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SimControllerFaults {
    /// Corrupt the checksum of every n-th reply.
    pub corrupt_every: Option<u64>,
    /// Do not answer every n-th command.
    pub drop_every: Option<u64>,
}

/// Identity and faults of the simulated controller.
#[derive(Debug, Clone, PartialEq)]
pub struct SimControllerConfig {
    pub model: String,
    pub serial: String,
    pub firmware: String,
    pub faults: SimControllerFaults,
}

impl Default for SimControllerConfig {
    fn default() -> Self {
        SimControllerConfig {
            model: "lumiq-sim-controller".into(),
            serial: "SIMC-0001".into(),
            firmware: "2.1.0".into(),
            faults: SimControllerFaults::default(),
        }
    }
}

/// The simulated controller, serving a pseudo-terminal from its own thread.
pub struct SimController {
    path: String,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    commands: Arc<AtomicU64>,
    /// The slave end, held so the device side never sees EIO while the driver's end is
    /// closed (CRATES.md: keep it until the driver has opened the path).
    _slave: TTYPort,
}

impl std::fmt::Debug for SimController {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimController")
            .field("path", &self.path)
            .finish()
    }
}

struct Server {
    sim_box: SimBox,
    cfg: SimControllerConfig,
    seen: BoxState,
    event_counter: u16,
    commands: Arc<AtomicU64>,
    replies: u64,
}

impl Server {
    fn next_event(&mut self) -> u16 {
        let c = self.event_counter;
        self.event_counter = if c >= MAX_SEQ { 0 } else { c + 1 };
        c
    }

    /// Lines announcing what changed in the box since last time.
    fn events(&mut self) -> Vec<u8> {
        let now = self.sim_box.state();
        let mut out = Vec::new();
        if now.door_open != self.seen.door_open {
            let e = if now.door_open {
                Event::DoorOpened
            } else {
                Event::DoorClosed
            };
            let c = self.next_event();
            out.extend(e.to_message(c).encode());
        }
        for _ in self.seen.start_presses..now.start_presses {
            let c = self.next_event();
            out.extend(Event::StartButton.to_message(c).encode());
        }
        self.seen = now;
        out
    }

    fn answer(&mut self, line: Result<Message, LineError>) -> Option<Vec<u8>> {
        let m = match line {
            Ok(m) if m.kind == Kind::Command => m,
            Ok(_) => return None,
            Err(LineError::BadChecksum { .. }) => {
                return Some(DeviceError::BadChecksum.to_message(0).encode())
            }
            Err(_) => return Some(DeviceError::Malformed.to_message(0).encode()),
        };
        let n = self.commands.fetch_add(1, Ordering::Relaxed) + 1;
        if self.cfg.faults.drop_every.is_some_and(|k| n % k == 0) {
            return None;
        }
        let reply = match Request::from_message(&m) {
            Err(e) => e.to_message(m.seq),
            Ok(req) => match self.execute(&req) {
                Ok(r) => r.to_message(m.seq),
                Err(e) => e.to_message(m.seq),
            },
        };
        let mut bytes = reply.encode();
        self.replies += 1;
        if self
            .cfg
            .faults
            .corrupt_every
            .is_some_and(|k| self.replies % k == 0)
        {
            // Flip a bit of the checksum's first digit.
            let star = bytes.iter().rposition(|&b| b == b'*').expect("a checksum");
            bytes[star + 1] = if bytes[star + 1] == b'0' { b'1' } else { b'0' };
        }
        Some(bytes)
    }

    fn execute(&mut self, req: &Request) -> Result<Response, DeviceError> {
        let cfg = self.cfg.clone();
        self.sim_box.with(|s| {
            Ok(match req {
                Request::Ping => Response::Pong,
                Request::Identify => Response::Identity {
                    model: cfg.model.clone(),
                    serial: cfg.serial.clone(),
                    firmware: cfg.firmware.clone(),
                },
                Request::Door => Response::Door {
                    open: s.door_open,
                    locked: s.door_locked,
                },
                Request::Lock(on) => {
                    if *on && s.door_open {
                        return Err(DeviceError::DoorOpen);
                    }
                    s.door_locked = *on;
                    Response::Lock(*on)
                }
                Request::SetLed(l) => {
                    s.led_percent = *l;
                    Response::Led(*l)
                }
                Request::Led => Response::Led(s.led_percent),
                Request::SetShelf(sh) => {
                    s.shelf = *sh;
                    Response::Shelf {
                        shelf: *sh,
                        fov_cm: sh.fov_cm(),
                    }
                }
                Request::Shelf => Response::Shelf {
                    shelf: s.shelf,
                    fov_cm: s.shelf.fov_cm(),
                },
                Request::SetFilter(p) => {
                    s.filter = *p;
                    Response::Filter {
                        position: *p,
                        name: FILTERS[*p as usize].into(),
                    }
                }
                Request::Filter => Response::Filter {
                    position: s.filter,
                    name: FILTERS[s.filter as usize].into(),
                },
                Request::SetStage(t) => {
                    s.stage_setpoint_c = *t;
                    // The simulated stage settles at once.
                    s.stage_temp_c = t.unwrap_or(21.0);
                    Response::Stage {
                        setpoint_c: *t,
                        temp_c: s.stage_temp_c,
                    }
                }
                Request::Stage => Response::Stage {
                    setpoint_c: s.stage_setpoint_c,
                    temp_c: s.stage_temp_c,
                },
            })
        })
    }
}

impl SimController {
    /// Start serving a new pseudo-terminal pair; the driver opens [`SimController::path`].
    pub fn start(sim_box: SimBox, cfg: SimControllerConfig) -> std::io::Result<SimController> {
        let (mut master, slave) = TTYPort::pair().map_err(std::io::Error::from)?;
        let path = slave
            .name()
            .ok_or_else(|| std::io::Error::other("the pseudo-terminal has no name"))?;
        master
            .set_timeout(Duration::from_millis(10))
            .map_err(std::io::Error::from)?;
        let stop = Arc::new(AtomicBool::new(false));
        let commands = Arc::new(AtomicU64::new(0));
        let mut server = Server {
            seen: sim_box.state(),
            sim_box,
            cfg,
            event_counter: 0,
            commands: commands.clone(),
            replies: 0,
        };
        let stop2 = stop.clone();
        let thread = std::thread::Builder::new()
            .name("sim-controller".into())
            .spawn(move || {
                let mut decoder = LineDecoder::new();
                let mut buf = [0u8; 256];
                while !stop2.load(Ordering::SeqCst) {
                    let n = match master.read(&mut buf) {
                        Ok(n) => n,
                        Err(e) if e.kind() == std::io::ErrorKind::TimedOut => 0,
                        Err(_) => {
                            std::thread::sleep(Duration::from_millis(10));
                            0
                        }
                    };
                    let mut out = server.events();
                    for line in decoder.push(&buf[..n]) {
                        // Events first: the host sees every change before the reply.
                        out.extend(server.events());
                        if let Some(r) = server.answer(line) {
                            out.extend(r);
                        }
                    }
                    if !out.is_empty() {
                        let _ = master.write_all(&out);
                        let _ = master.flush();
                    }
                }
            })?;
        Ok(SimController {
            path,
            stop,
            thread: Some(thread),
            commands,
            _slave: slave,
        })
    }

    /// Path of the serial device the driver opens (`/dev/pts/N`).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Commands received so far.
    pub fn commands_seen(&self) -> u64 {
        self.commands.load(Ordering::Relaxed)
    }
}

impl Drop for SimController {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
