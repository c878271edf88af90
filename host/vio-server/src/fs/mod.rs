//! virtio-fs (virtio 1.2, section 5.11): a host directory shared with the guest over FUSE.
//!
//! The FUSE work is `fuse-backend-rs`'s: its `Server` decodes a request from the chain's
//! driver-readable buffers and writes the reply into its device-writable ones, through its
//! virtio-fs `Reader`/`VirtioFsWriter`, on `PassthroughFs` over the shared directory. Around
//! it, this device:
//! - screens each request first ([`policy`]): opcodes the server does not handle get ENOSYS, a
//!   read-only share refuses every change with EROFS, and the guest's ppc64 open flags are
//!   rewritten as the host's ([`flags`]);
//! - keeps the FUSE session: nothing but FUSE_INIT is served before a FUSE_INIT succeeded (EIO),
//!   a second FUSE_INIT starts a fresh session, DESTROY ends it and gets a header-only reply;
//! - applies the `fs-*` faults to the reply the server wrote ([`reply`]).
//!
//! Queue 0 is hiprio (FORGET, BATCH_FORGET, INTERRUPT), queues 1..=N the request queues; all
//! are served alike, one chain at a time. The FUSE session survives a virtio reset and a new
//! connection to the same server process (so a guest that replays its device state keeps its
//! node ids); it does not survive the server process.
//!
//! Side effect to know: `PassthroughFs` sets the process umask to 0 when it imports the root
//! (at FUSE_INIT and DESTROY), so a writable share creates files with the mode the guest asks
//! for, less the guest's own umask.

mod buffers;
pub mod flags;
pub mod policy;
pub mod reply;

use crate::device::{Device, Request};
use crate::faults::{Faults, FS_BAD_ERRNO, FS_ERROR_ERRNO};
use crate::mirror::MirrorMemory;
use crate::stats::Stats;
use buffers::{Side, Streams};
use fuse_backend_rs::api::filesystem::FileSystem;
use fuse_backend_rs::api::server::Server;
use fuse_backend_rs::passthrough::{self, PassthroughFs};
use fuse_backend_rs::transport::{Reader, VirtioFsWriter, Writer};
use log::{debug, info, warn};
use policy::{Header, Verdict};
use reply::{Answered, OUT_HEADER};
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use virtio_bindings::bindings::virtio_config::VIRTIO_F_VERSION_1;
use virtio_queue::DescriptorChain;

/// Entries in each queue.
pub const QUEUE_SIZE: u16 = 256;
/// The hiprio queue's index.
pub const HIPRIO: u16 = 0;
/// Most request queues offered (`--fs-queues`).
pub const MAX_REQUEST_QUEUES: u16 = 4;
/// Bytes of the config space's `tag`.
pub const TAG_LEN: usize = 36;
/// Bytes of config space: `tag`, `num_request_queues` (le32).
pub const CONFIG_LEN: usize = TAG_LEN + 4;

/// How a virtio-fs device is set up.
#[derive(Debug, Clone)]
pub struct FsOptions {
    /// The shared directory.
    pub dir: PathBuf,
    /// The mount tag (1..=36 bytes of UTF-8, no NUL).
    pub tag: String,
    /// Request queues, 1..=[`MAX_REQUEST_QUEUES`].
    pub request_queues: u16,
    /// Allow changes to the shared directory; else every change is refused with EROFS.
    pub writable: bool,
}

impl FsOptions {
    /// A read-only share of `dir` under `tag` with one request queue.
    pub fn new(dir: impl Into<PathBuf>, tag: &str) -> FsOptions {
        FsOptions {
            dir: dir.into(),
            tag: tag.into(),
            request_queues: 1,
            writable: false,
        }
    }
}

/// Why a virtio-fs device could not be made.
#[derive(Debug)]
pub enum FsError {
    /// The tag is empty, longer than [`TAG_LEN`] bytes or holds a NUL.
    BadTag(String),
    /// The request queue count is not 1..=[`MAX_REQUEST_QUEUES`].
    BadQueues(u16),
    /// The directory cannot be shared.
    Dir { dir: PathBuf, error: io::Error },
}

impl fmt::Display for FsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FsError::BadTag(t) => write!(
                f,
                "tag {t:?}: 1 to {TAG_LEN} bytes of UTF-8 without NUL needed"
            ),
            FsError::BadQueues(n) => {
                write!(f, "{n} request queues: 1 to {MAX_REQUEST_QUEUES} allowed")
            }
            FsError::Dir { dir, error } => write!(f, "{}: {error}", dir.display()),
        }
    }
}

impl std::error::Error for FsError {}

/// A virtio-fs device.
pub struct Fs {
    server: Server<Arc<PassthroughFs>>,
    backend: Arc<PassthroughFs>,
    dir: PathBuf,
    tag: [u8; TAG_LEN],
    request_queues: u16,
    writable: bool,
    /// A FUSE_INIT succeeded and no DESTROY came since.
    session: bool,
    stats: Arc<Stats>,
}

impl Fs {
    /// A device sharing `opts.dir`.
    pub fn new(opts: &FsOptions, stats: Arc<Stats>) -> Result<Fs, FsError> {
        let t = opts.tag.as_bytes();
        if t.is_empty() || t.len() > TAG_LEN || t.contains(&0) {
            return Err(FsError::BadTag(opts.tag.clone()));
        }
        if !(1..=MAX_REQUEST_QUEUES).contains(&opts.request_queues) {
            return Err(FsError::BadQueues(opts.request_queues));
        }
        let dir_error = |error| FsError::Dir {
            dir: opts.dir.clone(),
            error,
        };
        let dir = opts.dir.canonicalize().map_err(dir_error)?;
        if !dir.is_dir() {
            return Err(dir_error(io::Error::from_raw_os_error(libc::ENOTDIR)));
        }
        let root_dir = dir
            .to_str()
            .ok_or_else(|| dir_error(io::Error::from_raw_os_error(libc::EINVAL)))?
            .to_string();
        let cfg = passthrough::Config {
            root_dir,
            // The root is imported at FUSE_INIT (and again after DESTROY).
            do_import: true,
            xattr: false,
            ..Default::default()
        };
        let backend = Arc::new(PassthroughFs::new(cfg).map_err(dir_error)?);
        let mut tag = [0u8; TAG_LEN];
        tag[..t.len()].copy_from_slice(t);
        Ok(Fs {
            server: Server::new(backend.clone()),
            backend,
            dir,
            tag,
            request_queues: opts.request_queues,
            writable: opts.writable,
            session: false,
            stats,
        })
    }

    /// The shared directory (canonical).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether a FUSE session is open (FUSE_INIT done, no DESTROY since).
    pub fn in_session(&self) -> bool {
        self.session
    }

    /// Writes a header-only reply; its length, or 0 if the guest left no room for it.
    fn answer(&self, s: &Streams, mem: &MirrorMemory, h: &Header, errno: i32) -> u64 {
        if s.len(Side::Reply) < OUT_HEADER as u64 {
            warn!(
                "FUSE {} (unique {}): no room for a reply ({} bytes)",
                policy::name(h.opcode),
                h.unique,
                s.len(Side::Reply)
            );
            return 0;
        }
        if !s.write(mem, Side::Reply, 0, &reply::header_only(h.unique, errno)) {
            return 0;
        }
        OUT_HEADER as u64
    }

    /// Hands the request to the FUSE server; the reply's length.
    fn serve(
        &mut self,
        chain: DescriptorChain<&MirrorMemory>,
        s: &Streams,
        mem: &MirrorMemory,
        h: &Header,
    ) -> u64 {
        if h.opcode == policy::INIT && self.session {
            info!("FUSE_INIT in a session: the old session's nodes and handles are dropped");
            self.backend.destroy();
            self.session = false;
        }
        let reader = Reader::from_descriptor_chain(mem, chain.clone());
        let writer = VirtioFsWriter::new(mem, chain).map(Writer::from);
        let (reader, writer) = match (reader, writer) {
            (Ok(r), Ok(w)) => (r, w),
            (Err(e), _) | (_, Err(e)) => {
                warn!("FUSE: chain not usable: {e}");
                return self.answer(s, mem, h, libc::EIO);
            }
        };
        let space = s.len(Side::Reply);
        let len = match self.server.handle_message(reader, writer, None, None) {
            Ok(n) => n as u64,
            Err(e) => {
                // Some paths write an error reply and then return the error; keep that reply.
                let written = s.read_vec(mem, Side::Reply, OUT_HEADER as u64);
                match reply::header(&written) {
                    Some((len, _, unique))
                        if unique == h.unique
                            && len as usize >= OUT_HEADER
                            && u64::from(len) <= space =>
                    {
                        debug!("FUSE {}: {e} (replied)", policy::name(h.opcode));
                        u64::from(len)
                    }
                    _ if policy::has_reply(h.opcode) => {
                        warn!("FUSE {} (unique {}): {e}", policy::name(h.opcode), h.unique);
                        let errno = match e {
                            fuse_backend_rs::Error::EncodeMessage(_)
                            | fuse_backend_rs::Error::FailedToWrite(_)
                            | fuse_backend_rs::Error::FailedToSplitWriter(_) => libc::EIO,
                            _ => libc::EINVAL,
                        };
                        return self.answer(s, mem, h, errno);
                    }
                    _ => 0,
                }
            }
        };
        match h.opcode {
            // The library answers DESTROY with nothing; FUSE clients wait for a header.
            policy::DESTROY => {
                self.session = false;
                info!("FUSE DESTROY: session ended");
                return self.answer(s, mem, h, 0);
            }
            policy::INIT => {
                let out = s.read_vec(mem, Side::Reply, len);
                self.session = matches!(reply::header(&out), Some((_, 0, _)));
                info!(
                    "FUSE_INIT: {}",
                    if self.session {
                        "session open"
                    } else {
                        "refused"
                    }
                );
            }
            policy::READ if len > OUT_HEADER as u64 => {
                Stats::add(&self.stats.backend_read_bytes, len - OUT_HEADER as u64);
            }
            _ => {}
        }
        if !policy::has_reply(h.opcode) {
            return 0;
        }
        len.min(space)
    }
}

impl Device for Fs {
    fn name(&self) -> &str {
        "virtio-fs"
    }

    fn device_id(&self) -> u32 {
        virtio_vio::device_id::FS
    }

    fn features(&self) -> u64 {
        1u64 << VIRTIO_F_VERSION_1
    }

    fn queue_max_sizes(&self) -> Vec<u16> {
        vec![QUEUE_SIZE; 1 + usize::from(self.request_queues)]
    }

    fn config(&self) -> Vec<u8> {
        // struct virtio_fs_config: tag[36] (UTF-8, NUL padded), num_request_queues le32.
        let mut c = Vec::with_capacity(CONFIG_LEN);
        c.extend_from_slice(&self.tag);
        c.extend_from_slice(&u32::from(self.request_queues).to_le_bytes());
        c
    }

    fn swallows_notify(&self, queue: u16, faults: &Faults) -> bool {
        faults.fs_silent && queue != HIPRIO
    }

    fn process(&mut self, req: Request<'_>) -> u32 {
        let Request {
            queue,
            chain,
            mem,
            fetch_failed,
            faults,
        } = req;
        let s = Streams::of(&chain);
        if let Some(e) = fetch_failed {
            warn!("virtio-fs: queue {queue}: request unreadable ({e}): returned unanswered");
            return 0;
        }
        let Some(h) = Header::read(&s, mem) else {
            warn!(
                "virtio-fs: queue {queue}: request of {} bytes has no FUSE header: returned unanswered",
                s.len(Side::Request)
            );
            return 0;
        };
        let has_reply = policy::has_reply(h.opcode);
        let len = if has_reply && (faults.fs_error_reply || faults.fs_bad_errno) {
            let errno = if faults.fs_bad_errno {
                FS_BAD_ERRNO
            } else {
                FS_ERROR_ERRNO
            };
            self.answer(&s, mem, &h, errno)
        } else {
            match policy::screen(&h, &s, mem, self.writable) {
                Verdict::Serve if self.session || h.opcode == policy::INIT => {
                    self.serve(chain, &s, mem, &h)
                }
                Verdict::Serve if has_reply => {
                    debug!("FUSE {} before FUSE_INIT: EIO", policy::name(h.opcode));
                    self.answer(&s, mem, &h, libc::EIO)
                }
                Verdict::Refuse(errno) if has_reply => self.answer(&s, mem, &h, errno),
                Verdict::Serve | Verdict::Refuse(_) => 0,
            }
        };
        if len == 0 {
            debug!(
                "FUSE {} (unique {}, node {}): no reply",
                policy::name(h.opcode),
                h.unique,
                h.nodeid
            );
            return 0;
        }
        let mut out = s.read_vec(mem, Side::Reply, len);
        debug!(
            "FUSE {} (unique {}, node {}): reply {} bytes, error {}",
            policy::name(h.opcode),
            h.unique,
            h.nodeid,
            out.len(),
            reply::header(&out).map_or(0, |(_, e, _)| e)
        );
        let answered = Answered {
            readdir_plus: match h.opcode {
                policy::READDIR => Some(false),
                policy::READDIRPLUS => Some(true),
                _ => None,
            },
            space: s.len(Side::Reply),
        };
        let used = reply::apply_faults(&mut out, answered, &faults);
        if !faults.is_empty() && !s.write(mem, Side::Reply, 0, &out) {
            return 0;
        }
        used as u32
    }
}
