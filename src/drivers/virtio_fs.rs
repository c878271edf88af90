//! virtio-fs over any virtio transport: virtio-vio (`drivers::virtio_vio`) or virtio-pci
//! (`drivers::virtio_pci`, QEMU's vhost-user-fs-pci), what differs between them behind
//! `virtio_blk::Attach`. virtio-drivers has no virtio-fs device, so [`VirtioFs`] drives its
//! public `VirtQueue`s directly: queue 0 (hiprio) carries FORGET, queue 1 the requests;
//! several requests go out under one notification. On virtio-vio the notification returns
//! once the server answered; on virtio-pci the used ring is polled for at most the
//! transport's bound, and a device that stays silent past it is given up: its buffers are
//! never freed (it may still write them) and its queues stay until a reset has stopped it.
//! The FUSE half is the `fuse-client` crate, which checks every reply; [`Share`] puts the two
//! together as a [`FileSystem`].

use super::virtio_blk::Attach;
use super::virtio_vio::Attachment;
use crate::dev::fs::{Attr, DirEntry, FileSystem, FsError, Totals};
use crate::dev::{Device, DeviceError as Error, TransportStats};
use crate::virtio::{QueueError, VioError, VioHal, VioTransport};
use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use bitflags::bitflags;
use fuse_client::{Call, Fs, Queue, Transport as FuseTransport};
use virtio_drivers::queue::VirtQueue;
use virtio_drivers::transport::Transport;
use virtio_drivers::Hal;
use virtio_vio::device_id;

const HIPRIO: u16 = 0;
const REQUEST: u16 = 1;
const HIPRIO_SIZE: usize = 64;
const REQUEST_SIZE: usize = 128;
/// Bytes of `struct virtio_fs_config` (virtio 1.2, 5.11.4): the tag, then
/// `num_request_queues`.
const TAG_LEN: usize = 36;

bitflags! {
    /// The features vioboot's virtio-fs driver accepts.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct FsFeature: u64 {
        const VERSION_1 = 1 << 32;
    }
}

/// The queues of one virtio-fs device (on virtio-vio unless named otherwise).
pub struct VirtioFs<H: Hal = VioHal, T: Transport = VioTransport, A: Attach = Attachment> {
    at: A,
    transport: T,
    hiprio: Option<VirtQueue<H, HIPRIO_SIZE>>,
    request: Option<VirtQueue<H, REQUEST_SIZE>>,
    pub tag: String,
    pub request_queues: u32,
    /// A request the device never completed: nothing more is sent, and its queues are freed
    /// only once a reset has stopped the device.
    gave_up: Option<(u16, QueueError)>,
}

impl VirtioFs {
    /// Sets up a filesystem over an open virtio-vio transport.
    pub fn over(name: String, t: VioTransport) -> Result<VirtioFs, Error> {
        let id = t.handle().header().device_id;
        if id != device_id::FS {
            return Err(VioError::WrongKind {
                adapter: name,
                id,
                wanted: "a virtio-fs device",
            }
            .into());
        }
        let at = Attachment::new(name, &t);
        VirtioFs::start(at, t)
    }
}

/// `<device> queue <n>`, for a wait's progress comments.
struct QueueName<'a>(&'a str, u16);

impl core::fmt::Display for QueueName<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{} queue {}", self.0, self.1)
    }
}

/// Why a queue cannot be used, before virtio-drivers sees it: it does not exist (size 0) or
/// is smaller than the driver's ring.
pub fn check_queue<T: Transport>(t: &mut T, queue: u16, want: usize) -> Result<(), QueueError> {
    match t.max_queue_size(queue) {
        0 => Err(QueueError::Unavailable),
        n if (n as usize) < want => Err(QueueError::TooSmall {
            size: n,
            want: want as u32,
        }),
        _ => Ok(()),
    }
}

impl<H: Hal, T: Transport, A: Attach> VirtioFs<H, T, A> {
    /// Initializes the device over `t`: features, its tag and queue count, both queues.
    pub fn start(at: A, mut t: T) -> Result<Self, Error> {
        let mut queue_problem = None;
        let r = at.run(|| {
            t.begin_init(FsFeature::VERSION_1);
            let tag: [u8; TAG_LEN] = t.read_config_space(0)?;
            let queues: u32 = t.read_config_space(TAG_LEN)?;
            for (q, size) in [(HIPRIO, HIPRIO_SIZE), (REQUEST, REQUEST_SIZE)] {
                if let Err(e) = check_queue(&mut t, q, size) {
                    queue_problem = Some((q, e));
                    return Err(virtio_drivers::Error::InvalidParam);
                }
            }
            let hiprio = VirtQueue::<H, HIPRIO_SIZE>::new(&mut t, HIPRIO, false, false)?;
            let request = VirtQueue::<H, REQUEST_SIZE>::new(&mut t, REQUEST, false, false)?;
            t.finish_init();
            Ok((tag, queues, hiprio, request))
        });
        let settled = at.settle(r);
        if let (Some((queue, error)), Err(_)) = (queue_problem, &settled) {
            return Err(at.queue_failed(queue, error));
        }
        let (tag, queues, hiprio, request) = settled?;
        let mut dev = VirtioFs {
            at,
            transport: t,
            hiprio: Some(hiprio),
            request: Some(request),
            tag: String::new(),
            request_queues: queues,
            gave_up: None,
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
        Err(dev.at.bad_config(what))
    }

    /// Stops the device (a reset where the transport has one), then frees the queues and
    /// shuts the device down (reset, every mapping withdrawn). Queues a silent device may
    /// still use are freed only if the reset went through, else kept for good.
    pub fn shut_down(&mut self) -> Result<(), Error> {
        let stopped = self.at.stop();
        if self.gave_up.is_some() && stopped.is_err() {
            core::mem::forget(self.hiprio.take());
            core::mem::forget(self.request.take());
        }
        self.drop_queues();
        stopped.and(self.at.shut_down())
    }

    fn drop_queues(&mut self) {
        let (h, r) = (&mut self.hiprio, &mut self.request);
        self.at.run(|| {
            drop(h.take());
            drop(r.take());
        });
    }

    fn submit_on<const N: usize>(
        at: &A,
        transport: &mut T,
        q: &mut VirtQueue<H, N>,
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
            // popped below, before this function returns, or are never freed (a device that
            // stays silent, below).
            let token = unsafe { q.add(&[&c.request[..]], out) }.map_err(QueueError::Driver)?;
            tokens.push((token, i));
        }
        if q.should_notify() {
            transport.notify(idx);
        }
        // On virtio-vio every chain is done when notify returns; virtio-pci is polled.
        let mut patience = at.patience();
        let what = QueueName(at.name(), idx);
        while !tokens.is_empty() {
            let Some(token) = q.peek_used() else {
                let Some(p) = patience.as_mut() else {
                    return Err(QueueError::TooFewCompleted {
                        missing: tokens.len(),
                    });
                };
                if !p.expired(&what) {
                    core::hint::spin_loop();
                    continue;
                }
                // The device may still write these buffers: they are never freed.
                for (_, i) in &tokens {
                    let c = &mut batch[*i];
                    core::mem::forget(core::mem::take(&mut c.request));
                    core::mem::forget(core::mem::take(&mut c.reply));
                }
                return Err(QueueError::NoCompletion {
                    waited_ms: p.limit_ms(),
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

impl<H: Hal, T: Transport, A: Attach> FuseTransport for VirtioFs<H, T, A> {
    type Error = Error;

    fn submit(&mut self, queue: Queue, batch: &mut [Call]) -> Result<(), Error> {
        if let Some((q, _)) = self.gave_up {
            return Err(self.at.queue_failed(q, QueueError::GaveUp));
        }
        let (at, t, h, r) = (
            &self.at,
            &mut self.transport,
            &mut self.hiprio,
            &mut self.request,
        );
        // A notify whose USED never comes (virtio-vio: a server gone silent) is recorded by
        // the transport instead of stopping vioboot; the batch then fails by that name.
        let ((idx, result), recorded) = at.completing(|| match queue {
            Queue::Hiprio => (
                HIPRIO,
                h.as_mut().map_or(Err(QueueError::ShutDown), |q| {
                    Self::submit_on(at, t, q, HIPRIO, batch)
                }),
            ),
            Queue::Request => (
                REQUEST,
                r.as_mut().map_or(Err(QueueError::ShutDown), |q| {
                    Self::submit_on(at, t, q, REQUEST, batch)
                }),
            ),
        });
        if let Some(e) = recorded {
            // The partner is gone with the batch: its buffers are unmapped (the device can
            // reach none of them, so they may be freed) and the device takes no more requests.
            self.at.revoke_shared();
            self.at.abandon();
            self.gave_up = Some((
                idx,
                QueueError::TooFewCompleted {
                    missing: batch.len(),
                },
            ));
            return Err(e);
        }
        if let Err(e) = &result {
            if matches!(e, QueueError::NoCompletion { .. }) {
                self.gave_up = Some((idx, *e));
            } else {
                self.at.revoke_shared();
            }
        }
        result.map_err(|error| self.at.queue_failed(idx, error))
    }

    /// Each reset of the link is a new server session, which needs FUSE_INIT again.
    fn restarts(&self) -> u64 {
        self.at.stats().resets
    }
}

impl<H: Hal, T: Transport, A: Attach> Drop for VirtioFs<H, T, A> {
    fn drop(&mut self) {
        if self.gave_up.is_some() {
            core::mem::forget(self.hiprio.take());
            core::mem::forget(self.request.take());
        }
        self.drop_queues();
    }
}

/// A virtio-fs device as its share uses it, whatever the transport and DMA behind it: one
/// FUSE client (`Fs<Box<dyn FsQueues>>`) serves every kind, so its code is in the image once.
pub trait FsQueues {
    fn submit(&mut self, queue: Queue, batch: &mut [Call]) -> Result<(), Error>;
    fn restarts(&self) -> u64;
    fn pages_left_mapped(&self) -> usize;
    fn stats(&self) -> TransportStats;
    fn shut_down(&mut self) -> Result<(), Error>;
    fn shutdown_detail(&self) -> &'static str;
}

impl<H: Hal, T: Transport, A: Attach> FsQueues for VirtioFs<H, T, A> {
    fn submit(&mut self, queue: Queue, batch: &mut [Call]) -> Result<(), Error> {
        FuseTransport::submit(self, queue, batch)
    }

    fn restarts(&self) -> u64 {
        FuseTransport::restarts(self)
    }

    fn pages_left_mapped(&self) -> usize {
        self.at.pages_left_mapped()
    }

    fn stats(&self) -> TransportStats {
        self.at.stats()
    }

    fn shut_down(&mut self) -> Result<(), Error> {
        VirtioFs::shut_down(self)
    }

    fn shutdown_detail(&self) -> &'static str {
        self.at.shutdown_detail()
    }
}

impl FuseTransport for Box<dyn FsQueues> {
    type Error = Error;

    fn submit(&mut self, queue: Queue, batch: &mut [Call]) -> Result<(), Error> {
        (**self).submit(queue, batch)
    }

    fn restarts(&self) -> u64 {
        (**self).restarts()
    }
}

/// A virtio-fs share: FUSE over a [`VirtioFs`], as a [`FileSystem`].
pub struct Share {
    fs: Fs<Box<dyn FsQueues>>,
    name: String,
    tag: String,
    queues: u32,
}

impl Share {
    pub fn new<H: Hal + 'static, T: Transport + 'static, A: Attach + 'static>(
        dev: VirtioFs<H, T, A>,
    ) -> Share {
        Share {
            name: dev.at.name().into(),
            tag: dev.tag.clone(),
            queues: dev.request_queues,
            fs: Fs::new(Box::new(dev)),
        }
    }
}

impl Device for Share {
    fn name(&self) -> &str {
        &self.name
    }

    fn pages_left_mapped(&self) -> usize {
        self.fs.transport_ref().pages_left_mapped()
    }

    fn stats(&self) -> TransportStats {
        self.fs.transport_ref().stats()
    }

    fn shut_down(&mut self) -> Result<(), Error> {
        self.fs.transport().shut_down()
    }

    fn shutdown_detail(&self) -> &'static str {
        self.fs.transport_ref().shutdown_detail()
    }
}

impl FileSystem for Share {
    fn mount(&mut self) -> Result<String, FsError> {
        let i = self.fs.mount()?;
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
        self.fs.stat(path)
    }

    fn read_stream(
        &mut self,
        path: &str,
        range: Option<(u64, u64)>,
        sink: &mut dyn FnMut(&[u8]),
    ) -> Result<(u64, u64), FsError> {
        self.fs.read_stream(path, range, sink)
    }

    fn read_file(&mut self, path: &str) -> Result<Vec<u8>, FsError> {
        self.fs.read_file(path, &mut |_| {})
    }

    fn list_dir(&mut self, path: &str) -> Result<Vec<DirEntry>, FsError> {
        self.fs.list_dir(path)
    }

    fn totals(&mut self) -> Result<Totals, FsError> {
        let (blocks, free, block_size, files) = self.fs.statfs()?;
        Ok(Totals {
            blocks,
            free,
            block_size,
            files,
        })
    }

    fn unmount(&mut self) -> Result<String, FsError> {
        self.fs.unmount()?;
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

#[cfg(test)]
mod tests {
    //! Set-up against a fake transport whose queues are missing or too small: a named error
    //! before virtio-drivers allocates a ring, reported as a skip.
    use super::*;
    use crate::virtio::hal::RealHal;
    use virtio_drivers::transport::{DeviceStatus, DeviceType, InterruptStatus};
    use virtio_drivers::PhysAddr;
    use zerocopy::{FromBytes, Immutable, IntoBytes};

    /// A virtio-fs device with tag "t", one request queue, and the queue sizes given.
    struct FakeTransport {
        sizes: [u32; 2],
        status: DeviceStatus,
        queues_set: usize,
    }

    impl Transport for FakeTransport {
        fn device_type(&self) -> DeviceType {
            unreachable!("the driver never asks")
        }
        fn read_device_features(&mut self) -> u64 {
            FsFeature::VERSION_1.bits()
        }
        fn write_driver_features(&mut self, _: u64) {}
        fn max_queue_size(&mut self, queue: u16) -> u32 {
            self.sizes.get(queue as usize).copied().unwrap_or(0)
        }
        fn notify(&mut self, _: u16) {}
        fn get_status(&self) -> DeviceStatus {
            self.status
        }
        fn set_status(&mut self, status: DeviceStatus) {
            self.status = status;
        }
        fn set_guest_page_size(&mut self, _: u32) {}
        fn requires_legacy_layout(&self) -> bool {
            false
        }
        fn queue_set(&mut self, _: u16, _: u32, _: PhysAddr, _: PhysAddr, _: PhysAddr) {
            self.queues_set += 1;
        }
        fn queue_unset(&mut self, _: u16) {}
        fn queue_used(&mut self, _: u16) -> bool {
            false
        }
        fn ack_interrupt(&mut self) -> InterruptStatus {
            InterruptStatus::empty()
        }
        fn read_config_generation(&self) -> u32 {
            0
        }
        fn read_config_space<T: FromBytes + IntoBytes>(
            &self,
            offset: usize,
        ) -> Result<T, virtio_drivers::Error> {
            let mut config = [0u8; TAG_LEN + 4];
            config[0] = b't';
            config[TAG_LEN] = 1;
            let end = offset + core::mem::size_of::<T>();
            T::read_from_bytes(
                config
                    .get(offset..end)
                    .ok_or(virtio_drivers::Error::ConfigSpaceTooSmall)?,
            )
            .map_err(|_| virtio_drivers::Error::ConfigSpaceTooSmall)
        }
        fn write_config_space<T: IntoBytes + Immutable>(
            &mut self,
            _: usize,
            _: T,
        ) -> Result<(), virtio_drivers::Error> {
            Ok(())
        }
    }

    struct FakeAttach;

    impl Attach for FakeAttach {
        fn name(&self) -> &str {
            "fake"
        }
        fn used_patience(&self) -> crate::vio::Patience {
            crate::vio::Patience::new(1000)
        }
        fn run<R>(&self, f: impl FnOnce() -> R) -> R {
            f()
        }
        fn settle<T>(&self, r: Result<T, virtio_drivers::Error>) -> Result<T, Error> {
            r.map_err(|_| self.bad_config("driver error"))
        }
        fn failed(&self, _: virtio_drivers::Error) -> Error {
            self.bad_config("driver error")
        }
        fn gone(&self) -> Error {
            self.bad_config("gone")
        }
        fn queue_failed(&self, queue: u16, error: QueueError) -> Error {
            Error::Queue {
                device: "fake".into(),
                queue,
                error,
            }
        }
        fn bad_config(&self, what: &'static str) -> Error {
            Error::BadConfig {
                device: "fake".into(),
                what,
            }
        }
        fn revoke_shared(&self) {}
        fn rings_ready(&mut self) {}
        fn pages_left_mapped(&self) -> usize {
            0
        }
        fn stats(&self) -> TransportStats {
            TransportStats::default()
        }
        fn shut_down(&self) -> Result<(), Error> {
            Ok(())
        }
    }

    fn start(sizes: [u32; 2]) -> Result<(), Error> {
        let t = FakeTransport {
            sizes,
            status: DeviceStatus::empty(),
            queues_set: 0,
        };
        VirtioFs::<RealHal, FakeTransport, FakeAttach>::start(FakeAttach, t).map(|_| ())
    }

    #[test]
    fn a_queue_of_size_0_is_named_and_skipped() {
        let e = start([0, 128]).unwrap_err();
        assert_eq!(
            e,
            Error::Queue {
                device: "fake".into(),
                queue: 0,
                error: QueueError::Unavailable
            }
        );
        assert!(e.unusable_device());
        assert_eq!(
            format!("{e}"),
            "fake: queue 0: the device offers no such queue (size 0)"
        );
        let e = start([64, 0]).unwrap_err();
        assert!(matches!(
            e,
            Error::Queue {
                queue: 1,
                error: QueueError::Unavailable,
                ..
            }
        ));
    }

    #[test]
    fn a_queue_smaller_than_the_ring_is_named() {
        let e = start([64, 8]).unwrap_err();
        assert_eq!(
            e,
            Error::Queue {
                device: "fake".into(),
                queue: 1,
                error: QueueError::TooSmall { size: 8, want: 128 }
            }
        );
        assert!(e.unusable_device());
    }
}
