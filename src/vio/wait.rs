//! A bounded wait for a partner that says what it waits for: a busy host can make a VIO server
//! slow for seconds, and a smoke-test guest must neither fail before its bound nor sit silent.

use crate::{cprintln, time};
use core::fmt;

/// How long a wait stays quiet before it reports on the console, and then how often.
const QUIET_US: u64 = 1_000_000;

/// One wait: its start, its bound, and when it next says what it is waiting for.
pub struct Patience {
    start: u64,
    limit_us: u64,
    next_note: u64,
}

impl Patience {
    pub fn new(limit_us: u64) -> Patience {
        let start = time::now_us();
        Patience {
            start,
            limit_us,
            next_note: start + QUIET_US,
        }
    }

    /// The bound, in milliseconds.
    pub fn limit_ms(&self) -> u64 {
        self.limit_us / 1000
    }

    /// Whether the bound has passed. After the first second, and each second after that, prints
    /// `# <what>: still waiting, N s of M s` so a slow partner is visible before it is a failure.
    pub fn expired(&mut self, what: &dyn fmt::Display) -> bool {
        let now = time::now_us();
        let waited = now - self.start;
        if waited > self.limit_us {
            return true;
        }
        if now >= self.next_note {
            self.next_note = now + QUIET_US;
            cprintln!(
                "# {}: still waiting, {} s of {} s",
                what,
                waited / 1_000_000,
                self.limit_us / 1_000_000
            );
        }
        false
    }
}
