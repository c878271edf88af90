//! virtio-fs over virtio-vio. virtio-drivers has no virtio-fs device, so [`VirtioFs`] drives
//! its public `VirtQueue`s directly: queue 0 (hiprio) carries FORGET, queue 1 the requests;
//! several requests go out under one NOTIFY. The FUSE half is the `fuse-client` crate, which
//! checks every reply; [`Share`] puts the two together as a [`FileSystem`].

use super::virtio_vio::Attachment;
use crate::dev::fs::{Attr, DirEntry, FileSystem, FsError, Totals};
use crate::dev::{Device, DeviceError as Error, TransportStats};
use crate::virtio::{QueueError, VioError, VioHal, VioTransport};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use bitflags::bitflags;
use fuse_client::{Call, Fs, Queue, Transport as FuseTransport};
use virtio_drivers::queue::VirtQueue;
use virtio_drivers::transport::Transport;
use virtio_vio::device_id;

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
    at: Attachment,
    transport: VioTransport,
    hiprio: Option<VirtQueue<VioHal, HIPRIO_SIZE>>,
    request: Option<VirtQueue<VioHal, REQUEST_SIZE>>,
    pub tag: String,
    pub request_queues: u32,
}

impl VirtioFs {
    /// Sets up a filesystem over an open transport.
    pub fn over(name: String, mut t: VioTransport) -> Result<VirtioFs, VioError> {
        let id = t.handle().header().device_id;
        if id != device_id::FS {
            return Err(VioError::WrongKind {
                adapter: name,
                id,
                wanted: "a virtio-fs device",
            });
        }
        let at = Attachment::new(name, &t);
        let r = at.run(|| {
            t.begin_init(FsFeature::VERSION_1);
            let tag: [u8; 36] = t.read_config_space(0)?;
            let queues: u32 = t.read_config_space(36)?;
            let hiprio = VirtQueue::<VioHal, HIPRIO_SIZE>::new(&mut t, HIPRIO, false, false)?;
            let request = VirtQueue::<VioHal, REQUEST_SIZE>::new(&mut t, REQUEST, false, false)?;
            t.finish_init();
            Ok((tag, queues, hiprio, request))
        });
        let (tag, queues, hiprio, request) = at.settle(r)?;
        let mut dev = VirtioFs {
            at,
            transport: t,
            hiprio: Some(hiprio),
            request: Some(request),
            tag: String::new(),
            request_queues: queues,
        };
        let end = tag.iter().position(|&b| b == 0).unwrap_or(tag.len());
        let what = match core::str::from_utf8(&tag[..end]) {
            Err(_) => "the tag is not UTF-8",
            Ok(_) if queues == 0 => "no request queue",
            Ok(tag) => {
                dev.tag = tag.into();
                dev.at.rings_ready();
                return Ok(dev);
            }
        };
        let _ = dev.shut_down();
        Err(VioError::BadConfig {
            adapter: dev.at.name.clone(),
            what,
        })
    }

    /// Frees the queues, resets the device, frees its CRQ and clears every TCE.
    pub fn shut_down(&mut self) -> Result<(), VioError> {
        self.drop_queues();
        self.at.shut_down()
    }

    fn drop_queues(&mut self) {
        let (h, r) = (&mut self.hiprio, &mut self.request);
        self.at.run(|| {
            drop(h.take());
            drop(r.take());
        });
    }

    fn submit_on<const N: usize>(
        transport: &mut VioTransport,
        q: &mut VirtQueue<VioHal, N>,
        idx: u16,
        batch: &mut [Call],
    ) -> Result<(), QueueError> {
        let mut tokens: Vec<(u16, usize)> = Vec::new();
        for (i, c) in batch.iter_mut().enumerate() {
            let out: &mut [&mut [u8]] = if c.reply.is_empty() {
                &mut []
            } else {
                &mut [&mut c.reply[..]]
            };
            // SAFETY: the request and reply buffers live in `batch` until their used entries are
            // popped below, before this function returns.
            let token = unsafe { q.add(&[&c.request[..]], out) }.map_err(QueueError::Driver)?;
            tokens.push((token, i));
        }
        if q.should_notify() {
            // Returns once the server has answered with USED: every chain is done.
            transport.notify(idx);
        }
        while !tokens.is_empty() {
            let Some(token) = q.peek_used() else {
                return Err(QueueError::TooFewCompleted {
                    missing: tokens.len(),
                });
            };
            let Some(at) = tokens.iter().position(|(t, _)| *t == token) else {
                return Err(QueueError::NotInFlight { token });
            };
            let (_, i) = tokens.swap_remove(at);
            let c = &mut batch[i];
            let out: &mut [&mut [u8]] = if c.reply.is_empty() {
                &mut []
            } else {
                &mut [&mut c.reply[..]]
            };
            // SAFETY: the same buffers that were added with this token.
            let used =
                unsafe { q.pop_used(token, &[&c.request[..]], out) }.map_err(QueueError::Driver)?;
            c.used = used as usize;
        }
        Ok(())
    }
}

impl FuseTransport for VirtioFs {
    type Error = VioError;

    fn submit(&mut self, queue: Queue, batch: &mut [Call]) -> Result<(), VioError> {
        let (t, h, r) = (&mut self.transport, &mut self.hiprio, &mut self.request);
        let (idx, result) = self.at.run(|| match queue {
            Queue::Hiprio => (
                HIPRIO,
                h.as_mut().map_or(Err(QueueError::ShutDown), |q| {
                    Self::submit_on(t, q, HIPRIO, batch)
                }),
            ),
            Queue::Request => (
                REQUEST,
                r.as_mut().map_or(Err(QueueError::ShutDown), |q| {
                    Self::submit_on(t, q, REQUEST, batch)
                }),
            ),
        });
        if result.is_err() {
            self.at.revoke_shared();
        }
        result.map_err(|error| VioError::Queue {
            adapter: self.at.name.clone(),
            queue: idx,
            error,
        })
    }

    /// Each reset of the link is a new server session, which needs FUSE_INIT again.
    fn restarts(&self) -> u64 {
        self.at.handle.counters().0.resets
    }
}

impl Drop for VirtioFs {
    fn drop(&mut self) {
        self.drop_queues();
    }
}

/// A virtio-fs share: FUSE over a [`VirtioFs`], as a [`FileSystem`].
pub struct Share {
    fs: Fs<VirtioFs>,
    name: String,
    tag: String,
    queues: u32,
}

impl Share {
    pub fn new(dev: VirtioFs) -> Share {
        Share {
            name: dev.at.name.clone(),
            tag: dev.tag.clone(),
            queues: dev.request_queues,
            fs: Fs::new(dev),
        }
    }
}

/// A FUSE error with the device's error as vioboot's own.
fn fs_err(e: fuse_client::FsError<VioError>) -> FsError {
    e.map_transport(Error::Vio)
}

impl Device for Share {
    fn name(&self) -> &str {
        &self.name
    }

    fn pages_left_mapped(&self) -> usize {
        self.fs.transport_ref().at.pages_left_mapped()
    }

    fn stats(&self) -> TransportStats {
        self.fs.transport_ref().at.stats()
    }

    fn shut_down(&mut self) -> Result<(), Error> {
        Ok(self.fs.transport().shut_down()?)
    }
}

impl FileSystem for Share {
    fn mount(&mut self) -> Result<String, FsError> {
        let i = self.fs.mount().map_err(fs_err)?;
        Ok(format!(
            "tag \"{}\", FUSE {}.{}, {} request queue(s), READDIRPLUS {}",
            self.tag,
            i.major,
            i.minor,
            self.queues,
            if i.readdirplus { "yes" } else { "no" }
        ))
    }

    fn stat(&mut self, path: &str) -> Result<Attr, FsError> {
        self.fs.stat(path).map_err(fs_err)
    }

    fn read_stream(
        &mut self,
        path: &str,
        range: Option<(u64, u64)>,
        sink: &mut dyn FnMut(&[u8]),
    ) -> Result<(u64, u64), FsError> {
        self.fs.read_stream(path, range, sink).map_err(fs_err)
    }

    fn read_file(&mut self, path: &str) -> Result<Vec<u8>, FsError> {
        self.fs.read_file(path, &mut |_| {}).map_err(fs_err)
    }

    fn list_dir(&mut self, path: &str) -> Result<Vec<DirEntry>, FsError> {
        self.fs.list_dir(path).map_err(fs_err)
    }

    fn totals(&mut self) -> Result<Totals, FsError> {
        let (blocks, free, block_size, files) = self.fs.statfs().map_err(fs_err)?;
        Ok(Totals {
            blocks,
            free,
            block_size,
            files,
        })
    }

    fn unmount(&mut self) -> Result<String, FsError> {
        self.fs.unmount().map_err(fs_err)?;
        let s = self.fs.stats;
        Ok(format!(
            "DESTROY sent; {} FUSE requests, {} FORGETs, {} bytes read",
            s.requests, s.forgets, s.bytes_read
        ))
    }

    fn label(&self) -> &str {
        &self.tag
    }

    fn as_device(&mut self) -> &mut dyn Device {
        self
    }
}
