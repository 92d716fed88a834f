//! The daemon's log output: tracing events as human-readable text on a terminal, as JSON
//! lines on request, or as plain lines with syslog priority prefixes for the journal.
//!
//! Owns: installing the global tracing subscriber for `lumiq run` (and other long-running
//! commands that ask for it) from `[logging]` (`format`, `level`) with `RUST_LOG` taking
//! precedence over `level`. Does not own: what is logged, or the one-shot commands' default
//! stderr output (`cli::main`).
//!
//! Public API (stable): [`init`]`(format, level)`, [`resolve`]`(format)`, [`under_journald`].
//!
//! Design: journald is reached through the service's stderr, which systemd connects to the
//! journal's stream socket (`StandardError=journal`, the default). A line starting with
//! `<N>` (N a syslog priority) is stored with that priority (`SyslogLevelPrefix=yes`, the
//! default), and the journal adds its own timestamp, unit, PID and boot id. That needs no
//! extra crate, no socket code and no `unsafe`; the alternative, `tracing-journald`, sends
//! datagrams to `/run/systemd/journal/socket` with every field as a journal field, which the
//! daemon does not need (its structured output for machines is the MQTT status and
//! `lumiq status --json`), and which `RestrictAddressFamilies=` and a missing socket in
//! containers would have to be allowed for. Every line of a multi-line message gets the
//! prefix, so none is stored at the wrong priority.

use std::fmt;
use std::io::IsTerminal;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

pub use crate::config::LogFormat;

/// Why logging could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    #[error("logging.level = {level:?}: not a log filter: {detail}; use error, warn, info, debug or trace, optionally per module (lumiq=debug,rumqttc=warn) (env LUMIQ_LOGGING__LEVEL)")]
    Level { level: String, detail: String },
    #[error(
        "RUST_LOG = {value:?}: not a log filter: {detail}; unset it or use e.g. RUST_LOG=info"
    )]
    RustLog { value: String, detail: String },
    #[error("logging is already set up in this process")]
    AlreadySet,
}

/// True when stderr is the journal's stream: `JOURNAL_STREAM` (`<device>:<inode>`, set by
/// systemd) names the file stderr is. A variable inherited by a child whose stderr goes
/// elsewhere (a terminal, a file) does not count.
pub fn under_journald() -> bool {
    let Some(stream) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let stream = stream.to_string_lossy();
    let Some((dev, ino)) = stream.split_once(':') else {
        return false;
    };
    let (Ok(dev), Ok(ino)) = (dev.parse::<u64>(), ino.parse::<u64>()) else {
        return false;
    };
    use std::os::unix::fs::MetadataExt;
    match std::fs::metadata("/proc/self/fd/2") {
        Ok(m) => m.dev() == dev && m.ino() == ino,
        // No /proc (unusual): trust the variable.
        Err(_) => true,
    }
}

/// The concrete format `Auto` stands for here and now.
pub fn resolve(format: LogFormat) -> LogFormat {
    match format {
        LogFormat::Auto if under_journald() => LogFormat::Journald,
        LogFormat::Auto => LogFormat::Text,
        f => f,
    }
}

/// The filter: `RUST_LOG` when set and non-empty, else `level`.
fn filter(level: &str) -> Result<EnvFilter, LoggingError> {
    match std::env::var("RUST_LOG") {
        Ok(v) if !v.trim().is_empty() => {
            EnvFilter::try_new(&v).map_err(|e| LoggingError::RustLog {
                value: v.clone(),
                detail: e.to_string(),
            })
        }
        _ => EnvFilter::try_new(level).map_err(|e| LoggingError::Level {
            level: level.to_string(),
            detail: e.to_string(),
        }),
    }
}

/// Install the global subscriber: events at or above `level` (tracing filter syntax;
/// `RUST_LOG` overrides it) to stderr in `format`. Returns the format actually used.
pub fn init(format: LogFormat, level: &str) -> Result<LogFormat, LoggingError> {
    let (format, subscriber) = subscriber(format, level, std::io::stderr)?;
    tracing::subscriber::set_global_default(subscriber).map_err(|_| LoggingError::AlreadySet)?;
    Ok(format)
}

/// The subscriber [`init`] installs, writing to `writer` (tests give a buffer).
pub fn subscriber<W>(
    format: LogFormat,
    level: &str,
    writer: W,
) -> Result<(LogFormat, Box<dyn Subscriber + Send + Sync>), LoggingError>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = filter(level)?;
    let format = resolve(format);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    let subscriber: Box<dyn Subscriber + Send + Sync> = match format {
        LogFormat::Json => Box::new(
            builder
                .json()
                .flatten_event(true)
                .with_current_span(true)
                .with_span_list(false)
                .finish(),
        ),
        LogFormat::Journald => Box::new(
            builder
                .with_ansi(false)
                .event_format(JournaldFormat)
                .finish(),
        ),
        LogFormat::Text | LogFormat::Auto => Box::new(
            builder
                .with_target(false)
                .with_ansi(std::io::stderr().is_terminal())
                .finish(),
        ),
    };
    Ok((format, subscriber))
}

/// The syslog priority journald files an event under.
pub fn syslog_priority(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        Level::DEBUG | Level::TRACE => 7,
    }
}

/// `<priority>span: span: message key=value`, without timestamp (the journal has one), one
/// prefix per line.
pub struct JournaldFormat;

impl<S, N> FormatEvent<S, N> for JournaldFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut line = String::new();
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                line.push_str(span.name());
                line.push_str(": ");
            }
        }
        ctx.field_format()
            .format_fields(Writer::new(&mut line), event)?;
        let prefix = format!("<{}>", syslog_priority(event.metadata().level()));
        for l in line.lines() {
            writeln!(writer, "{prefix}{l}")?;
        }
        if line.is_empty() {
            writeln!(writer, "{prefix}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// A `MakeWriter` into a shared buffer.
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'w> MakeWriter<'w> for Buffer {
        type Writer = Buffer;
        fn make_writer(&'w self) -> Buffer {
            self.clone()
        }
    }

    /// What `format` at `level` writes for a few events.
    fn output(format: LogFormat, level: &str) -> String {
        let buf = Buffer::default();
        let (_, sub) = subscriber(format, level, buf.clone()).unwrap();
        tracing::subscriber::with_default(sub, || {
            let span = tracing::info_span!("acquisition", id = 7);
            let _g = span.enter();
            tracing::error!(seq = 3, "outbox full");
            tracing::warn!("door open");
            tracing::info!("first line\nsecond line");
            tracing::debug!("details");
        });
        let bytes = buf.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn journald_lines_carry_the_syslog_priority_and_no_timestamp() {
        let out = output(LogFormat::Journald, "info");
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines,
            [
                "<3>acquisition: outbox full seq=3",
                "<4>acquisition: door open",
                "<6>acquisition: first line",
                "<6>second line",
            ],
            "{out}"
        );
        assert!(output(LogFormat::Journald, "debug").contains("<7>acquisition: details"));
    }

    #[test]
    fn json_is_one_object_per_line() {
        let out = output(LogFormat::Json, "info");
        let lines: Vec<serde_json::Value> = out
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON line"))
            .collect();
        assert_eq!(lines.len(), 3, "{out}");
        assert_eq!(lines[0]["level"], "ERROR");
        assert_eq!(lines[0]["message"], "outbox full");
        assert_eq!(lines[0]["seq"], 3);
        assert_eq!(lines[0]["span"]["name"], "acquisition");
        assert_eq!(lines[0]["span"]["id"], 7);
        assert_eq!(lines[1]["message"], "door open");
        // A multi-line message stays one object.
        assert_eq!(lines[2]["message"], "first line\nsecond line");
    }

    #[test]
    fn text_has_level_and_message_and_honours_per_module_levels() {
        let out = output(LogFormat::Text, "info");
        assert!(
            out.contains("ERROR") && out.contains("outbox full"),
            "{out}"
        );
        assert!(!out.contains("details"), "{out}");
        // A filter for other modules only: nothing from here.
        assert_eq!(output(LogFormat::Text, "rumqttc=debug"), "");
    }

    #[test]
    fn a_bad_level_names_the_key_and_the_fix() {
        let err = subscriber(LogFormat::Text, "lumiq=loud", std::io::sink)
            .err()
            .unwrap();
        let msg = err.to_string();
        assert!(msg.contains("logging.level = \"lumiq=loud\""), "{msg}");
        assert!(msg.contains("LUMIQ_LOGGING__LEVEL"), "{msg}");
    }

    #[test]
    fn priorities_are_the_syslog_ones_journald_parses() {
        assert_eq!(syslog_priority(&Level::ERROR), 3);
        assert_eq!(syslog_priority(&Level::WARN), 4);
        assert_eq!(syslog_priority(&Level::INFO), 6);
        assert_eq!(syslog_priority(&Level::DEBUG), 7);
        assert_eq!(syslog_priority(&Level::TRACE), 7);
    }

    #[test]
    fn auto_is_journald_only_when_stderr_is_the_journal_stream() {
        for f in [LogFormat::Text, LogFormat::Json, LogFormat::Journald] {
            assert_eq!(resolve(f), f);
        }
        use std::os::unix::fs::MetadataExt;
        let Ok(m) = std::fs::metadata("/proc/self/fd/2") else {
            return;
        };
        let saved = std::env::var_os("JOURNAL_STREAM");
        std::env::set_var("JOURNAL_STREAM", format!("{}:{}", m.dev(), m.ino()));
        let matching = resolve(LogFormat::Auto);
        std::env::set_var("JOURNAL_STREAM", format!("{}:{}", m.dev(), m.ino() + 1));
        let other = resolve(LogFormat::Auto);
        std::env::remove_var("JOURNAL_STREAM");
        let unset = resolve(LogFormat::Auto);
        if let Some(v) = saved {
            std::env::set_var("JOURNAL_STREAM", v);
        }
        assert_eq!(
            (matching, other, unset),
            (LogFormat::Journald, LogFormat::Text, LogFormat::Text)
        );
    }
}
