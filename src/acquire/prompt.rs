//! The terminal side of guided calibration: each step's title and instructions on stderr,
//! a wait for Enter before the steps that need the technician (none with `--yes`), and a
//! progress bar per step.
//!
//! Owns: reading the technician's Enter and drawing. Progress bars are drawn only when
//! stderr is a terminal (otherwise hidden: nothing drawn, nothing waited for); the step
//! lines are always written, so a log shows what was done. The steps themselves are
//! [`super::guided`].

use std::io::{BufRead, IsTerminal, Write};

use indicatif::{ProgressBar, ProgressStyle};

use super::guided::{Guide, GuidedError, Step};

/// A [`Guide`] on the terminal: `input` is where the technician's Enter comes from.
pub struct TerminalGuide<R: BufRead> {
    input: R,
    /// Go through every step without waiting (`--yes`).
    yes: bool,
    bar: ProgressBar,
}

impl<R: BufRead> TerminalGuide<R> {
    pub fn new(input: R, yes: bool) -> Self {
        TerminalGuide {
            input,
            yes,
            bar: ProgressBar::hidden(),
        }
    }
}

/// A bar of `len` units on stderr when it is a terminal, else one that draws nothing.
pub fn progress_bar(len: u64) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let b = ProgressBar::new(len);
    b.set_style(
        ProgressStyle::with_template("  [{bar:30}] {pos}/{len} {msg} {elapsed}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    b
}

impl<R: BufRead> Guide for TerminalGuide<R> {
    fn begin(&mut self, step: &Step) -> Result<(), GuidedError> {
        eprintln!(
            "\nStep {}/{}: {}\n  {}",
            step.number, step.total, step.title, step.instructions
        );
        if step.needs_technician && !self.yes {
            eprint!("  Press Enter when done (Ctrl-C stops; the calibration set stays as it is) ");
            let _ = std::io::stderr().flush();
            let mut line = String::new();
            let n = self
                .input
                .read_line(&mut line)
                .map_err(|e| GuidedError::Stopped {
                    step: step.number,
                    reason: format!("cannot read the technician's answer: {e}"),
                })?;
            if n == 0 {
                return Err(GuidedError::Stopped {
                    step: step.number,
                    reason: "the input closed before the technician confirmed this step; \
                             run on a terminal, or pass --yes to go through without waiting"
                        .into(),
                });
            }
        }
        self.bar = progress_bar(step.work);
        Ok(())
    }

    fn advance(&mut self, what: &str) {
        self.bar.set_message(what.to_string());
        self.bar.inc(1);
    }

    fn finish(&mut self, summary: &str) {
        self.bar.finish_and_clear();
        eprintln!("  done: {summary}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(needs: bool) -> Step {
        Step {
            kind: super::super::guided::StepKind::Flats,
            number: 4,
            total: 5,
            title: "t".into(),
            instructions: "i".into(),
            needs_technician: needs,
            work: 3,
        }
    }

    #[test]
    fn waits_for_enter_and_stops_when_the_input_closes() {
        let mut g = TerminalGuide::new(&b"\n"[..], false);
        g.begin(&step(true)).unwrap();
        g.advance("a");
        g.finish("ok");
        let e = g.begin(&step(true)).unwrap_err().to_string();
        assert!(e.contains("step 4") && e.contains("--yes"), "{e}");
        // Steps without the technician, and --yes, never read.
        g.begin(&step(false)).unwrap();
        let mut y = TerminalGuide::new(&b""[..], true);
        y.begin(&step(true)).unwrap();
    }
}
