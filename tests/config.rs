//! The daemon's configuration as a facility engineer meets it: `lumiq config check` on the
//! repository's example files and on every kind of mistake (unknown key, wrong type,
//! missing certificate, absent or wrong controller device, port 0, environment overrides
//! right and wrong), each answered with a message naming the file or variable, the key and
//! the fix; the same through `lumiq run --config` when the daemon is built in; and the
//! systemd unit's exposure score.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use lumiq::config::{ConfigError, ControllerKind, Settings};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `lumiq ARGS` from the repository's root with no `LUMIQ_*` variable but `env`.
fn lumiq(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_lumiq"));
    cmd.args(args).current_dir(repo());
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("LUMIQ_") || k == "RUST_LOG" {
            cmd.env_remove(k);
        }
    }
    cmd.envs(env.iter().copied());
    cmd.output().expect("run lumiq")
}

/// A refused configuration: exit code 1, nothing on stdout, every needle on stderr.
fn assert_refused(out: &Output, needles: &[&str]) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert!(
        out.stdout.is_empty(),
        "stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    for n in needles {
        assert!(stderr.contains(n), "{n:?} not in stderr:\n{stderr}");
    }
    stderr
}

/// A valid configuration for this machine: simulated camera and controller, the
/// repository's calibration set, state and socket in `dir`.
fn good_toml(dir: &Path) -> String {
    format!(
        r#"
[instrument]
id = "sim-ivis-01"
site = "test-lab"

[state]
dir = "{state}"

[calibration]
dir = "{cal}"

[status]
socket = "{sock}"

[camera]
kind = "simulated"

[controller]
kind = "simulated"
"#,
        state = dir.join("state").display(),
        cal = repo().join("calibration/sim-ivis-01").display(),
        sock = dir.join("run/lumiq.sock").display(),
    )
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// `good_toml` with `extra` appended (new sections) and `lumiq config check` run on it.
fn check_with(extra: &str, env: &[(&str, &str)]) -> (tempfile::TempDir, PathBuf, Output) {
    let dir = tempfile::tempdir().unwrap();
    let text = format!("{}\n{extra}\n", good_toml(dir.path()));
    let file = write(dir.path(), "lumiq.toml", &text);
    let out = lumiq(&["config", "check", file.to_str().unwrap()], env);
    (dir, file, out)
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).to_string()
}

// ---------------------------------------------------------------------------------------
// The repository's example files
// ---------------------------------------------------------------------------------------

#[test]
fn demo_config_passes_the_check() {
    let out = lumiq(&["config", "check", "config/demo.toml"], &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = stdout(&out);
    assert!(s.starts_with("config/demo.toml: ok\n"), "{s}");
    assert!(s.contains("sim-ivis-01 at site demo-lab"), "{s}");
    assert!(s.contains("broker       none"), "{s}");
    assert!(s.contains("auto every 20 s"), "{s}");
    assert!(s.contains("simulated"), "{s}");
}

#[test]
fn production_config_parses_and_fails_only_on_what_a_build_machine_lacks() {
    let path = repo().join("config/production.toml");
    let settings = Settings::load(&path).expect("production.toml parses");
    assert_eq!(settings.controller.kind, ControllerKind::Serial);
    let broker = settings.broker_config().unwrap().expect("a broker");
    assert_eq!(
        (broker.host.as_str(), broker.port),
        ("mqtt.lab3.example.org", 8883)
    );
    assert!(broker.tls.is_some());
    assert_eq!(
        settings.outbox_path(),
        Path::new("/var/lib/lumiq/outbox.sqlite")
    );

    let err = settings
        .validate()
        .expect_err("no certificates or controller here");
    let keys: Vec<&str> = err.problems().iter().map(|p| p.key.as_str()).collect();
    // What a build machine does not have: the lab's TLS files, the controller, the
    // instrument's calibration set.
    let missing = [
        (
            "broker.ca_file",
            "/etc/lumiq/tls/ca.pem",
            "no such file",
            "LUMIQ_BROKER__CA_FILE",
        ),
        (
            "broker.cert_file",
            "/etc/lumiq/tls/lumiq.pem",
            "no such file",
            "LUMIQ_BROKER__CERT_FILE",
        ),
        (
            "broker.key_file",
            "/etc/lumiq/tls/lumiq.key",
            "no such file",
            "LUMIQ_BROKER__KEY_FILE",
        ),
        (
            "controller.path",
            "/dev/lumiq-controller",
            "no such device",
            "LUMIQ_CONTROLLER__PATH",
        ),
        (
            "calibration.dir",
            "/var/lib/lumiq/calibration",
            "no calibration.toml",
            "LUMIQ_CALIBRATION__DIR",
        ),
    ];
    let text = err.to_string();
    for (key, value, problem, env) in missing {
        let line = text
            .lines()
            .find(|l| l.contains(&format!(": {key} = \"{value}\": {problem}")))
            .unwrap_or_else(|| panic!("no problem for {key} in:\n{text}"));
        assert!(line.starts_with(&format!("{}: ", path.display())), "{line}");
        assert!(line.ends_with(&format!("(env {env})")), "{line}");
    }
    // Nothing else, except the system folders when not run as root.
    for k in &keys {
        assert!(
            missing.iter().any(|m| m.0 == *k) || ["state.dir", "status.socket"].contains(k),
            "unexpected problem with {k}:\n{text}"
        );
    }

    let out = lumiq(&["config", "check", "config/production.toml"], &[]);
    assert_refused(
        &out,
        &[
            "config/production.toml: broker.ca_file = \"/etc/lumiq/tls/ca.pem\": no such file; install the lab's CA certificate there or correct the path (env LUMIQ_BROKER__CA_FILE)",
            "controller.path = \"/dev/lumiq-controller\": no such device",
            "problems above",
        ],
    );
}

#[test]
fn print_shows_the_effective_settings_as_toml_that_loads_again() {
    let out = lumiq(
        &["config", "print", "config/demo.toml"],
        &[("LUMIQ_ACQUISITION__AUTO_INTERVAL_S", "5")],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = stdout(&out);
    let again = Settings::from_toml_str(&text, "printed").expect("printed settings load");
    assert_eq!(again.acquisition.auto_interval_s, 5);
    // Defaults are spelled out.
    assert_eq!(again.channels.captures, 2);
    assert!(text.contains("[channels]"), "{text}");
}

// ---------------------------------------------------------------------------------------
// Mistakes in the file
// ---------------------------------------------------------------------------------------

#[test]
fn a_good_config_passes() {
    let (_dir, file, out) = check_with("", &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout(&out).starts_with(&format!("{}: ok\n", file.display())));
}

#[test]
fn a_reference_source_is_checked_and_summarised() {
    let qc = "[qc]\nsource_id = \"LED-0042\"\nsource_kind = \"tritium\"\nradiance = 5e5\n\
              reference_date = \"2026-01-15\"\nsource_centre_cm = [11.2, 11.2]\nsource_radius_cm = 1.5\n";
    let (_dir, _file, out) = check_with(qc, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary = stdout(&out);
    assert!(
        summary.contains("qc           source LED-0042 (tritium), tolerance ±10 %"),
        "{summary}"
    );
    // A date nobody can read, a negative radius and an impossible uncertainty: each named.
    let bad = qc
        .replace("\"2026-01-15\"", "\"15/01/2026\"")
        .replace("source_radius_cm = 1.5", "source_radius_cm = -1")
        + "radiance_rel_uncertainty = 2\n";
    let (_dir, _file, out) = check_with(&bad, &[]);
    assert_refused(
        &out,
        &[
            "qc.reference_date = \"15/01/2026\"",
            "e.g. reference_date = \"2026-01-15\"",
            "qc.source_radius_cm = -1",
            "qc.radiance_rel_uncertainty = 2",
        ],
    );
}

#[test]
fn unknown_key_is_named_with_its_section_and_the_valid_keys() {
    let (_dir, file, out) = check_with("[broker]\nhost = \"localhost\"\nprot = 1883\n", &[]);
    let err = assert_refused(
        &out,
        &[
            &format!("{}: unknown key broker.prot", file.display()),
            "valid keys of [broker]: host, port, ",
        ],
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}

#[test]
fn unknown_section_is_named_with_the_valid_sections() {
    let (_dir, _file, out) = check_with("[brokr]\nhost = \"localhost\"\n", &[]);
    assert_refused(
        &out,
        &[
            "unknown key brokr",
            "valid sections: instrument, state, calibration",
        ],
    );
}

#[test]
fn wrong_type_names_the_key_and_the_expected_type() {
    let (_dir, file, out) = check_with("[broker]\nhost = \"localhost\"\nport = \"eighty\"\n", &[]);
    assert_refused(
        &out,
        &[
            &format!(
                "{}: broker.port = string \"eighty\": wrong type, expected an integer",
                file.display()
            ),
            "(env LUMIQ_BROKER__PORT)",
        ],
    );
    let (_dir, _file, out) = check_with("[channels]\ncaptures = [1, 2]\n", &[]);
    assert_refused(&out, &["channels.captures", "wrong type", "expected"]);
    let (_dir, _file, out) = check_with(
        "[broker]\nhost = \"localhost\"\ncommand_topic = \"sometimes\"\n",
        &[],
    );
    assert_refused(&out, &["broker.command_topic", "expected a boolean"]);
    // Values the `config` crate would convert silently are refused too.
    let (_dir, _file, out) = check_with("[broker]\nhost = \"localhost\"\nport = 1.5\n", &[]);
    assert_refused(
        &out,
        &["broker.port = floating point `1.5`: wrong type, expected an integer"],
    );
    let (_dir, _file, out) = check_with(
        "[broker]\nhost = \"localhost\"\ncommand_topic = \"yes\"\n",
        &[],
    );
    assert_refused(
        &out,
        &["broker.command_topic = string \"yes\": wrong type, expected a boolean"],
    );
}

#[test]
fn a_word_outside_its_choices_lists_them() {
    let (_dir, _file, out) = check_with("[logging]\nformat = \"syslog\"\n", &[]);
    assert_refused(&out, &["logging.format", "syslog", "auto", "journald"]);
}

#[test]
fn missing_required_key_says_what_to_set() {
    let dir = tempfile::tempdir().unwrap();
    let text = good_toml(dir.path()).replace("site = \"test-lab\"\n", "");
    let file = write(dir.path(), "lumiq.toml", &text);
    let out = lumiq(&["config", "check", file.to_str().unwrap()], &[]);
    assert_refused(
        &out,
        &["instrument.site is required", "LUMIQ_INSTRUMENT__SITE"],
    );
}

#[test]
fn toml_syntax_error_names_the_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "lumiq.toml",
        "[instrument]\nid = \"x\nsite = \"y\"\n",
    );
    let out = lumiq(&["config", "check", file.to_str().unwrap()], &[]);
    assert_refused(
        &out,
        &[&format!("{}: not valid TOML", file.display()), "line 2"],
    );
}

#[test]
fn missing_file_names_it() {
    let out = lumiq(&["config", "check", "/nonexistent/lumiq.toml"], &[]);
    assert_refused(
        &out,
        &["/nonexistent/lumiq.toml: cannot read the configuration file"],
    );
}

#[test]
fn missing_certificate_file_names_the_file_the_key_and_the_fix() {
    let (dir, file, out) = check_with(
        "[broker]\nhost = \"localhost\"\nca_file = \"@/tls/ca.pem\"\n",
        &[],
    );
    // (the @ is not replaced: the path is simply absent)
    drop(dir);
    assert_refused(
        &out,
        &[&format!(
            "{}: broker.ca_file = \"@/tls/ca.pem\": no such file; install the lab's CA certificate there or correct the path (env LUMIQ_BROKER__CA_FILE)",
            file.display()
        )],
    );

    let (_dir, _file, out) = check_with(
        "[broker]\nhost = \"localhost\"\ncert_file = \"/nonexistent/lumiq.pem\"\n",
        &[],
    );
    assert_refused(
        &out,
        &[
            "broker.key_file: cert_file is set but key_file is not",
            "broker.ca_file: a client certificate is set but no CA certificate",
            "broker.cert_file = \"/nonexistent/lumiq.pem\": no such file",
        ],
    );
}

fn openssl_self_signed(dir: &Path, name: &str) -> bool {
    Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.crt"),
            "-days",
            "2",
            "-subj",
            &format!("/CN={name}"),
        ])
        .current_dir(dir)
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

#[test]
fn tls_files_are_parsed_at_start_and_a_key_of_another_certificate_is_refused() {
    let pki = tempfile::tempdir().unwrap();
    if !(openssl_self_signed(pki.path(), "ca") && openssl_self_signed(pki.path(), "other")) {
        eprintln!("skipped: the openssl command is missing (apt-get install openssl)");
        return;
    }
    let p = |f: &str| pki.path().join(f).display().to_string();
    let tls = |cert: &str, key: &str| {
        format!(
            "[broker]\nhost = \"localhost\"\nca_file = \"{}\"\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
            p("ca.crt"),
            p(cert),
            p(key)
        )
    };
    let (_d, _f, out) = check_with(&tls("ca.crt", "ca.key"), &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout(&out).contains("localhost:8883 (mutual TLS)"),
        "{}",
        stdout(&out)
    );

    let (_d, _f, out) = check_with(&tls("ca.crt", "other.key"), &[]);
    assert_refused(&out, &["broker.key_file", "does not go with certificate"]);

    let (_d, _f, out) = check_with(&tls("ca.key", "ca.key"), &[]);
    assert_refused(&out, &["broker.cert_file", "no certificate"]);
}

#[test]
fn controller_device_must_exist_and_be_a_character_device() {
    let (_dir, _file, out) = check_with("", &[]);
    assert!(out.status.success());

    let dir = tempfile::tempdir().unwrap();
    let base = good_toml(dir.path());
    let serial = |path: &str| {
        base.replace(
            "[controller]\nkind = \"simulated\"",
            &format!("[controller]\nkind = \"serial\"\npath = \"{path}\""),
        )
    };

    let file = write(dir.path(), "absent.toml", &serial("/dev/lumiq-no-such-tty"));
    let out = lumiq(&["config", "check", file.to_str().unwrap()], &[]);
    assert_refused(
        &out,
        &[
            "controller.path = \"/dev/lumiq-no-such-tty\": no such device; plug in the imager's controller",
            "99-lumiq.rules",
            "(env LUMIQ_CONTROLLER__PATH)",
        ],
    );

    let plain = write(dir.path(), "not-a-tty", "");
    let file = write(dir.path(), "plain.toml", &serial(plain.to_str().unwrap()));
    let out = lumiq(&["config", "check", file.to_str().unwrap()], &[]);
    assert_refused(&out, &["controller.path", "is not a character device"]);

    // A real pseudo-terminal, as the simulated controller uses: accepted.
    use serialport::SerialPort;
    let (_device_side, driver_side) = serialport::TTYPort::pair().expect("a pseudo-terminal pair");
    let pty = driver_side.name().expect("the pty's path");
    drop(driver_side);
    let file = write(dir.path(), "pty.toml", &serial(&pty));
    let out = lumiq(&["config", "check", file.to_str().unwrap()], &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout(&out).contains(&format!("serial {pty} at 115200 baud")),
        "{}",
        stdout(&out)
    );
}

#[test]
fn port_zero_and_other_ranges_are_refused_all_at_once() {
    let (_dir, file, out) = check_with(
        "[broker]\nhost = \"localhost\"\nport = 0\n[channels]\ncaptures = 0\nrecords = 0\n[acquisition]\nshelf = \"E\"\n",
        &[],
    );
    let err = assert_refused(
        &out,
        &[
            &format!("{}: broker.port = 0: is not a TCP port; give a port in 1..=65535", file.display()),
            "channels.captures = 0: a queue needs room for at least one item; use 1 or more (env LUMIQ_CHANNELS__CAPTURES)",
            "channels.records = 0",
            "acquisition.shelf = \"E\"",
            "4 problems above",
        ],
    );
    assert_eq!(err.trim().lines().count(), 5, "{err}");

    let (_dir, _file, out) = check_with("[broker]\nhost = \"localhost\"\nport = 70000\n", &[]);
    assert_refused(&out, &["broker.port", "70000"]);
}

#[test]
fn bad_topic_levels_and_unwritable_state_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let text = good_toml(dir.path())
        .replace("id = \"sim-ivis-01\"", "id = \"ivis/01\"")
        .replace(
            &dir.path().join("state").display().to_string(),
            "/proc/lumiq-state",
        );
    let file = write(dir.path(), "lumiq.toml", &text);
    let out = lumiq(&["config", "check", file.to_str().unwrap()], &[]);
    assert_refused(
        &out,
        &[
            "instrument.id = \"ivis/01\": instrument id \"ivis/01\" cannot be an MQTT topic level",
            "state.dir = \"/proc/lumiq-state\": does not exist and cannot be created in /proc",
        ],
    );
}

// ---------------------------------------------------------------------------------------
// Environment overrides
// ---------------------------------------------------------------------------------------

#[test]
fn env_override_is_applied() {
    let (_dir, _file, out) = check_with(
        "[broker]\nhost = \"localhost\"\n",
        &[
            ("LUMIQ_BROKER__PORT", "8884"),
            ("LUMIQ_BROKER__HOST", "mqtt.example"),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = stdout(&out);
    assert!(
        s.contains("broker       mqtt.example:8884 (plain TCP)"),
        "{s}"
    );
    assert!(
        s.contains("from the environment: broker.host, broker.port"),
        "{s}"
    );

    // A section the file does not have.
    let (_dir, _file, out) = check_with("", &[("LUMIQ_CHANNELS__RECORDS", "3")]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout(&out).contains("records 3"), "{}", stdout(&out));
}

#[test]
fn env_override_with_a_wrong_type_names_the_variable() {
    let (_dir, _file, out) = check_with(
        "[broker]\nhost = \"localhost\"\n",
        &[("LUMIQ_BROKER__PORT", "eighty")],
    );
    assert_refused(
        &out,
        &["environment LUMIQ_BROKER__PORT: broker.port = string \"eighty\": wrong type, expected an integer"],
    );
    // Not read as port 1, as the `config` crate alone would.
    let (_dir, _file, out) = check_with(
        "[broker]\nhost = \"localhost\"\n",
        &[("LUMIQ_BROKER__PORT", "yes")],
    );
    assert_refused(
        &out,
        &["environment LUMIQ_BROKER__PORT: broker.port = string \"yes\": wrong type, expected an integer"],
    );
}

#[test]
fn env_override_problems_point_at_the_variable_not_the_file() {
    let (_dir, _file, out) = check_with(
        "[broker]\nhost = \"localhost\"\n",
        &[("LUMIQ_BROKER__CA_FILE", "/nonexistent/ca.pem")],
    );
    assert_refused(
        &out,
        &["environment LUMIQ_BROKER__CA_FILE: broker.ca_file = \"/nonexistent/ca.pem\": no such file"],
    );
    let (_dir, _file, out) = check_with("", &[("LUMIQ_BROKER__PROT", "1")]);
    assert_refused(
        &out,
        &["environment LUMIQ_BROKER__PROT: unknown key broker.prot"],
    );
}

#[test]
fn other_lumiq_variables_do_not_break_loading_but_a_mistyped_setting_does() {
    let (_dir, _file, out) = check_with(
        "",
        &[
            ("LUMIQ_SOCKET", "/tmp/x.sock"),
            ("LUMIQ_CALIBRATION_DIR", "/nonexistent"),
            (
                "LUMIQ_MODEL",
                concat!(env!("CARGO_MANIFEST_DIR"), "/models/tumour-seg-v1.onnx"),
            ),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // LUMIQ_MODEL is the model's location: a wrong one is refused at start, by name.
    let (_dir, _file, out) = check_with("", &[("LUMIQ_MODEL", "/nonexistent/model.onnx")]);
    assert_refused(&out, &["processing.model", "/nonexistent/manifest.toml"]);
    let (_dir, _file, out) = check_with(
        "[processing]\ndetector = \"classical\"\n",
        &[("LUMIQ_MODEL", "/nonexistent/model.onnx")],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let (_dir, _file, out) = check_with("", &[("LUMIQ_BROKER_PORT", "1883")]);
    assert_refused(
        &out,
        &[
            "environment variable LUMIQ_BROKER_PORT",
            "write LUMIQ_BROKER__PORT",
        ],
    );
}

#[test]
fn library_reports_the_same_errors() {
    let err = Settings::from_toml_str_with_env(
        "[instrument]\nid = \"a\"\nsite = \"b\"\n[broker]\nhost = \"h\"\n",
        "inline",
        [("LUMIQ_BROKER__PORT".to_string(), "x".to_string())],
    )
    .unwrap_err();
    assert!(matches!(err, ConfigError::WrongType { .. }), "{err}");
    let s = Settings::from_toml_str_with_env(
        "[instrument]\nid = \"a\"\nsite = \"b\"\n",
        "inline",
        [("LUMIQ_BROKER__HOST".to_string(), "h".to_string())],
    )
    .unwrap();
    let b = s.broker_config().unwrap().unwrap();
    assert_eq!(
        (b.host.as_str(), b.port, b.client_id.as_deref()),
        ("h", 1883, Some("lumiq-a"))
    );
    assert_eq!(
        s.topics().unwrap().measurement(),
        "lumiq/v1/b/a/measurement"
    );
}

// ---------------------------------------------------------------------------------------
// `lumiq run --config` refuses the same files (when the daemon is built in)
// ---------------------------------------------------------------------------------------

fn has_subcommand(name: &str) -> bool {
    let out = lumiq(&["--help"], &[]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .any(|l| l.trim_start().starts_with(&format!("{name} ")))
}

/// Run with a deadline: a refused configuration must end the process at once.
fn run_with_deadline(args: &[&str], deadline: Duration) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_lumiq"))
        .args(args)
        .current_dir(repo())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if start.elapsed() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "lumiq {args:?} still running after {deadline:?} with a bad configuration; stderr:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn run_refuses_a_bad_config_before_starting() {
    if !has_subcommand("run") {
        eprintln!("skipped: this build has no `lumiq run`");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "[broker]\nhost = \"localhost\"\nprot = 1\n",
            "unknown key broker.prot",
        ),
        (
            "[broker]\nhost = \"localhost\"\nport = \"x\"\n",
            "broker.port = string \"x\": wrong type",
        ),
        (
            "[broker]\nhost = \"localhost\"\nport = 0\n",
            "broker.port = 0: is not a TCP port",
        ),
        (
            "[broker]\nhost = \"localhost\"\nca_file = \"/nonexistent/ca.pem\"\n",
            "broker.ca_file = \"/nonexistent/ca.pem\": no such file",
        ),
    ];
    for (i, (extra, needle)) in cases.iter().enumerate() {
        let text = format!("{}\n{extra}", good_toml(dir.path()));
        let file = write(dir.path(), &format!("bad{i}.toml"), &text);
        let out = run_with_deadline(
            &["run", "--config", file.to_str().unwrap()],
            Duration::from_secs(20),
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "accepted {extra:?}");
        assert!(stderr.contains(needle), "{needle:?} not in:\n{stderr}");
    }
}

// ---------------------------------------------------------------------------------------
// The systemd unit
// ---------------------------------------------------------------------------------------

#[test]
fn unit_exposure_is_at_most_2() {
    let unit = repo().join("systemd/lumiq.service");
    let out = match Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--no-pager"])
        .arg(&unit)
        .output()
    {
        Ok(o) => o,
        Err(e) => {
            eprintln!("skipped: systemd-analyze is not installed ({e}); apt-get install systemd");
            return;
        }
    };
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    let line = text
        .lines()
        .find(|l| l.contains("Overall exposure level for lumiq.service"))
        .unwrap_or_else(|| panic!("no exposure line in:\n{text}"));
    let score: f64 = line
        .split(':')
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("cannot read the score in {line:?}"));
    eprintln!("{}", line.trim());
    assert!(score <= 2.0, "{line}");
    // The settings the daemon's behaviour depends on.
    let unit_text = std::fs::read_to_string(&unit).unwrap();
    for needle in [
        "Type=notify",
        "WatchdogSec=30",
        "ExecStart=/usr/local/bin/lumiq run --config /etc/lumiq/lumiq.toml",
        "StateDirectory=lumiq",
        "RuntimeDirectory=lumiq",
        "DevicePolicy=closed",
        "ProtectSystem=strict",
    ] {
        assert!(
            unit_text.lines().any(|l| l.trim() == needle),
            "{needle} missing"
        );
    }
}
