//! A progress line for long commands on stderr: redrawn in place on a terminal, printed
//! every 10% otherwise (so logs of non-interactive runs stay short).

use std::io::{IsTerminal as _, Write as _};
use std::time::Instant;

pub struct ProgressLine {
    what: &'static str,
    started: Instant,
    interactive: bool,
    /// Last tenth printed in non-interactive mode.
    last_tenth: usize,
}

impl ProgressLine {
    pub fn new(what: &'static str) -> Self {
        Self {
            what,
            started: Instant::now(),
            interactive: std::io::stderr().is_terminal(),
            last_tenth: 0,
        }
    }

    pub fn update(&mut self, done: usize, failed: usize, total: usize) {
        const WIDTH: usize = 30;
        let filled = (done * WIDTH).checked_div(total).unwrap_or(WIDTH);
        let line = format!(
            "[{}{}] {done}/{total} {}, {failed} failed, {:.1} s",
            "#".repeat(filled),
            ".".repeat(WIDTH - filled),
            self.what,
            self.started.elapsed().as_secs_f64()
        );
        let mut stderr = std::io::stderr().lock();
        if self.interactive {
            let _ = write!(stderr, "\r{line}");
            if done == total {
                let _ = writeln!(stderr);
            }
        } else {
            let tenth = (done * 10).checked_div(total).unwrap_or(10);
            if tenth > self.last_tenth || done == total {
                self.last_tenth = tenth;
                let _ = writeln!(stderr, "{line}");
            }
        }
    }
}
