//! `virtio_drivers::transport::Transport` over a virtio-vio link.
//!
//! Device status, features, config space and queue setup are CRQ requests (docs/virtio-vio.md
//! section 3); what does not fit in an entry (the device header, queue addresses) travels through
//! a page mapped in the adapter's TCE window for the duration of the request. The transport
//! remembers what it told the device, so that when the server fails and comes back
//! ([`LinkError::Reset`]) it replays the device state and retries, with no request lost.

use crate::hcall::{Ioba, UnitAddress};
use crate::mem::DmaPages;
use crate::vio::crq::{Crq, CrqError, CrqStats};
use crate::vio::link::{Link, LinkError, LinkStats};
use crate::vio::tce::{self, Access, TceError};
use crate::vio::Adapter;
use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::cell::RefCell;
use core::fmt;
use virtio_drivers::transport::{DeviceStatus, DeviceType, InterruptStatus, Transport};
use virtio_drivers::{Error as VirtioError, PhysAddr};
use virtio_vio::device_id;
use virtio_vio::header::{self, Header, HeaderError};
use virtio_vio::msg::{Message, Opcode, CONFIG_CHUNK};
use virtio_vio::queue::{self, QueueSetup};
use zerocopy::{FromBytes, Immutable, IntoBytes};

/// How many times in a row one request may be interrupted by a server restart.
const MAX_RESETS: usize = 8;

/// What went wrong with a virtio-vio device; names the adapter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VioError {
    Crq {
        adapter: String,
        error: CrqError,
    },
    Tce {
        adapter: String,
        error: TceError,
    },
    Link {
        adapter: String,
        error: LinkError,
    },
    Header {
        adapter: String,
        error: HeaderError,
    },
    /// The server kept failing while vioboot tried to replay the device state.
    TooManyResets {
        adapter: String,
    },
    /// After a restart the server offers another device.
    DeviceChanged {
        adapter: String,
        was: u32,
        now: u32,
    },
    /// The device is not of the kind the driver asked for.
    WrongKind {
        adapter: String,
        id: u32,
        wanted: &'static str,
    },
    /// The device's configuration cannot be used.
    BadConfig {
        adapter: String,
        what: &'static str,
    },
    /// No page for a transport request (the device header, a queue setup block).
    NoMemory {
        adapter: String,
    },
    /// The header names a device id virtio does not define.
    UnknownDevice {
        adapter: String,
        id: u32,
    },
    /// virtio-drivers refused the device or a request.
    Driver {
        adapter: String,
        error: VirtioError,
    },
    /// The device was given up after a request failed (its server gone): nothing is sent to
    /// it until it is set up again.
    GaveUp {
        adapter: String,
    },
    /// A virtqueue of vioboot's own driver (virtio-fs) went wrong.
    Queue {
        adapter: String,
        queue: u16,
        error: QueueError,
    },
}

/// What went wrong on a virtqueue that vioboot drives itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueError {
    /// virtio-drivers' queue refused to add or pop a chain.
    Driver(VirtioError),
    /// The device answered NOTIFY with fewer completions than chains were in flight.
    TooFewCompleted { missing: usize },
    /// The device returned a descriptor that was not in flight.
    NotInFlight { token: u16 },
    /// The queue is gone (the device was shut down).
    ShutDown,
    /// The device offers no such queue (its size reads 0).
    Unavailable,
    /// The device's queue is smaller than the driver's ring.
    TooSmall { size: u32, want: u32 },
    /// The device completed none of the chains in flight within the transport's bound: it is
    /// given up (its buffers are never freed, nothing more is sent).
    NoCompletion { waited_ms: u64, missing: usize },
    /// A request after the device was given up.
    GaveUp,
}

impl fmt::Display for QueueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QueueError::Driver(e) => write!(f, "{e}"),
            QueueError::TooFewCompleted { missing } => {
                write!(f, "the device completed {missing} requests too few")
            }
            QueueError::NotInFlight { token } => write!(
                f,
                "the device returned descriptor {token}, which was not in flight"
            ),
            QueueError::ShutDown => write!(f, "device shut down"),
            QueueError::Unavailable => write!(f, "the device offers no such queue (size 0)"),
            QueueError::TooSmall { size, want } => write!(
                f,
                "the device's queue holds {size} descriptors, the driver needs {want}"
            ),
            QueueError::NoCompletion { waited_ms, missing } => write!(
                f,
                "no completion within {waited_ms} ms ({missing} request(s) in flight): the device is given up"
            ),
            QueueError::GaveUp => write!(
                f,
                "the device was given up after leaving a request uncompleted"
            ),
        }
    }
}

impl fmt::Display for VioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VioError::Crq { adapter, error } => write!(f, "{adapter}: CRQ: {error}"),
            VioError::Tce { adapter, error } => write!(f, "{adapter}: {error}"),
            VioError::Link { adapter, error } => write!(f, "{adapter}: {error}"),
            VioError::Header { adapter, error } => {
                write!(f, "{adapter}: bad device header: {error}")
            }
            VioError::TooManyResets { adapter } => {
                write!(
                    f,
                    "{adapter}: the VIO server failed {MAX_RESETS} times in a row"
                )
            }
            VioError::DeviceChanged { adapter, was, now } => write!(
                f,
                "{adapter}: after the server restarted, the device id is {now}, not {was}"
            ),
            VioError::WrongKind {
                adapter,
                id,
                wanted,
            } => {
                write!(f, "{adapter}: device id {id} is not {wanted}")
            }
            VioError::BadConfig { adapter, what } => write!(f, "{adapter}: {what}"),
            VioError::NoMemory { adapter } => write!(f, "{adapter}: DMA page pool exhausted"),
            VioError::UnknownDevice { adapter, id } => {
                write!(f, "{adapter}: device id {id} is no virtio device type")
            }
            VioError::Driver { adapter, error } => write!(f, "{adapter}: virtio: {error}"),
            VioError::GaveUp { adapter } => write!(
                f,
                "{adapter}: the device was given up after a request failed; it is set up again only when its path is tried again"
            ),
            VioError::Queue {
                adapter,
                queue,
                error,
            } => write!(f, "{adapter}: queue {queue}: {error}"),
        }
    }
}

struct Inner {
    name: String,
    /// `None` for ids virtio-drivers has no name for (virtio-fs, 26).
    device_type: Option<DeviceType>,
    window: usize,
    link: Link,
    header: Header,
    status: u8,
    /// Driver features sent with SET_FEATURES.
    features: Option<u64>,
    queues: Vec<Option<QueueSetup>>,
    /// The first failure of a `Transport` method that cannot return one.
    error: Option<VioError>,
    /// A request is in flight that its driver completes itself (virtio-drivers' non-blocking
    /// calls): a notify that fails is recorded for it instead of stopping vioboot.
    notify_may_fail: bool,
    /// The device was given up (a request failed and its buffers were revoked): nothing is
    /// sent to the server, so that tearing the driver down does not wait on a server that
    /// is gone, until [`VioHandle::reconnect`] sets the device up again.
    gave_up: bool,
}

/// One virtio-vio adapter as a virtio transport.
pub struct VioTransport {
    window: usize,
    inner: Rc<RefCell<Inner>>,
}

/// A second handle on a transport that virtio-drivers owns: its errors, counters, shutdown.
#[derive(Clone)]
pub struct VioHandle {
    window: usize,
    inner: Rc<RefCell<Inner>>,
}

impl Inner {
    fn link_err(&self, error: LinkError) -> VioError {
        VioError::Link {
            adapter: self.name.clone(),
            error,
        }
    }

    /// One request; on a server restart, replays the device state and tries again.
    fn call(&mut self, msg: Message) -> Result<Message, VioError> {
        if self.gave_up {
            return Err(VioError::GaveUp {
                adapter: self.name.clone(),
            });
        }
        self.retrying(|link, name, _| {
            link.request(msg).map_err(|error| VioError::Link {
                adapter: name.into(),
                error,
            })
        })
    }

    /// Runs `op` on the link; after a server restart, replays the device state and runs it
    /// again (at most MAX_RESETS times).
    fn retrying<T>(
        &mut self,
        mut op: impl FnMut(&mut Link, &str, usize) -> Result<T, VioError>,
    ) -> Result<T, VioError> {
        for _ in 0..MAX_RESETS {
            match op(&mut self.link, &self.name, self.window) {
                Err(e) if is_reset(&e) => match self.replay() {
                    Ok(()) => continue,
                    Err(e) if is_reset(&e) => continue,
                    Err(e) => return Err(e),
                },
                r => return r,
            }
        }
        Err(VioError::TooManyResets {
            adapter: self.name.clone(),
        })
    }

    /// Puts the TCEs of the buffers shared since the last NOTIFY (the window defers them: the
    /// server reads nothing of a request before its NOTIFY), with one hcall per 512 pages.
    fn flush_tces(&self) -> Result<(), VioError> {
        tce::with(self.window, |w| w.flush())
            .and_then(|r| r)
            .map_err(|error| VioError::Tce {
                adapter: self.name.clone(),
                error,
            })
    }

    /// Sends NOTIFY and waits for the server's USED, replaying after a restart.
    fn notify(&mut self, queue: u16) -> Result<(), VioError> {
        self.flush_tces()?;
        for _ in 0..MAX_RESETS {
            let r = self
                .link
                .notify(queue)
                .and_then(|()| self.link.wait_used(queue));
            match r {
                Err(LinkError::Reset) => match self.replay() {
                    // The replay notifies every queue and waits for its USED.
                    Ok(()) => return Ok(()),
                    Err(e) if is_reset(&e) => continue,
                    Err(e) => return Err(e),
                },
                Err(e) => return Err(self.link_err(e)),
                Ok(()) => return Ok(()),
            }
        }
        Err(VioError::TooManyResets {
            adapter: self.name.clone(),
        })
    }

    /// Tells a fresh server session everything the device was told before.
    fn replay(&mut self) -> Result<(), VioError> {
        log::info!(
            "{}: replaying device state to the restarted server",
            self.name
        );
        let h = probe(&mut self.link, &self.name, self.window)?;
        if h.device_id != self.header.device_id {
            return Err(VioError::DeviceChanged {
                adapter: self.name.clone(),
                was: self.header.device_id,
                now: h.device_id,
            });
        }
        let s = self.status;
        let steps = [
            DeviceStatus::ACKNOWLEDGE | DeviceStatus::DRIVER,
            DeviceStatus::FEATURES_OK,
        ];
        let mut sent = 0u8;
        let mut requests = Vec::new();
        for (i, bits) in steps.iter().enumerate() {
            if s & bits.bits() as u8 == 0 {
                break;
            }
            if i == 1 {
                if let Some(f) = self.features {
                    requests.push(Message::request(Opcode::SetFeatures, 0, 0, f));
                }
            }
            sent |= bits.bits() as u8;
            requests.push(Message::request(Opcode::SetStatus, 0, 0, u64::from(sent)));
        }
        for m in requests {
            self.link.request(m).map_err(|e| self.link_err(e))?;
        }
        for q in self.queues.iter().flatten() {
            queue_setup(&mut self.link, &self.name, self.window, q)?;
        }
        if s & DeviceStatus::DRIVER_OK.bits() as u8 != 0 {
            let m = Message::request(Opcode::SetStatus, 0, 0, u64::from(s));
            self.link.request(m).map_err(|e| self.link_err(e))?;
        }
        let queues: Vec<u16> = self.queues.iter().flatten().map(|q| q.queue).collect();
        self.flush_tces()?;
        for q in queues {
            let r = self.link.notify(q).and_then(|()| self.link.wait_used(q));
            r.map_err(|e| self.link_err(e))?;
        }
        Ok(())
    }
}

/// Whether `e` says the server restarted (the CRQ is up again; the device must be replayed).
fn is_reset(e: &VioError) -> bool {
    matches!(
        e,
        VioError::Link {
            error: LinkError::Reset,
            ..
        }
    )
}

/// Maps a pool page into the adapter's window for one request, runs it, unmaps the page.
fn with_page<T>(
    name: &str,
    window: usize,
    len: usize,
    access: Access,
    fill: impl FnOnce(&mut [u8]),
    request: impl FnOnce(Ioba) -> Result<T, LinkError>,
) -> Result<(T, DmaPages), VioError> {
    let tce_err = |error| VioError::Tce {
        adapter: name.into(),
        error,
    };
    let mut page = DmaPages::alloc(1).ok_or(VioError::NoMemory {
        adapter: name.into(),
    })?;
    fill(page.bytes_mut());
    let ioba = tce::with(window, |w| w.map(page.addr(), len, access))
        .and_then(|r| r)
        .map_err(tce_err)?;
    let r = request(ioba);
    let unmapped = tce::with(window, |w| w.unmap(ioba, len)).and_then(|r| r);
    let r = r.map_err(|error| VioError::Link {
        adapter: name.into(),
        error,
    })?;
    unmapped.map_err(tce_err)?;
    Ok((r, page))
}

/// PROBE: the server writes the device header into a page the device may write.
fn probe(link: &mut Link, name: &str, window: usize) -> Result<Header, VioError> {
    let (r, page) = with_page(
        name,
        window,
        header::LEN,
        Access::DeviceWrites,
        |_| {},
        |ioba| {
            link.request(Message::request(
                Opcode::Probe,
                0,
                virtio_vio::VERSION,
                ioba.0,
            ))
        },
    )?;
    let header_err = |error| VioError::Header {
        adapter: name.into(),
        error,
    };
    if r.arg16 != virtio_vio::VERSION {
        return Err(header_err(HeaderError::BadVersion(r.arg16)));
    }
    let mut bytes = [0u8; header::LEN];
    bytes.copy_from_slice(&page.bytes()[..header::LEN]);
    let h = Header::decode(&bytes).map_err(header_err)?;
    link.queues = h.num_queues;
    Ok(h)
}

/// QUEUE_SETUP: the block goes through a page the device may only read.
fn queue_setup(link: &mut Link, name: &str, window: usize, q: &QueueSetup) -> Result<(), VioError> {
    with_page(
        name,
        window,
        queue::LEN,
        Access::DeviceReads,
        |b| b[..queue::LEN].copy_from_slice(&q.encode()),
        |ioba| link.request(Message::request(Opcode::QueueSetup, 0, q.queue, ioba.0)),
    )
    .map(|_| ())
}

impl VioTransport {
    /// Registers the adapter's window, opens its CRQ, does the handshake and PROBE.
    pub fn open(adapter: &Adapter, timeout_us: u64) -> Result<VioTransport, VioError> {
        let name = adapter.name.clone();
        let window = tce::register(tce::TceWindow::new(adapter.window));
        let crq = Crq::open(UnitAddress(adapter.unit), window, timeout_us).map_err(|error| {
            VioError::Crq {
                adapter: name.clone(),
                error,
            }
        })?;
        Self::over(name, window, crq, timeout_us)
    }

    /// The transport over an open CRQ (for tests that make their own).
    pub fn over(
        name: String,
        window: usize,
        crq: Crq,
        timeout_us: u64,
    ) -> Result<VioTransport, VioError> {
        // Every NOTIFY goes through `Inner::notify`, which puts the batch's TCEs first.
        tce::with(window, |w| w.defer_puts_until_notify()).map_err(|error| VioError::Tce {
            adapter: name.clone(),
            error,
        })?;
        let mut link = Link::new(crq, timeout_us);
        let header = probe(&mut link, &name, window)?;
        let device_type = DeviceType::try_from(header.device_id).ok();
        if device_type.is_none() && header.device_id != device_id::FS {
            return Err(VioError::UnknownDevice {
                adapter: name,
                id: header.device_id,
            });
        }
        let queues = vec![None; header.num_queues as usize];
        Ok(VioTransport {
            window,
            inner: Rc::new(RefCell::new(Inner {
                name,
                device_type,
                window,
                link,
                header,
                status: 0,
                features: None,
                queues,
                error: None,
                notify_may_fail: false,
                gave_up: false,
            })),
        })
    }

    pub fn window(&self) -> usize {
        self.window
    }

    /// A handle that stays usable after the transport is moved into a driver.
    pub fn handle(&self) -> VioHandle {
        VioHandle {
            window: self.window,
            inner: self.inner.clone(),
        }
    }

    fn record(&self, r: Result<Message, VioError>) -> Option<Message> {
        self.handle().record(r)
    }
}

impl VioHandle {
    pub fn header(&self) -> Header {
        self.inner.borrow().header.clone()
    }

    /// The first failure of a transport method that could not report it, taken out.
    pub fn take_error(&self) -> Option<VioError> {
        self.inner.borrow_mut().error.take()
    }

    /// How long the link waits for the server.
    pub fn timeout_us(&self) -> u64 {
        self.inner.borrow().link.timeout_us
    }

    /// Runs `f`, a request whose caller completes it itself (it looks for the used entry
    /// and takes [`take_error`](Self::take_error) when there is none): a notify that fails
    /// meanwhile is recorded rather than stopping vioboot.
    pub fn completing_itself<R>(&self, f: impl FnOnce() -> R) -> R {
        self.inner.borrow_mut().notify_may_fail = true;
        let r = f();
        self.inner.borrow_mut().notify_may_fail = false;
        r
    }

    /// Gives the device up after a request failed: nothing more is sent to the server (the
    /// driver's teardown included) until [`reconnect`](Self::reconnect).
    pub fn give_up(&self) {
        self.inner.borrow_mut().gave_up = true;
    }

    /// Sets a device that was given up up again, for a driver to start over: the CRQ
    /// registered again and the INIT handshake (failing at once when the server is not
    /// there), PROBE (the same device id, or [`VioError::DeviceChanged`]), and the
    /// transport's memory of the device (status, features, queues, a recorded failure)
    /// forgotten. The new session starts from a reset device, so nothing the old rings held
    /// is performed by it.
    pub fn reconnect(&self) -> Result<(), VioError> {
        let mut guard = self.inner.borrow_mut();
        let i = &mut *guard;
        let timeout_us = i.link.timeout_us;
        i.link
            .crq_mut()
            .rejoin(timeout_us)
            .map_err(|error| VioError::Crq {
                adapter: i.name.clone(),
                error,
            })?;
        i.link.forget_notices();
        let h = probe(&mut i.link, &i.name, i.window)?;
        if h.device_id != i.header.device_id {
            return Err(VioError::DeviceChanged {
                adapter: i.name.clone(),
                was: i.header.device_id,
                now: h.device_id,
            });
        }
        i.queues = vec![None; h.num_queues as usize];
        i.header = h;
        i.status = 0;
        i.features = None;
        i.error = None;
        i.gave_up = false;
        Ok(())
    }

    /// The link's and the CRQ's own counters.
    pub fn counters(&self) -> (LinkStats, CrqStats) {
        let i = self.inner.borrow();
        (i.link.stats, i.link.crq().stats())
    }

    /// Driver features the device accepted.
    pub fn negotiated_features(&self) -> Option<u64> {
        self.inner.borrow().features
    }

    fn record(&self, r: Result<Message, VioError>) -> Option<Message> {
        match r {
            Ok(m) => Some(m),
            Err(e) => {
                log::error!("{e}");
                let mut i = self.inner.borrow_mut();
                i.error.get_or_insert(e);
                None
            }
        }
    }

    /// Resets the device, frees its CRQ and clears every TCE of its window: afterwards the
    /// server can reach nothing. Call after the driver is dropped.
    pub fn shut_down(&self) -> Result<(), VioError> {
        let mut i = self.inner.borrow_mut();
        let name = i.name.clone();
        if i.link.crq().is_closed() {
            return Ok(());
        }
        if !i.gave_up {
            let _ = i.call(Message::request(Opcode::SetStatus, 0, 0, 0));
        }
        i.link.crq_mut().close().map_err(|error| VioError::Crq {
            adapter: name.clone(),
            error,
        })?;
        tce::with(self.window, |w| w.clear_all())
            .and_then(|r| r)
            .map_err(|error| VioError::Tce {
                adapter: name,
                error,
            })
    }
}

impl Transport for VioTransport {
    fn device_type(&self) -> DeviceType {
        let i = self.inner.borrow();
        // virtio-drivers never asks; vioboot's own code reads the header's device id.
        i.device_type.unwrap_or_else(|| {
            panic!(
                "{}: device id {} has no virtio-drivers DeviceType",
                i.name, i.header.device_id
            )
        })
    }

    fn read_device_features(&mut self) -> u64 {
        self.inner.borrow().header.device_features
    }

    fn write_driver_features(&mut self, driver_features: u64) {
        let r = self.inner.borrow_mut().call(Message::request(
            Opcode::SetFeatures,
            0,
            0,
            driver_features,
        ));
        if self.record(r).is_some() {
            self.inner.borrow_mut().features = Some(driver_features);
        }
    }

    fn max_queue_size(&mut self, queue: u16) -> u32 {
        let i = self.inner.borrow();
        i.header
            .queue_max
            .get(queue as usize)
            .filter(|_| queue < i.header.num_queues)
            .map_or(0, |&s| s.into())
    }

    fn notify(&mut self, queue: u16) {
        let r = self.inner.borrow_mut().notify(queue);
        if let Err(e) = r {
            if self.inner.borrow().notify_may_fail {
                // The caller finds no used entry and takes this error.
                let mut i = self.inner.borrow_mut();
                i.error.get_or_insert(e);
                return;
            }
            // virtio-drivers now spins on the used ring; without a server it never fills.
            panic!("{e}: queue {queue} cannot complete");
        }
    }

    fn get_status(&self) -> DeviceStatus {
        DeviceStatus::from_bits_truncate(self.inner.borrow().status.into())
    }

    fn set_status(&mut self, status: DeviceStatus) {
        let v = status.bits() as u8;
        let r = self
            .inner
            .borrow_mut()
            .call(Message::request(Opcode::SetStatus, 0, 0, v.into()));
        if self.record(r).is_some() {
            let mut i = self.inner.borrow_mut();
            i.status = v;
            if v == 0 {
                i.features = None;
                i.queues.iter_mut().for_each(|q| *q = None);
            }
        }
    }

    fn set_guest_page_size(&mut self, _guest_page_size: u32) {}

    fn requires_legacy_layout(&self) -> bool {
        false
    }

    fn queue_set(
        &mut self,
        queue: u16,
        size: u32,
        descriptors: PhysAddr,
        driver_area: PhysAddr,
        device_area: PhysAddr,
    ) {
        let q = QueueSetup {
            queue,
            size: size as u16,
            desc: descriptors,
            driver: driver_area,
            device: device_area,
        };
        let r = self
            .inner
            .borrow_mut()
            .retrying(|link, name, window| queue_setup(link, name, window, &q));
        match r {
            Ok(()) => {
                if let Some(slot) = self.inner.borrow_mut().queues.get_mut(queue as usize) {
                    *slot = Some(q);
                }
            }
            Err(e) => {
                let _ = self.record(Err(e));
            }
        }
    }

    fn queue_unset(&mut self, queue: u16) {
        if self.inner.borrow().gave_up {
            // The rings go away with no word to a server that is gone; a reset precedes any
            // new session.
            if let Some(slot) = self.inner.borrow_mut().queues.get_mut(queue as usize) {
                *slot = None;
            }
            return;
        }
        let r = self
            .inner
            .borrow_mut()
            .call(Message::request(Opcode::QueueReset, 0, queue, 0));
        let _ = self.record(r);
        if let Some(slot) = self.inner.borrow_mut().queues.get_mut(queue as usize) {
            *slot = None;
        }
    }

    fn queue_used(&mut self, queue: u16) -> bool {
        self.inner
            .borrow()
            .queues
            .get(queue as usize)
            .is_some_and(Option::is_some)
    }

    fn ack_interrupt(&mut self) -> InterruptStatus {
        let mut i = self.inner.borrow_mut();
        if core::mem::take(&mut i.link.config_changed) {
            InterruptStatus::DEVICE_CONFIGURATION_INTERRUPT
        } else {
            InterruptStatus::empty()
        }
    }

    fn read_config_generation(&self) -> u32 {
        self.inner.borrow().header.config_generation.into()
    }

    fn read_config_space<T: FromBytes + IntoBytes>(&self, offset: usize) -> Result<T, VirtioError> {
        let size = core::mem::size_of::<T>();
        let len = self.inner.borrow().header.config_len as usize;
        if offset.checked_add(size).is_none_or(|end| end > len) {
            return Err(VirtioError::ConfigSpaceTooSmall);
        }
        let mut bytes = vec![0u8; size];
        for (n, chunk) in bytes.chunks_mut(CONFIG_CHUNK).enumerate() {
            let at = (offset + n * CONFIG_CHUNK) as u16;
            let msg = Message::config(
                Opcode::ReadConfig,
                0,
                at,
                chunk.len() as u8,
                [0; CONFIG_CHUNK],
            );
            let r = self.inner.borrow_mut().call(msg);
            let Some(m) = self.record(r) else {
                return Err(VirtioError::IoError);
            };
            chunk.copy_from_slice(&m.data()[..chunk.len()]);
        }
        T::read_from_bytes(&bytes).map_err(|_| VirtioError::ConfigSpaceTooSmall)
    }

    fn write_config_space<T: IntoBytes + Immutable>(
        &mut self,
        offset: usize,
        value: T,
    ) -> Result<(), VirtioError> {
        let bytes = value.as_bytes();
        let len = self.inner.borrow().header.config_len as usize;
        if offset.checked_add(bytes.len()).is_none_or(|end| end > len) {
            return Err(VirtioError::ConfigSpaceTooSmall);
        }
        for (n, chunk) in bytes.chunks(CONFIG_CHUNK).enumerate() {
            let mut data = [0u8; CONFIG_CHUNK];
            data[..chunk.len()].copy_from_slice(chunk);
            let at = (offset + n * CONFIG_CHUNK) as u16;
            let r = self.inner.borrow_mut().call(Message::config(
                Opcode::WriteConfig,
                0,
                at,
                chunk.len() as u8,
                data,
            ));
            if self.record(r).is_none() {
                return Err(VirtioError::IoError);
            }
        }
        Ok(())
    }
}
