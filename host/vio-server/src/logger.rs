//! A small `log` backend: one line per record on stderr, with the time since start.

use log::{LevelFilter, Log, Metadata, Record};
use std::io::Write;
use std::sync::OnceLock;
use std::time::Instant;

struct StderrLog {
    start: Instant,
}

static LOGGER: OnceLock<StderrLog> = OnceLock::new();

impl Log for StderrLog {
    fn enabled(&self, m: &Metadata<'_>) -> bool {
        m.level() <= log::max_level()
    }

    fn log(&self, r: &Record<'_>) {
        if !self.enabled(r.metadata()) {
            return;
        }
        let t = self.start.elapsed();
        let line = format!(
            "[{:5}.{:03}] vio-server {}: {}\n",
            t.as_secs(),
            t.subsec_millis(),
            r.level().as_str().to_ascii_lowercase(),
            r.args()
        );
        // One write per line, so lines of concurrent threads do not interleave.
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {}
}

/// Installs the logger (once; later calls only change the level).
pub fn init(level: LevelFilter) {
    let logger = LOGGER.get_or_init(|| StderrLog {
        start: Instant::now(),
    });
    let _ = log::set_logger(logger);
    log::set_max_level(level);
}
