//! The controller driver against the simulated controller over a real pseudo-terminal
//! pair: every command, the interlock refusal, unsolicited events, corrupted and lost
//! replies (retried and counted), and a controller that never answers.

use std::time::{Duration, Instant};

use lumiq::controller::sim::SimControllerFaults;
use lumiq::controller::{
    Controller, ControllerConfig, ControllerError, Event, Shelf, SimBox, SimController,
    SimControllerConfig,
};

fn connect(faults: SimControllerFaults) -> (Controller, SimController, SimBox) {
    let b = SimBox::new();
    let sim = SimController::start(
        b.clone(),
        SimControllerConfig {
            faults,
            ..SimControllerConfig::default()
        },
    )
    .expect("a pseudo-terminal");
    let mut cfg = ControllerConfig::new(sim.path());
    cfg.reply_timeout_ms = 300;
    let c = Controller::open(cfg).expect("the driver opens the pty by its path");
    (c, sim, b)
}

/// Poll events until `done` holds or two seconds pass (the simulated controller runs on
/// its own thread).
fn events_until(c: &mut Controller, done: impl Fn(&[Event]) -> bool) -> Vec<Event> {
    let start = Instant::now();
    let mut all = Vec::new();
    while !done(&all) && start.elapsed() < Duration::from_secs(2) {
        all.extend(c.poll_events().unwrap());
        std::thread::sleep(Duration::from_millis(5));
    }
    all
}

#[test]
fn every_command_round_trips_over_the_pty() {
    let (mut c, sim, b) = connect(SimControllerFaults::default());
    assert!(sim.path().starts_with("/dev/pts/"), "{}", sim.path());
    let id = c.identify().unwrap();
    assert_eq!(
        (id.model.as_str(), id.serial.as_str()),
        ("lumiq-sim-controller", "SIMC-0001")
    );
    assert_eq!(c.door().unwrap(), (false, false));
    c.set_lock(true).unwrap();
    assert_eq!(c.door().unwrap(), (false, true));
    c.set_led(40).unwrap();
    assert_eq!(b.state().led_percent, 40);
    assert_eq!(c.set_shelf(Shelf::C).unwrap(), 12.5);
    assert_eq!(b.state().fov_cm(), 12.5);
    assert_eq!(c.set_filter(3).unwrap(), "580");
    assert_eq!(c.set_stage(Some(37.0)).unwrap(), 37.0);
    assert_eq!(c.set_stage(None).unwrap(), 21.0);
    // A locked door does not open for a person.
    assert!(!b.open_door());
    c.set_lock(false).unwrap();
    let snap = c.counters().snapshot();
    assert_eq!(
        (snap.timeouts, snap.checksum_errors, snap.retries),
        (0, 0, 0)
    );
    assert!(snap.commands >= 10);
}

#[test]
fn an_open_door_refuses_the_lock() {
    let (mut c, _sim, b) = connect(SimControllerFaults::default());
    assert!(b.open_door());
    let e = c.set_lock(true).unwrap_err();
    assert!(matches!(e, ControllerError::DoorOpen), "{e}");
    assert!(e.to_string().contains("door is open"), "{e}");
    assert_eq!(c.door().unwrap(), (true, false));
}

#[test]
fn door_and_start_button_events_arrive_unsolicited() {
    let (mut c, _sim, b) = connect(SimControllerFaults::default());
    c.identify().unwrap();
    b.force_door_open();
    b.close_door();
    b.press_start();
    std::thread::sleep(Duration::from_millis(50));
    b.open_door();
    let ev = events_until(&mut c, |e| {
        e.contains(&Event::StartButton) && e.contains(&Event::DoorOpened)
    });
    assert!(ev.contains(&Event::StartButton), "{ev:?}");
    assert!(ev.contains(&Event::DoorOpened), "{ev:?}");
    assert_eq!(c.counters().snapshot().event_gaps, 0);
}

#[test]
fn events_raised_during_a_command_come_before_its_reply() {
    let (mut c, _sim, b) = connect(SimControllerFaults::default());
    c.identify().unwrap();
    b.force_door_open();
    // Asking right away: the DOOR event must already be queued when the reply arrives.
    assert!(c.door().unwrap().0);
    let ev = c.poll_events().unwrap();
    assert_eq!(ev, vec![Event::DoorOpened]);
}

#[test]
fn corrupted_replies_are_retried_and_counted() {
    let (mut c, _sim, b) = connect(SimControllerFaults {
        corrupt_every: Some(2),
        drop_every: None,
    });
    for level in [10u8, 20, 30, 40, 50] {
        c.set_led(level).unwrap();
        assert_eq!(b.state().led_percent, level);
    }
    let s = c.counters().snapshot();
    assert!(s.checksum_errors >= 2, "{s:?}");
    assert!(s.retries >= 2, "{s:?}");
}

#[test]
fn lost_replies_time_out_and_are_retried() {
    let (mut c, _sim, _b) = connect(SimControllerFaults {
        corrupt_every: None,
        drop_every: Some(2),
    });
    for _ in 0..4 {
        c.door().unwrap();
    }
    let s = c.counters().snapshot();
    assert!(s.timeouts >= 1, "{s:?}");
    assert_eq!(s.retries, s.timeouts);
}

#[test]
fn a_silent_controller_is_a_clear_error() {
    let (mut c, _sim, _b) = connect(SimControllerFaults {
        corrupt_every: None,
        drop_every: Some(1),
    });
    let e = c.identify().unwrap_err();
    assert!(
        matches!(e, ControllerError::NoAnswer { attempts: 3, .. }),
        "{e}"
    );
    assert!(
        e.to_string()
            .contains("did not answer ID? after 3 attempts"),
        "{e}"
    );
}

#[test]
fn a_missing_port_is_a_clear_error() {
    let e = Controller::open(ControllerConfig::new("/dev/lumiq-no-such-tty")).unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains("/dev/lumiq-no-such-tty") && text.contains("serial port"),
        "{text}"
    );
}
