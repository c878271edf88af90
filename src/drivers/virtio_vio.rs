//! The virtio-vio driver: opens an adapter's CRQ and transport (handshake, PROBE) and sets up
//! the device its server offers, virtio-blk or virtio-fs.

use super::virtio_blk::VirtioBlk;
use super::virtio_fs::{Share, VirtioFs};
use super::{Bound, Unit};
use crate::dev::{AnyDevice, DeviceError, TransportStats};
use crate::time;
use crate::vio::{tce, Adapter};
use crate::virtio::{QueueError, VioError, VioHandle, VioTransport};
use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use virtio_vio::device_id;

/// Opens `a` and makes a device of it.
pub fn bind(a: &Adapter, timeout_us: u64) -> Result<Bound, VioError> {
    let start = time::now_us();
    let t = VioTransport::open(a, timeout_us)?;
    let h = t.handle().header();
    let summary = format!(
        "CRQ handshake and PROBE in {} us: device id {}, {} queue(s), liobn {:#x} window {:#x}+{:#x}",
        time::now_us() - start,
        h.device_id,
        h.num_queues,
        a.window.liobn,
        a.window.ioba,
        a.window.size
    );
    let mut facts = Vec::new();
    let device = if h.device_id == device_id::FS {
        VirtioFs::over(a.name.clone(), t)
            .map(|d| AnyDevice::FileSystem(Box::new(Share::new(d))))
            .map_err(|e| ("fs", e))
    } else {
        VirtioBlk::over(a.name.clone(), t)
            .map(|b| {
                let (accepted, offered) = b.features();
                facts.push((
                    "features",
                    format!("negotiated {accepted:#x} of offered {offered:#x}"),
                ));
                AnyDevice::Block(Box::new(b))
            })
            .map_err(|e| ("blk", e))
    };
    Ok(Bound {
        summary,
        facts,
        units: alloc::vec![Unit { name: None, device }],
        shared: None,
    })
}

/// What every virtio-vio device holds besides its driver: the adapter's name, its TCE window
/// (made the active one while the driver runs, for virtio-drivers' static `Hal`), the
/// transport's handle, and the IOBA pages its rings keep mapped.
pub struct Attachment {
    pub name: String,
    window: usize,
    pub handle: VioHandle,
    /// IOBA pages in use once the queues exist: every request must return to it.
    rings: usize,
}

impl Attachment {
    pub fn new(name: String, t: &VioTransport) -> Attachment {
        Attachment {
            name,
            window: t.window(),
            handle: t.handle(),
            rings: 0,
        }
    }

    /// Runs `f` (anything that may map or unmap through `VioHal`: driver calls, and dropping
    /// queues) with this adapter's window active.
    pub fn run<R>(&self, f: impl FnOnce() -> R) -> R {
        tce::with_window(self.window, f)
    }

    /// The outcome of setting the device up through virtio-drivers: a transport failure
    /// recorded on the way outranks what the driver made of it, and on any failure what was
    /// set up is dropped and the device shut down, so the server can reach nothing.
    pub fn settle<T>(&self, r: Result<T, virtio_drivers::Error>) -> Result<T, VioError> {
        let r = r.map_err(|error| VioError::Driver {
            adapter: self.name.clone(),
            error,
        });
        let r = match self.handle.take_error() {
            Some(e) => {
                self.run(|| drop(r));
                Err(e)
            }
            None => r,
        };
        if r.is_err() {
            let _ = self.shut_down();
        }
        r
    }

    /// After a request failed half way: unmaps every buffer it left shared (the device must
    /// not reach memory that is about to be reused), saying so.
    pub fn revoke_shared(&self) {
        match tce::with(self.window, |w| w.revoke_shared()) {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => log::warn!(
                "{}: unmapped {n} buffers a failed request left shared",
                self.name
            ),
            Ok(Err(e)) | Err(e) => log::error!("{}: {e}", self.name),
        }
    }

    /// Takes what is mapped now (the rings) as what stays mapped between requests.
    pub fn rings_ready(&mut self) {
        self.rings = self.pages_in_use();
    }

    fn pages_in_use(&self) -> usize {
        tce::with(self.window, |w| w.pages_in_use()).unwrap_or(0)
    }

    /// IOBA pages mapped now beyond the rings (0 between requests).
    pub fn pages_left_mapped(&self) -> usize {
        self.pages_in_use().saturating_sub(self.rings)
    }

    /// The counters every device reports, from the link's and the CRQ's.
    pub fn stats(&self) -> TransportStats {
        let (l, c) = self.handle.counters();
        TransportStats {
            requests: l.requests,
            notifies: l.notifies,
            received: c.received,
            protocol_errors: l.protocol_errors,
            resets: l.resets,
            migrations: l.migrations,
        }
    }

    /// Resets the device, frees its CRQ and clears every TCE of its window: afterwards the
    /// server can reach nothing. Call once the driver's queues are dropped (inside [`run`](Self::run)).
    pub fn shut_down(&self) -> Result<(), VioError> {
        self.handle.shut_down()
    }
}

impl super::virtio_blk::Attach for Attachment {
    fn name(&self) -> &str {
        &self.name
    }

    fn run<R>(&self, f: impl FnOnce() -> R) -> R {
        Attachment::run(self, f)
    }

    fn settle<T>(&self, r: Result<T, virtio_drivers::Error>) -> Result<T, DeviceError> {
        Ok(Attachment::settle(self, r)?)
    }

    fn failed(&self, error: virtio_drivers::Error) -> DeviceError {
        VioError::Driver {
            adapter: self.name.clone(),
            error,
        }
        .into()
    }

    fn gone(&self) -> DeviceError {
        VioError::Queue {
            adapter: self.name.clone(),
            queue: 0,
            error: QueueError::ShutDown,
        }
        .into()
    }

    fn queue_failed(&self, queue: u16, error: QueueError) -> DeviceError {
        VioError::Queue {
            adapter: self.name.clone(),
            queue,
            error,
        }
        .into()
    }

    fn bad_config(&self, what: &'static str) -> DeviceError {
        VioError::BadConfig {
            adapter: self.name.clone(),
            what,
        }
        .into()
    }

    fn used_patience(&self) -> crate::vio::Patience {
        crate::vio::Patience::new(self.handle.timeout_us())
    }

    fn completing<R>(&self, f: impl FnOnce() -> R) -> (R, Option<DeviceError>) {
        let r = self.run(|| self.handle.completing_itself(f));
        (r, self.handle.take_error().map(Into::into))
    }

    fn revoke_shared(&self) {
        Attachment::revoke_shared(self)
    }

    fn rings_ready(&mut self) {
        Attachment::rings_ready(self)
    }

    fn pages_left_mapped(&self) -> usize {
        Attachment::pages_left_mapped(self)
    }

    fn stats(&self) -> TransportStats {
        Attachment::stats(self)
    }

    fn shut_down(&self) -> Result<(), DeviceError> {
        Ok(Attachment::shut_down(self)?)
    }

    fn abandon(&self) {
        self.handle.give_up();
    }

    fn reconnect(&self) -> Option<Result<(), DeviceError>> {
        Some(self.handle.reconnect().map_err(Into::into))
    }
}
