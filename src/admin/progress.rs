//! Progress of a long operator scan (`publish repair`, `apikey reseal`):
//! on a terminal one line rewritten in place, at most ten times a second;
//! otherwise (a pipe, a log) a plain line at most once a second. Always on
//! the error stream, so the standard output keeps only the results.

use std::io::Write;
use std::time::{Duration, Instant};

/// Counts so far of a scan.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub scanned: usize,
    pub fixed: usize,
    pub failed: usize,
}

pub struct Progress<W: Write> {
    out: W,
    terminal: bool,
    what: &'static str,
    started: Instant,
    shown: Option<Instant>,
    last: Counts,
}

impl Progress<std::io::Stderr> {
    /// To the error stream, as a terminal if it is one.
    pub fn stderr(what: &'static str) -> Self {
        use std::io::IsTerminal as _;
        let terminal = std::io::stderr().is_terminal();
        Progress::new(std::io::stderr(), terminal, what)
    }
}

impl<W: Write> Progress<W> {
    pub fn new(out: W, terminal: bool, what: &'static str) -> Self {
        Progress {
            out,
            terminal,
            what,
            started: Instant::now(),
            shown: None,
            last: Counts::default(),
        }
    }

    /// The counts after a page; shown unless shown too recently.
    pub fn update(&mut self, counts: Counts) {
        self.last = counts;
        let every = if self.terminal {
            Duration::from_millis(100)
        } else {
            Duration::from_secs(1)
        };
        if self.shown.is_some_and(|at| at.elapsed() < every) {
            return;
        }
        self.shown = Some(Instant::now());
        self.show();
    }

    fn show(&mut self) {
        let c = self.last;
        let secs = self.started.elapsed().as_secs_f64().max(0.001);
        let text = format!(
            "{}: {} scanned, {} fixed, {} failed, {:.0} items/s",
            self.what,
            c.scanned,
            c.fixed,
            c.failed,
            c.scanned as f64 / secs
        );
        let _ = if self.terminal {
            // Back to the line's start, then clear what the last one left.
            write!(self.out, "\r{text}\x1b[K")
        } else {
            writeln!(self.out, "{text}")
        };
        let _ = self.out.flush();
    }

    /// The last counts, shown whatever the time; ends the terminal's line.
    pub fn finish(&mut self) {
        self.show();
        if self.terminal {
            let _ = writeln!(self.out);
        }
    }

    /// The counts last given.
    pub fn counts(&self) -> Counts {
        self.last
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(terminal: bool, pages: usize) -> String {
        let mut p = Progress::new(Vec::new(), terminal, "repair");
        for i in 1..=pages {
            p.update(Counts {
                scanned: i * 10,
                fixed: i,
                failed: 0,
            });
        }
        p.finish();
        String::from_utf8(p.out).unwrap()
    }

    #[test]
    fn a_pipe_gets_plain_lines_and_the_last_counts() {
        let out = shown(false, 50);
        assert!(!out.contains('\r') && !out.contains('\x1b'), "{out:?}");
        let lines: Vec<&str> = out.lines().collect();
        // The first page, then (within a second) only the final counts.
        assert_eq!(lines.len(), 2, "{out:?}");
        assert!(lines[0].starts_with("repair: 10 scanned, 1 fixed, 0 failed"));
        assert!(lines[1].starts_with("repair: 500 scanned, 50 fixed, 0 failed"));
    }

    #[test]
    fn a_terminal_gets_one_line_rewritten() {
        let out = shown(true, 50);
        assert_eq!(out.matches('\n').count(), 1, "{out:?}");
        assert!(out.starts_with("\rrepair: 10 scanned"), "{out:?}");
        assert!(out.ends_with("items/s\x1b[K\n"), "{out:?}");
        assert!(out.contains("\rrepair: 500 scanned, 50 fixed"), "{out:?}");
    }
}
