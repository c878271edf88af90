//! vioboot's FUSE client, independent of how messages travel (virtio-fs over virtio-vio in the
//! firmware, a fake in tests). Two halves meet at the [`Transport`] trait: the queue plumbing
//! (the firmware's virtqueues) and the FUSE protocol here ([`proto`]: requests and checked
//! replies; [`fs`]: path walking, files, directories).
//!
//! Nothing a server sends is trusted: every reply is checked against its header, the buffer
//! it arrived in, the request's `unique` and the size its operation needs before it is read.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod fs;
pub mod proto;

pub use fs::{Attr, DirEntry, Fs, FsError, FsErrorKind};
pub use proto::ReplyError;

/// Which virtio-fs queue a request goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Queue {
    /// The high-priority queue: FORGET (no reply).
    Hiprio,
    /// A request queue.
    Request,
}

/// One request and the room for its reply.
#[derive(Debug, Default)]
pub struct Call {
    pub request: alloc::vec::Vec<u8>,
    /// Room for the reply (empty for FORGET).
    pub reply: alloc::vec::Vec<u8>,
    /// Bytes the device says it wrote into `reply` (the used length). Untrusted.
    pub used: usize,
}

/// Moves FUSE messages to the server and back.
pub trait Transport {
    /// What the transport fails with; it reaches the caller inside [`FsErrorKind::Transport`]
    /// as it was given, never relabelled.
    type Error: core::fmt::Debug + core::fmt::Display;

    /// Sends every call of `batch` on `queue` (several in flight where the queue allows) and
    /// waits for all of them; fills in each `used`. An `Err` names what failed (the device,
    /// a timeout); it ends the filesystem's use of the transport.
    fn submit(&mut self, queue: Queue, batch: &mut [Call]) -> Result<(), Self::Error>;

    /// How many times the server side has restarted (a new session that must be sent
    /// FUSE_INIT again). A transport that cannot tell says 0.
    fn restarts(&self) -> u64 {
        0
    }
}
