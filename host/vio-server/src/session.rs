//! The server side of one CRQ connection: the PAPR initialization handshake, then virtio-vio
//! messages dispatched to the device model (`docs/virtio-vio.md` sections 2, 3 and 7).
//!
//! ```text
//!  (connect)   --send INIT (H_CLOSED: the guest has no CRQ yet)-->  WAIT_INIT
//!  WAIT_INIT   --guest INIT: send INIT COMPLETE-->                  READY
//!  WAIT_INIT   --guest INIT COMPLETE-->                             READY
//!  READY       --guest INIT (it restarted): reset device, INIT COMPLETE--> READY
//!  any         --RESET event (machine reset): forget everything-->  WAIT_INIT
//! ```
//!
//! Nothing a guest sends can make it panic: entries of other formats and virtio-vio messages
//! before READY are logged and dropped, unknown opcodes are answered with status 1.

use crate::device::Device;
use crate::faults::Faults;
use crate::hcall::PartnerError;
use crate::mirror::Mirror;
use crate::model::{deliver, DeviceModel, Ended};
use crate::partner::Partner;
use crate::stats::Stats;
use log::{debug, info, warn};
use papr::crq::{self, Entry, TransportEvent, ENTRY_LEN};
use papr::status::H_CLOSED;
use std::sync::Arc;
use virtio_vio::msg::{self, DecodeError, Message, Status};

/// Where the CRQ handshake stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrqState {
    /// INIT sent or refused; waiting for the guest's INIT or INIT COMPLETE.
    WaitInit,
    /// Messages flow.
    Ready,
}

/// One session: a connection's CRQ state and the device model.
pub struct Session<D: Device> {
    state: CrqState,
    model: DeviceModel<D>,
    stats: Arc<Stats>,
}

impl<D: Device> Session<D> {
    /// A fresh session on `mirror` (the window of the connection) for `device`.
    pub fn new(mirror: Mirror, device: D, faults: Faults, stats: Arc<Stats>) -> Session<D> {
        let model = DeviceModel::new(mirror, device, faults, stats.clone());
        Session {
            state: CrqState::WaitInit,
            model,
            stats,
        }
    }

    pub fn state(&self) -> CrqState {
        self.state
    }

    pub fn model(&self) -> &DeviceModel<D> {
        &self.model
    }

    /// The device, back (the session is over).
    pub fn into_device(self) -> D {
        self.model.into_device()
    }

    /// Starts the handshake: sends INIT.
    pub fn start<P: Partner + ?Sized>(&mut self, p: &mut P) -> Result<(), Ended> {
        self.state = CrqState::WaitInit;
        match deliver(p, &self.stats, Entry::init(false), true)? {
            Ok(()) => info!("INIT sent; waiting for the guest's answer"),
            Err(H_CLOSED) => info!("the guest has no CRQ yet (H_CLOSED): waiting for its INIT"),
            Err(s) => warn!(
                "INIT not delivered: {}; waiting for the guest's INIT",
                PartnerError::Status(s)
            ),
        }
        Ok(())
    }

    /// The adapter was reset (machine reset): the guest's CRQ is gone; forget everything.
    pub fn reset(&mut self) {
        info!("adapter reset: session state forgotten; waiting for the guest's INIT");
        self.state = CrqState::WaitInit;
        self.model.reset();
    }

    /// Handles one entry the guest sent.
    pub fn handle<P: Partner + ?Sized>(
        &mut self,
        p: &mut P,
        entry: [u8; ENTRY_LEN],
    ) -> Result<(), Ended> {
        Stats::inc(&self.stats.crq_in);
        match Entry::parse(entry) {
            Entry::Init => {
                if self.state == CrqState::Ready {
                    info!("guest INIT while ready: the guest restarted; device state reset");
                    self.model.reset();
                }
                match deliver(p, &self.stats, Entry::init(true), true)? {
                    Ok(()) => {
                        info!("guest INIT answered with INIT COMPLETE: ready");
                        self.state = CrqState::Ready;
                    }
                    Err(s) => {
                        warn!("INIT COMPLETE not delivered: {}", PartnerError::Status(s));
                        self.state = CrqState::WaitInit;
                    }
                }
            }
            Entry::InitComplete => {
                if self.state == CrqState::WaitInit {
                    info!("guest INIT COMPLETE: ready");
                    self.state = CrqState::Ready;
                } else {
                    debug!("INIT COMPLETE while ready ignored");
                }
            }
            Entry::Message(b) if b[1] != msg::FORMAT => {
                info!(
                    "entry of format {:#04x} (not virtio-vio) ignored: {}",
                    b[1],
                    hex(&b)
                );
            }
            Entry::Message(b) if self.state != CrqState::Ready => {
                warn!(
                    "virtio-vio message before the CRQ handshake ignored: {}",
                    hex(&b)
                );
            }
            Entry::Message(b) => match Message::decode(&b) {
                Ok(m) => {
                    debug!(
                        "guest: {} tag {} arg16 {:#x} arg64 {:#x}",
                        m.opcode.name(),
                        m.tag,
                        m.arg16,
                        m.arg64
                    );
                    self.model.handle(p, &m)?;
                }
                Err(DecodeError::Opcode(op)) => {
                    warn!(
                        "unknown opcode {op:#04x}: answered with status {}",
                        Status::BadOpcode
                    );
                    let mut r = [0u8; ENTRY_LEN];
                    r[..6].copy_from_slice(&b[..6]);
                    r[2] = op | msg::RESPONSE;
                    r[3] = Status::BadOpcode as u8;
                    if let Err(s) = deliver(p, &self.stats, r, true)? {
                        warn!(
                            "BadOpcode response not delivered: {}",
                            PartnerError::Status(s)
                        );
                    }
                }
                Err(e) => warn!("entry ignored: {e}"),
            },
            Entry::Transport(ev) => {
                let code = match ev {
                    TransportEvent::PartnerFailed => crq::PARTNER_FAILED,
                    TransportEvent::PartnerDeregistered => crq::PARTNER_DEREGISTERED,
                    TransportEvent::Migrated => crq::MIGRATED,
                    TransportEvent::Other(c) => c,
                };
                info!("transport event {code:#04x} sent by the guest ignored");
            }
            Entry::Invalid(b) => warn!("invalid CRQ entry ignored: {}", hex(&b)),
        }
        Ok(())
    }
}

/// An entry as hex words, for logs.
fn hex(b: &[u8; ENTRY_LEN]) -> String {
    let (w0, w1) = crq::to_words(b);
    format!("{w0:016x} {w1:016x}")
}
