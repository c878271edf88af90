//! virtio-fs over virtio-vio: the queue half of vioboot's FUSE client. virtio-drivers has no
//! virtio-fs device, so this drives its public `VirtQueue`s directly: queue 0 (hiprio) carries
//! FORGET, queue 1 the requests; several requests go out under one NOTIFY. The FUSE half is
//! the `fuse-client` crate, which checks every reply.

use super::hal::VioHal;
use super::transport::{VioError, VioHandle, VioTransport};
use crate::vio::tce;
use crate::vio::Adapter;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use bitflags::bitflags;
use fuse_client::{Call, Fs, Queue, Transport as FuseTransport};
use virtio_drivers::queue::VirtQueue;
use virtio_drivers::transport::Transport;

/// virtio's device id for a filesystem.
pub const DEVICE_ID: u32 = 26;
const HIPRIO: u16 = 0;
const REQUEST: u16 = 1;
const HIPRIO_SIZE: usize = 64;
const REQUEST_SIZE: usize = 128;

bitflags! {
    /// The features vioboot's virtio-fs driver accepts.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct FsFeature: u64 {
        const VERSION_1 = 1 << 32;
    }
}

/// The queues of one virtio-fs device.
pub struct VirtioFs {
    pub name: String,
    window: usize,
    transport: VioTransport,
    handle: VioHandle,
    hiprio: Option<VirtQueue<VioHal, HIPRIO_SIZE>>,
    request: Option<VirtQueue<VioHal, REQUEST_SIZE>>,
    pub tag: String,
    pub request_queues: u32,
    /// IOBA pages in use with the queues set up: every request must return to it.
    pub baseline_pages: usize,
}

impl VirtioFs {
    /// Connects to the adapter, checks it is a filesystem, reads its tag and sets up its queues.
    pub fn open(adapter: &Adapter, timeout_us: u64) -> Result<VirtioFs, VioError> {
        Self::over(
            adapter.name.clone(),
            VioTransport::open(adapter, timeout_us)?,
        )
    }

    /// Sets up a filesystem over an open transport.
    pub fn over(name: String, mut t: VioTransport) -> Result<VirtioFs, VioError> {
        let handle = t.handle();
        if handle.header().device_id != DEVICE_ID {
            return Err(VioError::Changed {
                adapter: name,
                what: "is not a virtio-fs device",
            });
        }
        let window = t.window();
        let drv = |error| VioError::Driver {
            adapter: name.clone(),
            error,
        };
        let r = tce::with_window(window, || {
            t.begin_init(FsFeature::VERSION_1);
            let tag: [u8; 36] = t.read_config_space(0)?;
            let queues: u32 = t.read_config_space(36)?;
            let hiprio = VirtQueue::<VioHal, HIPRIO_SIZE>::new(&mut t, HIPRIO, false, false)?;
            let request = VirtQueue::<VioHal, REQUEST_SIZE>::new(&mut t, REQUEST, false, false)?;
            t.finish_init();
            Ok((tag, queues, hiprio, request))
        });
        if let Some(e) = handle.take_error() {
            return Err(e);
        }
        let (tag, queues, hiprio, request) = r.map_err(drv)?;
        let end = tag.iter().position(|&b| b == 0).unwrap_or(tag.len());
        let tag = core::str::from_utf8(&tag[..end])
            .map_err(|_| VioError::Changed {
                adapter: name.clone(),
                what: "has a tag that is not UTF-8",
            })?
            .into();
        if queues == 0 {
            return Err(VioError::Changed {
                adapter: name,
                what: "offers no request queue",
            });
        }
        let baseline_pages = tce::with(window, |w| w.pages_in_use()).unwrap_or(0);
        Ok(VirtioFs {
            name,
            window,
            transport: t,
            handle,
            hiprio: Some(hiprio),
            request: Some(request),
            tag,
            request_queues: queues,
            baseline_pages,
        })
    }

    pub fn handle(&self) -> &VioHandle {
        &self.handle
    }

    /// IOBA pages mapped now beyond the queues (0 between requests).
    pub fn pages_left_mapped(&self) -> usize {
        tce::with(self.window, |w| w.pages_in_use())
            .unwrap_or(0)
            .saturating_sub(self.baseline_pages)
    }

    /// Frees the queues, resets the device, frees its CRQ and clears every TCE.
    pub fn shut_down(mut self) -> Result<(), VioError> {
        self.drop_queues();
        self.handle.shut_down()
    }

    fn drop_queues(&mut self) {
        let w = self.window;
        tce::with_window(w, || {
            drop(self.hiprio.take());
            drop(self.request.take());
        });
    }

    /// Mounts the share: FUSE over this device.
    pub fn into_fs(self) -> Fs<VirtioFs> {
        Fs::new(self)
    }

    fn submit_on<const N: usize>(
        transport: &mut VioTransport,
        q: &mut VirtQueue<VioHal, N>,
        idx: u16,
        batch: &mut [Call],
    ) -> Result<(), String> {
        let mut tokens: Vec<(u16, usize)> = Vec::new();
        for (i, c) in batch.iter_mut().enumerate() {
            let out: &mut [&mut [u8]] = if c.reply.is_empty() {
                &mut []
            } else {
                &mut [&mut c.reply[..]]
            };
            // SAFETY: the request and reply buffers live in `batch` until their used entries are
            // popped below, before this function returns.
            let token = unsafe { q.add(&[&c.request[..]], out) }
                .map_err(|e| format!("queue {idx}: {e}"))?;
            tokens.push((token, i));
        }
        if q.should_notify() {
            // Returns once the server has answered with USED: every chain is done.
            transport.notify(idx);
        }
        while !tokens.is_empty() {
            let Some(token) = q.peek_used() else {
                return Err(format!(
                    "queue {idx}: the device completed {} requests too few",
                    tokens.len()
                ));
            };
            let Some(at) = tokens.iter().position(|(t, _)| *t == token) else {
                return Err(format!(
                    "queue {idx}: the device returned descriptor {token}, which was not in flight"
                ));
            };
            let (_, i) = tokens.swap_remove(at);
            let c = &mut batch[i];
            let out: &mut [&mut [u8]] = if c.reply.is_empty() {
                &mut []
            } else {
                &mut [&mut c.reply[..]]
            };
            // SAFETY: the same buffers that were added with this token.
            let used = unsafe { q.pop_used(token, &[&c.request[..]], out) }
                .map_err(|e| format!("queue {idx}: {e}"))?;
            c.used = used as usize;
        }
        Ok(())
    }
}

impl FuseTransport for VirtioFs {
    fn submit(&mut self, queue: Queue, batch: &mut [Call]) -> Result<(), String> {
        let w = self.window;
        let name = self.name.clone();
        let (t, h, r) = (&mut self.transport, &mut self.hiprio, &mut self.request);
        let result = tce::with_window(w, || match queue {
            Queue::Hiprio => match h.as_mut() {
                Some(q) => Self::submit_on(t, q, HIPRIO, batch),
                None => Err("device shut down".into()),
            },
            Queue::Request => match r.as_mut() {
                Some(q) => Self::submit_on(t, q, REQUEST, batch),
                None => Err("device shut down".into()),
            },
        });
        result.map_err(|e| format!("{name}: {e}"))
    }

    /// Each reset of the link is a new server session, which needs FUSE_INIT again.
    fn restarts(&self) -> u64 {
        self.handle.stats().0.resets
    }
}

impl Drop for VirtioFs {
    fn drop(&mut self) {
        self.drop_queues();
    }
}
