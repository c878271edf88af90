//! The server's main loop: waits for a connection, runs a fresh session on it, and starts over
//! when the partner goes away, until told to stop.

use crate::device::Device;
use crate::faults::Faults;
use crate::mirror::Mirror;
use crate::model::Ended;
use crate::partner::{Event, Hello, Partner};
use crate::session::Session;
use crate::stats::Stats;
use log::{debug, error, info};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How long the loop waits for an event before it looks at the stop flag again.
pub const TICK: Duration = Duration::from_millis(200);

/// What the loop needs besides the partner and the device.
#[derive(Clone, Default)]
pub struct Options {
    pub faults: Faults,
    pub stats: Arc<Stats>,
    /// Set (e.g. by SIGTERM) to end the loop.
    pub stop: Arc<AtomicBool>,
}

/// Why [`serve`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// The stop flag was set.
    Stopped,
    /// The `die-mid-request` fault fired; the connection was dropped.
    Died,
    /// The partner has nothing more to say (only a test partner runs dry).
    Idle,
}

/// How one session ended.
enum SessionEnd {
    Disconnected,
    /// A new HELLO arrived without a disconnect in between.
    Reconnected(Hello),
    Stopped,
    Died,
    Idle,
}

/// Serves `device` to the guest behind `p` until stopped; gives the device back.
///
/// `idle_limit`: with `Some(n)`, return [`Exit::Idle`] after `n` ticks in a row without an event
/// (for tests); `None` waits for ever.
pub fn serve<P: Partner + ?Sized, D: Device>(
    p: &mut P,
    mut device: D,
    opts: &Options,
    idle_limit: Option<u32>,
) -> (Exit, D) {
    let mut next: Option<Hello> = None;
    let mut idle = 0u32;
    loop {
        if opts.stop.load(Ordering::Relaxed) {
            return (Exit::Stopped, device);
        }
        let hello = match next.take() {
            Some(h) => h,
            None => match p.next_event(TICK) {
                Some(Event::Connected(h)) => h,
                Some(ev) => {
                    debug!("{ev:?} without a connection ignored");
                    continue;
                }
                None => {
                    idle += 1;
                    if idle_limit.is_some_and(|l| idle >= l) {
                        return (Exit::Idle, device);
                    }
                    continue;
                }
            },
        };
        idle = 0;
        let mirror = match Mirror::new(hello.window_ioba, hello.window_size, opts.stats.clone()) {
            Ok(m) => m,
            Err(e) => {
                error!("{e}: dropping the connection");
                p.disconnect();
                continue;
            }
        };
        Stats::inc(&opts.stats.sessions);
        info!(
            "session {} starts (faults: {})",
            Stats::get(&opts.stats.sessions),
            opts.faults
        );
        let mut s = Session::new(mirror, device, opts.faults, opts.stats.clone());
        let end = run(p, &mut s, opts, idle_limit);
        device = s.into_device();
        match end {
            SessionEnd::Disconnected => {
                info!("session ended: partner disconnected; waiting for a new connection")
            }
            SessionEnd::Reconnected(h) => next = Some(h),
            SessionEnd::Stopped => {
                p.disconnect();
                return (Exit::Stopped, device);
            }
            SessionEnd::Died => {
                p.disconnect();
                return (Exit::Died, device);
            }
            SessionEnd::Idle => return (Exit::Idle, device),
        }
    }
}

fn run<P: Partner + ?Sized, D: Device>(
    p: &mut P,
    s: &mut Session<D>,
    opts: &Options,
    idle_limit: Option<u32>,
) -> SessionEnd {
    let ended = |e: Ended| match e {
        Ended::Disconnected => SessionEnd::Disconnected,
        Ended::Died => SessionEnd::Died,
    };
    if let Err(e) = s.start(p) {
        return ended(e);
    }
    let mut idle = 0u32;
    loop {
        if opts.stop.load(Ordering::Relaxed) {
            return SessionEnd::Stopped;
        }
        let Some(ev) = p.next_event(TICK) else {
            idle += 1;
            if idle_limit.is_some_and(|l| idle >= l) {
                return SessionEnd::Idle;
            }
            continue;
        };
        idle = 0;
        match ev {
            Event::GuestCrq(entry) => {
                if let Err(e) = s.handle(p, entry) {
                    return ended(e);
                }
            }
            Event::Reset => s.reset(),
            Event::Connected(h) => return SessionEnd::Reconnected(h),
            Event::Disconnected => return SessionEnd::Disconnected,
        }
    }
}
