//! The virtio device model of one session, the same for every device kind: the device header
//! (PROBE), device status and feature negotiation, config access, and split virtqueues run by
//! `virtio-queue` over the [`Mirror`] (`docs/virtio-vio.md` sections 3 to 6).
//!
//! A NOTIFY goes: fetch the descriptor table and available ring into the mirror; take every
//! available chain (`Queue::iter`) and check each ([`crate::chain::walk`]); fetch the
//! driver-readable buffers of all of them; per chain zero its device-writable buffers, let the
//! device serve it, `add_used` in the mirror; then flush the bytes the devices produced and the
//! used elements, then the used index, then send exactly one USED. (The one exception is a
//! fault: a device may swallow a NOTIFY whole, see `Device::swallows_notify`.)
//!
//! Each of those fetches and flushes is one batch of remote DMA ([`Partner::rdma_batch`]): the
//! socket sends every request of a batch before it waits for the first reply, so a NOTIFY costs
//! five round trips through QEMU (rings; requests; data and used elements; used index; USED)
//! however many chains it carries, instead of two per chain and five more.

use crate::chain::{self, Buffer};
use crate::device::{Device, Request};
use crate::faults::{Faults, BAD_USED_LEN_EXTRA, FLOOD_COUNT, UNKNOWN_OPCODE};
use crate::hcall::PartnerError;
use crate::mirror::{DmaError, Mirror};
use crate::partner::Partner;
use crate::stats::Stats;
use log::{debug, error, info, warn};
use papr::crq::ENTRY_LEN;
use papr::status::H_DROPPED;
use papr::tce::TCE_PAGE_SIZE;
use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread;
use std::time::Duration;
use virtio_queue::{DescriptorChain, Queue, QueueOwnedT, QueueT};
use virtio_vio::header::{self, Header};
use virtio_vio::msg::{Message, Opcode, Status};
use virtio_vio::queue::{self as vq, QueueSetup};
use vm_memory::{Bytes, GuestAddress};

/// Device status bits (virtio 1.x, section 2.1).
pub mod status {
    pub const ACKNOWLEDGE: u8 = 1;
    pub const DRIVER: u8 = 2;
    pub const DRIVER_OK: u8 = 4;
    pub const FEATURES_OK: u8 = 8;
    pub const DEVICE_NEEDS_RESET: u8 = 64;
    pub const FAILED: u8 = 128;
    /// The bits only the driver sets.
    pub const DRIVER_BITS: u8 = ACKNOWLEDGE | DRIVER | DRIVER_OK | FEATURES_OK | FAILED;
}

/// How often, and how long apart, an entry the guest's full CRQ refused (H_DROPPED) is retried.
const DROPPED_RETRIES: u32 = 20;
const DROPPED_PAUSE: Duration = Duration::from_millis(5);

/// Why a session ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The partner connection is gone.
    Disconnected,
    /// The `die-mid-request` fault fired: the server stops as if it had crashed.
    Died,
}

impl fmt::Display for Ended {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Ended::Disconnected => "partner disconnected",
            Ended::Died => "died (fault die-mid-request)",
        })
    }
}

/// Delivers one entry into the guest's CRQ. A full CRQ (H_DROPPED) is retried a few times when
/// `retry`; other refusals come back as their `H_*` status.
pub(crate) fn deliver<P: Partner + ?Sized>(
    p: &mut P,
    stats: &Stats,
    entry: [u8; ENTRY_LEN],
    retry: bool,
) -> Result<Result<(), i64>, Ended> {
    let mut tries = 0;
    loop {
        match p.send_crq(entry) {
            Ok(()) => {
                Stats::inc(&stats.crq_out);
                return Ok(Ok(()));
            }
            Err(PartnerError::Disconnected) => return Err(Ended::Disconnected),
            Err(PartnerError::Status(H_DROPPED)) if retry && tries < DROPPED_RETRIES => {
                tries += 1;
                thread::sleep(DROPPED_PAUSE);
            }
            Err(PartnerError::Status(s)) => {
                Stats::inc(&stats.crq_refused);
                return Ok(Err(s));
            }
        }
    }
}

/// One set-up queue.
struct Vq {
    queue: Queue,
    setup: QueueSetup,
}

/// The virtio state of one device in one session.
pub struct DeviceModel<D: Device> {
    device: D,
    mirror: Mirror,
    faults: Faults,
    stats: Arc<Stats>,
    /// PROBE was answered (section 6: little is allowed before).
    probed: bool,
    status: u8,
    driver_features: u64,
    config_generation: u8,
    max_sizes: Vec<u16>,
    queues: Vec<Option<Vq>>,
}

impl<D: Device> DeviceModel<D> {
    /// A reset device on `mirror`.
    pub fn new(mirror: Mirror, mut device: D, faults: Faults, stats: Arc<Stats>) -> DeviceModel<D> {
        let mut max_sizes = device.queue_max_sizes();
        if max_sizes.is_empty() || max_sizes.len() > header::MAX_QUEUES {
            error!(
                "{}: {} queues offered; the header allows 1..=64",
                device.name(),
                max_sizes.len()
            );
            max_sizes.resize(max_sizes.len().clamp(1, header::MAX_QUEUES), 0);
        }
        for m in &mut max_sizes {
            if *m != 0 && (!m.is_power_of_two() || *m > header::MAX_QUEUE_SIZE) {
                error!(
                    "{}: queue maximum {m} is not a power of two <= 32768: queue disabled",
                    device.name()
                );
                *m = 0;
            }
        }
        device.reset();
        let queues = max_sizes.iter().map(|_| None).collect();
        DeviceModel {
            device,
            mirror,
            faults,
            stats,
            probed: false,
            status: 0,
            driver_features: 0,
            config_generation: 0,
            max_sizes,
            queues,
        }
    }

    /// The device, back (the session is over).
    pub fn into_device(self) -> D {
        self.device
    }

    pub fn device(&self) -> &D {
        &self.device
    }

    /// The device status byte.
    pub fn status(&self) -> u8 {
        self.status
    }

    /// The features the driver set.
    pub fn driver_features(&self) -> u64 {
        self.driver_features
    }

    pub fn mirror(&self) -> &Mirror {
        &self.mirror
    }

    /// Forgets everything the driver set up, PROBE included (the guest starts over).
    pub fn reset(&mut self) {
        self.reset_device();
        self.probed = false;
    }

    /// SET_STATUS(0): device status, features and queues back to their initial state.
    fn reset_device(&mut self) {
        self.status = 0;
        self.driver_features = 0;
        self.queues.iter_mut().for_each(|q| *q = None);
        self.device.reset();
    }

    /// The device header for PROBE.
    pub fn header(&self) -> Header {
        let mut h = Header::new(self.device.device_id());
        h.vendor_id = self.device.vendor_id();
        h.device_features = self.device.features();
        h.num_queues = self.max_sizes.len() as u16;
        h.queue_max[..self.max_sizes.len()].copy_from_slice(&self.max_sizes);
        h.status = self.status;
        h.config_generation = self.config_generation;
        let config = self.config();
        h.config_len = config.len() as u16;
        h.config[..config.len()].copy_from_slice(&config);
        h
    }

    fn config(&self) -> Vec<u8> {
        let mut c = self.device.config();
        if c.len() > header::MAX_CONFIG {
            error!(
                "{}: config of {} bytes cut to {}",
                self.device.name(),
                c.len(),
                header::MAX_CONFIG
            );
            c.truncate(header::MAX_CONFIG);
        }
        c
    }

    /// Handles one request from the guest and sends its response (NOTIFY: its USED).
    pub fn handle<P: Partner + ?Sized>(&mut self, p: &mut P, m: &Message) -> Result<(), Ended> {
        if m.response {
            warn!(
                "{} with the response bit from the guest ignored",
                m.opcode.name()
            );
            return Ok(());
        }
        let allowed_unprobed = matches!(m.opcode, Opcode::Probe | Opcode::GetStatus)
            || (m.opcode == Opcode::SetStatus && m.arg64 == 0);
        if !self.probed && !allowed_unprobed && m.opcode.has_response() {
            return self.respond(p, m, Status::BadState, 0, 0);
        }
        let (st, arg16, arg64) = match m.opcode {
            Opcode::Probe => self.probe(p, m)?,
            Opcode::SetFeatures => (self.set_features(m.arg64), 0, 0),
            Opcode::SetStatus => (self.set_status(m.arg64), 0, 0),
            Opcode::GetStatus => (Status::Ok, 0, u64::from(self.status)),
            Opcode::ReadConfig => self.read_config(m),
            Opcode::WriteConfig => (self.write_config(m), 0, 0),
            Opcode::QueueSetup => (self.queue_setup(p, m)?, 0, 0),
            Opcode::QueueReset => (self.queue_reset(m.arg16), 0, 0),
            Opcode::Notify => {
                if !self.probed {
                    warn!("NOTIFY before PROBE ignored");
                    return Ok(());
                }
                return self.notify(p, m.arg16);
            }
            Opcode::Used | Opcode::ConfigChanged => {
                warn!("server notice {} from the guest ignored", m.opcode.name());
                return Ok(());
            }
        };
        self.respond(p, m, st, arg16, arg64)
    }

    fn respond<P: Partner + ?Sized>(
        &self,
        p: &mut P,
        m: &Message,
        st: Status,
        arg16: u16,
        arg64: u64,
    ) -> Result<(), Ended> {
        if st != Status::Ok {
            debug!("{} (tag {}) -> {st}", m.opcode.name(), m.tag);
        }
        let r = Message::response_to(m, st, arg16, arg64);
        if let Err(s) = deliver(p, &self.stats, r.encode(), true)? {
            warn!(
                "response to {} (tag {}) not delivered: {}",
                m.opcode.name(),
                m.tag,
                PartnerError::Status(s)
            );
        }
        Ok(())
    }

    fn probe<P: Partner + ?Sized>(
        &mut self,
        p: &mut P,
        m: &Message,
    ) -> Result<(Status, u16, u64), Ended> {
        if m.arg16 == 0 {
            return Ok((Status::BadVersion, 0, 0));
        }
        let version = m.arg16.min(virtio_vio::VERSION);
        match self.mirror.rdma_write(p, m.arg64, &self.header().encode()) {
            Ok(()) => {
                if !self.probed {
                    info!(
                        "PROBE: {} header written at {:#x}, version {version}",
                        self.device.name(),
                        m.arg64
                    );
                }
                self.probed = true;
                Ok((Status::Ok, version, 0))
            }
            Err(DmaError::Disconnected) => Err(Ended::Disconnected),
            Err(e) => {
                warn!("PROBE: header not written: {e}");
                Ok((Status::DmaFailed, 0, 0))
            }
        }
    }

    fn set_features(&mut self, features: u64) -> Status {
        if self.status & status::FEATURES_OK != 0 {
            return Status::BadState;
        }
        let offered = self.device.features();
        if features & !offered != 0 {
            warn!(
                "SET_FEATURES {features:#x}: {:#x} not offered",
                features & !offered
            );
            return Status::BadArgument;
        }
        self.driver_features = features;
        Status::Ok
    }

    fn set_status(&mut self, new: u64) -> Status {
        let Ok(new) = u8::try_from(new) else {
            return Status::BadArgument;
        };
        if new == 0 {
            if self.status != 0 {
                info!("device reset by the driver");
            }
            self.reset_device();
            return Status::Ok;
        }
        let old = self.status;
        if old & status::DRIVER_BITS & !new != 0 {
            warn!("SET_STATUS {new:#x} clears bits of {old:#x}");
            return Status::BadArgument;
        }
        let gained = new & !old;
        if gained & status::DRIVER_OK != 0 && new & status::FEATURES_OK == 0 {
            return Status::BadState;
        }
        if gained & status::FEATURES_OK != 0 {
            let offered = self.device.features();
            if self.driver_features & !offered != 0 {
                return Status::BadArgument;
            }
            self.device.set_features(self.driver_features);
        }
        self.status = (new & status::DRIVER_BITS) | (old & status::DEVICE_NEEDS_RESET);
        if gained & status::DRIVER_OK != 0 {
            let live: Vec<String> = (self.queues.iter().enumerate())
                .filter_map(|(i, q)| {
                    q.as_ref()
                        .map(|q| format!("queue {i} size {}", q.setup.size))
                })
                .collect();
            info!(
                "DRIVER_OK: features {:#x}, {}",
                self.driver_features,
                live.join(", ")
            );
        }
        if gained & status::FAILED != 0 {
            warn!("the driver set FAILED");
        }
        Status::Ok
    }

    /// Checks a config request's offset and length (1..=8, inside the config space).
    fn config_range(&self, m: &Message) -> Option<(usize, usize)> {
        let (off, len) = (usize::from(m.arg16), usize::from(m.byte3));
        let valid =
            (1..=virtio_vio::msg::CONFIG_CHUNK).contains(&len) && off + len <= self.config().len();
        valid.then_some((off, len))
    }

    fn read_config(&self, m: &Message) -> (Status, u16, u64) {
        let Some((off, len)) = self.config_range(m) else {
            return (Status::BadArgument, 0, 0);
        };
        let mut data = [0u8; virtio_vio::msg::CONFIG_CHUNK];
        data[..len].copy_from_slice(&self.config()[off..off + len]);
        (Status::Ok, m.arg16, u64::from_be_bytes(data))
    }

    fn write_config(&mut self, m: &Message) -> Status {
        let Some((off, len)) = self.config_range(m) else {
            return Status::BadArgument;
        };
        match self.device.write_config(off as u16, &m.data()[..len]) {
            Ok(()) => Status::Ok,
            Err(s) => s,
        }
    }

    fn queue_setup<P: Partner + ?Sized>(
        &mut self,
        p: &mut P,
        m: &Message,
    ) -> Result<Status, Ended> {
        if self.status & status::DRIVER_OK != 0 {
            return Ok(Status::BadState);
        }
        let qi = m.arg16;
        let max = self.max_sizes.get(usize::from(qi)).copied().unwrap_or(0);
        if max == 0 {
            warn!("QUEUE_SETUP for queue {qi}, which the device does not have");
            return Ok(Status::BadArgument);
        }
        let mut block = [0u8; vq::LEN];
        match self.mirror.rdma_read(p, m.arg64, &mut block) {
            Ok(()) => {}
            Err(DmaError::Disconnected) => return Err(Ended::Disconnected),
            Err(e) => {
                warn!("QUEUE_SETUP {qi}: setup block unreadable: {e}");
                return Ok(Status::DmaFailed);
            }
        }
        let setup = match QueueSetup::decode(&block, qi) {
            Ok(s) => s,
            Err(e) => {
                warn!("QUEUE_SETUP {qi}: {e}");
                return Ok(Status::BadArgument);
            }
        };
        if let Err(why) = self.check_setup(&setup, max) {
            warn!("QUEUE_SETUP {qi}: {why}");
            return Ok(Status::BadArgument);
        }
        // Resumption (section 5): start where the used ring says the last server stopped.
        let idx_at = setup.device + 2;
        match self.mirror.fetch(p, idx_at, 2) {
            Ok(()) => {}
            Err(DmaError::Disconnected) => return Err(Ended::Disconnected),
            Err(e) => {
                warn!("QUEUE_SETUP {qi}: used index unreadable: {e}");
                return Ok(Status::DmaFailed);
            }
        }
        let mut queue = match Queue::new(max) {
            Ok(q) => q,
            Err(e) => {
                error!("QUEUE_SETUP {qi}: {e}");
                return Ok(Status::DeviceError);
            }
        };
        let configured = queue
            .try_set_size(setup.size)
            .and_then(|()| queue.try_set_desc_table_address(GuestAddress(setup.desc)))
            .and_then(|()| queue.try_set_avail_ring_address(GuestAddress(setup.driver)))
            .and_then(|()| queue.try_set_used_ring_address(GuestAddress(setup.device)));
        queue.set_ready(true);
        let mem = self.mirror.memory();
        let used = match configured.and_then(|()| queue.used_idx(mem, Ordering::Acquire)) {
            Ok(u) if queue.is_valid(mem) => u,
            Ok(_) => return Ok(Status::BadArgument),
            Err(e) => {
                warn!("QUEUE_SETUP {qi}: {e}");
                return Ok(Status::BadArgument);
            }
        };
        queue.set_next_avail(used.0);
        queue.set_next_used(used.0);
        info!(
            "queue {qi}: size {}, desc {:#x}, avail {:#x}, used {:#x}, resuming at {}",
            setup.size, setup.desc, setup.driver, setup.device, used.0
        );
        self.queues[usize::from(qi)] = Some(Vq { queue, setup });
        Ok(Status::Ok)
    }

    fn check_setup(&self, s: &QueueSetup, max: u16) -> Result<(), String> {
        if s.size > max {
            return Err(format!("size {} > maximum {max}", s.size));
        }
        let (d, a, u) = QueueSetup::part_sizes(s.size);
        for (part, ioba, len) in [
            ("descriptor table", s.desc, d),
            ("available ring", s.driver, a),
            ("used ring", s.device, u),
        ] {
            if !self.mirror.contains(ioba, len) {
                return Err(format!(
                    "{part} {ioba:#x}+{len:#x} is not inside the window"
                ));
            }
        }
        // virtio-queue takes an available ring at address 0 for "not set up"; IOBA 0 can only
        // be that in a window starting at 0, and vioboot never hands out IOBA 0.
        if s.driver == 0 {
            return Err("available ring at IOBA 0 (not supported)".into());
        }
        Ok(())
    }

    fn queue_reset(&mut self, qi: u16) -> Status {
        match self.queues.get_mut(usize::from(qi)) {
            Some(q) => {
                if q.take().is_some() {
                    info!("queue {qi} reset");
                }
                Status::Ok
            }
            None => Status::BadArgument,
        }
    }

    /// Sets DEVICE_NEEDS_RESET and tells the guest (CONFIG_CHANGED, as virtio's config interrupt).
    fn needs_reset<P: Partner + ?Sized>(&mut self, p: &mut P, why: &str) -> Result<(), Ended> {
        error!("{}: {why}: device needs reset", self.device.name());
        if self.status & status::DEVICE_NEEDS_RESET == 0 {
            self.status |= status::DEVICE_NEEDS_RESET;
            let notice = Message::request(
                Opcode::ConfigChanged,
                0,
                0,
                u64::from(self.config_generation),
            );
            deliver(p, &self.stats, notice.encode(), true)?.ok();
        }
        Ok(())
    }

    /// NOTIFY(queue): serve every available chain, then USED.
    fn notify<P: Partner + ?Sized>(&mut self, p: &mut P, qi: u16) -> Result<(), Ended> {
        Stats::inc(&self.stats.notifies);
        let Some(vq) = self.queues.get(usize::from(qi)).and_then(Option::as_ref) else {
            warn!("NOTIFY for queue {qi}, which is not set up: ignored");
            return Ok(());
        };
        if self.device.swallows_notify(qi, &self.faults) {
            info!("fault: NOTIFY {qi} swallowed (nothing served, no USED)");
            return Ok(());
        }
        let idle = self.status & status::DRIVER_OK == 0
            || self.status & (status::DEVICE_NEEDS_RESET | status::FAILED) != 0;
        if idle {
            warn!(
                "NOTIFY {qi} with device status {:#x}: nothing served",
                self.status
            );
            let idx = vq.queue.next_used();
            return self.send_used(p, qi, idx);
        }
        let setup = vq.setup;
        let (d, a, _) = QueueSetup::part_sizes(setup.size);
        // The descriptor table and the available ring in one batch (one round trip), as one
        // range when the available ring follows the table (as virtio-drivers lays them out).
        let parts: &[(u64, u64)] = if setup.desc.checked_add(d) == Some(setup.driver) {
            &[(setup.desc, d + a)]
        } else {
            &[(setup.desc, d), (setup.driver, a)]
        };
        let rings = self.mirror.fetch_many(p, parts);
        if rings.contains(&Err(DmaError::Disconnected)) {
            return Err(Ended::Disconnected);
        }
        if let Some(Err(e)) = rings.into_iter().find(Result::is_err) {
            self.needs_reset(p, &format!("queue {qi}: ring unreadable: {e}"))?;
            let idx = self.queue_ref(qi).map_or(0, |q| q.next_used());
            return self.send_used(p, qi, idx);
        }
        let outcome = self.serve_queue(p, qi)?;
        if let Err(why) = outcome {
            self.needs_reset(p, &why)?;
        }
        let idx = self.queue_ref(qi).map_or(0, |q| q.next_used());
        if self.faults.unknown_opcode {
            let mut e = Message::request(Opcode::Used, 0, qi, 0).encode();
            e[2] = UNKNOWN_OPCODE;
            deliver(p, &self.stats, e, true)?.ok();
        }
        self.send_used(p, qi, idx)?;
        if self.faults.flood {
            let used = Message::request(Opcode::Used, 0, qi, u64::from(idx)).encode();
            let mut sent = 0;
            while sent < FLOOD_COUNT {
                match deliver(p, &self.stats, used, false)? {
                    Ok(()) => sent += 1,
                    Err(s) => {
                        info!(
                            "fault flood: {sent} extra USED delivered, then {}",
                            PartnerError::Status(s)
                        );
                        break;
                    }
                }
            }
            if sent == FLOOD_COUNT {
                info!("fault flood: {sent} extra USED delivered");
            }
        }
        Ok(())
    }

    fn queue_ref(&self, qi: u16) -> Option<&Queue> {
        self.queues
            .get(usize::from(qi))
            .and_then(Option::as_ref)
            .map(|v| &v.queue)
    }

    fn send_used<P: Partner + ?Sized>(&self, p: &mut P, qi: u16, idx: u16) -> Result<(), Ended> {
        let used = Message::request(Opcode::Used, 0, qi, u64::from(idx));
        if let Err(s) = deliver(p, &self.stats, used.encode(), true)? {
            warn!(
                "USED({qi}, {idx}) not delivered: {}",
                PartnerError::Status(s)
            );
        }
        Ok(())
    }

    /// Serves the chains of queue `qi` (rings already fetched) and flushes the used ring.
    /// `Ok(Err(why))`: the ring itself is broken (device needs reset).
    fn serve_queue<P: Partner + ?Sized>(
        &mut self,
        p: &mut P,
        qi: u16,
    ) -> Result<Result<(), String>, Ended> {
        let DeviceModel {
            device,
            mirror,
            queues,
            faults,
            stats,
            ..
        } = self;
        let Some(Vq { queue, setup }) = queues.get_mut(usize::from(qi)).and_then(Option::as_mut)
        else {
            return Ok(Ok(()));
        };
        let mem = mirror.memory();
        let chains: Vec<DescriptorChain<_>> = match queue.iter(mem) {
            Ok(it) => it.collect(),
            Err(e) => {
                let avail = queue.avail_idx(mem, Ordering::Acquire).map_or(0, |w| w.0);
                return Ok(Err(format!(
                    "queue {qi}: {e} (avail idx {avail}, next {})",
                    queue.next_avail()
                )));
            }
        };
        let first_used = queue.next_used();
        let to_serve = if faults.die_mid_request && !chains.is_empty() {
            chains.len().div_ceil(2)
        } else {
            chains.len()
        };
        let total = chains.len();
        // Every chain checked, then the driver-readable buffers of all of them fetched in one
        // batch, each chain served in order, and the bytes they produced flushed in one batch
        // with the used elements: a NOTIFY costs a few round trips, not a few per chain.
        let walked: Vec<Walked<'_>> = chains
            .into_iter()
            .take(to_serve)
            .map(|chain| walk_chain(p, mirror, *faults, stats, qi, setup, chain))
            .collect::<Result<_, Ended>>()?;
        let reads: Vec<(u64, u64)> = walked
            .iter()
            .filter_map(|w| w.chain.as_ref().map(|(_, b)| b))
            .flatten()
            .filter(|b| !b.writable)
            .map(|b| (b.addr, u64::from(b.len)))
            .collect();
        let mut fetched = mirror.fetch_many(p, &reads).into_iter();
        if fetched.as_slice().contains(&Err(DmaError::Disconnected)) {
            return Err(Ended::Disconnected);
        }
        // Bytes to flush: (chain head, ioba, len).
        let mut writes: Vec<(u16, u64, u64)> = Vec::new();
        for w in walked {
            let (head, used, writable) = match w.chain {
                Some((chain, buffers)) => {
                    let head = chain.head_index();
                    // The first failed fetch of this chain's buffers (all were asked for).
                    let mut fetch_failed = None;
                    for _ in buffers.iter().filter(|b| !b.writable) {
                        if let Some(Err(e)) = fetched.next() {
                            fetch_failed.get_or_insert(e);
                        }
                    }
                    let (used, writable) =
                        serve_chain(device, mirror, *faults, qi, &buffers, chain, fetch_failed);
                    writes.extend(
                        chain::writable_prefix(&buffers, used)
                            .into_iter()
                            .map(|(ioba, len)| (head, ioba, len)),
                    );
                    (head, used, writable)
                }
                // A refused chain is returned with nothing written, if its head allows.
                None => match w.refused {
                    Some(head) => (head, 0, 0),
                    None => continue,
                },
            };
            let mut len = used as u32;
            if faults.bad_used_len {
                len = (writable as u32).saturating_add(BAD_USED_LEN_EXTRA);
            }
            if let Err(e) = queue.add_used(mem, head, len) {
                queue.set_next_used(first_used);
                return Ok(Err(format!("queue {qi}: used ring: {e}")));
            }
            if faults.bad_used_id {
                let slot = u64::from((queue.next_used().wrapping_sub(1)) % setup.size);
                let at = GuestAddress(setup.device + 4 + 8 * slot);
                if mem.write_obj(u32::from(setup.size).to_le(), at).is_err() {
                    return Ok(Err("bad-used-id: used element outside the mirror".into()));
                }
            }
        }
        if faults.die_mid_request && total > 0 {
            // The served chains' bytes reach the guest; the used ring does not.
            let ranges: Vec<(u64, u64)> = writes.iter().map(|&(_, i, l)| (i, l)).collect();
            mirror.flush_many(p, &ranges);
            error!("fault die-mid-request: served {to_serve} of {total} chains; stopping without writing the used ring");
            return Err(Ended::Died);
        }
        // The chains' bytes, then the used elements (section 5, "Kick"), in one batch; then
        // the used index once they are in.
        let count = queue.next_used().wrapping_sub(first_used);
        let start = first_used % setup.size;
        let first_run = count.min(setup.size - start);
        let elems = setup.device + 4;
        let mut runs = Vec::new();
        if count > 0 {
            runs.push((elems + 8 * u64::from(start), 8 * u64::from(first_run)));
            if first_run < count {
                runs.push((elems, 8 * u64::from(count - first_run)));
            }
        }
        let ranges: Vec<(u64, u64)> = writes
            .iter()
            .map(|&(_, ioba, len)| (ioba, len))
            .chain(runs.iter().copied())
            .collect();
        let flushed = mirror.flush_many(p, &ranges);
        if flushed.contains(&Err(DmaError::Disconnected)) {
            return Err(Ended::Disconnected);
        }
        let (data, used_runs) = flushed.split_at(writes.len());
        for ((head, _, _), r) in writes.iter().zip(data) {
            if let Err(e) = r {
                warn!("queue {qi}: chain at {head}: result not written: {e}");
            }
        }
        let mut idx = used_runs.to_vec();
        if count > 0 && used_runs.iter().all(Result::is_ok) {
            idx.push(mirror.flush(p, setup.device + 2, 2));
        }
        for r in idx {
            match r {
                Ok(()) => {}
                Err(DmaError::Disconnected) => return Err(Ended::Disconnected),
                Err(e) => {
                    // USED reports what the guest's ring holds.
                    queue.set_next_used(first_used);
                    return Ok(Err(format!("queue {qi}: used ring not written: {e}")));
                }
            }
        }
        Ok(Ok(()))
    }
}

/// A chain after [`walk_chain`]: its buffers, or the head of a refused chain that is still
/// returned (used length 0), or neither (its head is out of range).
struct Walked<'m> {
    chain: Option<(
        DescriptorChain<&'m crate::mirror::MirrorMemory>,
        Vec<Buffer>,
    )>,
    refused: Option<u16>,
}

/// Checks one chain ([`chain::walk`]) and runs the `touch-unmapped` fault on it.
fn walk_chain<'m, P: Partner + ?Sized>(
    p: &mut P,
    mirror: &Mirror,
    faults: Faults,
    stats: &Stats,
    qi: u16,
    setup: &QueueSetup,
    chain: DescriptorChain<&'m crate::mirror::MirrorMemory>,
) -> Result<Walked<'m>, Ended> {
    Stats::inc(&stats.requests);
    let head = chain.head_index();
    let (d, a, _) = QueueSetup::part_sizes(setup.size);
    let rings = [(setup.desc, d), (setup.driver, a)];
    match chain::walk(mirror, setup.desc, setup.size, head, &rings) {
        Ok(buffers) => {
            if faults.touch_unmapped {
                touch_past(p, mirror, &buffers)?;
            }
            Ok(Walked {
                chain: Some((chain, buffers)),
                refused: None,
            })
        }
        Err(e) => {
            warn!("queue {qi}: chain refused: {e}");
            Stats::inc(&stats.bad_chains);
            Ok(Walked {
                chain: None,
                refused: (head < setup.size).then_some(head),
            })
        }
    }
}

/// Serves one walked chain whose driver-readable buffers are fetched (or `fetch_failed`):
/// (used length, device-writable bytes).
fn serve_chain<D: Device>(
    device: &mut D,
    mirror: &Mirror,
    faults: Faults,
    qi: u16,
    buffers: &[Buffer],
    chain: DescriptorChain<&crate::mirror::MirrorMemory>,
    fetch_failed: Option<DmaError>,
) -> (u64, u64) {
    let head = chain.head_index();
    let writable: u64 = buffers
        .iter()
        .filter(|b| b.writable)
        .map(|b| u64::from(b.len))
        .sum();
    for b in buffers.iter().filter(|b| b.writable) {
        // Cannot fail: walk() checked every buffer lies inside the window.
        let _ = mirror.zero(b.addr, u64::from(b.len));
    }
    let mem = mirror.memory();
    let used = device.process(Request {
        queue: qi,
        chain,
        mem,
        fetch_failed,
        faults,
    });
    let used = u64::from(used).min(writable);
    debug!(
        "queue {qi}: chain at {head}: {} buffers, used {used}",
        buffers.len()
    );
    (used, writable)
}

/// The `touch-unmapped` fault: remote-reads the page just past the chain's last buffer page,
/// which the guest should not have mapped.
fn touch_past<P: Partner + ?Sized>(
    p: &mut P,
    mirror: &Mirror,
    buffers: &[Buffer],
) -> Result<(), Ended> {
    let end = buffers
        .iter()
        .map(|b| b.addr + u64::from(b.len))
        .max()
        .unwrap_or(mirror.base());
    let probe = end.div_ceil(TCE_PAGE_SIZE) * TCE_PAGE_SIZE;
    let mut byte = [0u8; 1];
    match mirror.rdma_read(p, probe, &mut byte) {
        Err(DmaError::Disconnected) => return Err(Ended::Disconnected),
        Err(DmaError::Refused { status, .. }) => {
            info!(
                "fault touch-unmapped: RDMA read of {probe:#x} refused with {}, as it should be",
                PartnerError::Status(status)
            )
        }
        Err(e) => warn!("fault touch-unmapped: RDMA read of {probe:#x}: {e}"),
        Ok(()) => {
            warn!("fault touch-unmapped: IOBA {probe:#x} past the request's buffers is readable")
        }
    }
    Ok(())
}
