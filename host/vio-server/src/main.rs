//! `vio-server`: serves one virtio-blk or virtio-fs device to a guest through QEMU's
//! `spapr-virtio-vio`.
//!
//! One device per process; a second device is a second QEMU device with a second server. The
//! server survives QEMU dropping the connection (it reconnects every 100 ms) and may be killed
//! and restarted while the guest runs. SIGTERM/SIGINT end it with a stats line.

use log::{error, info, LevelFilter};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use vio_server::server::{self, Exit, Options};
use vio_server::{logger, Blk, Device, Faults, Fs, FsOptions, SocketPartner, Stats};

const USAGE: &str = "\
usage: vio-server --socket PATH --blk FILE [--read-only] [--serial STR] [--block-size N]
                  [--fault NAME[,NAME]]... [--log LEVEL]
       vio-server --socket PATH --fs DIR --tag TAG [--fs-writable] [--fs-queues N]
                  [--fault NAME[,NAME]]... [--log LEVEL]

  --socket PATH   QEMU's spapr-virtio-vio chardev socket (QEMU listens; we connect)
  --blk FILE      disk image or block device served as virtio-blk
  --read-only     offer VIRTIO_BLK_F_RO and refuse writes
  --serial STR    GET_ID answer (at most 20 bytes; default: the file name)
  --block-size N  logical block size offered in blk_size (512 default, 4096 for a 4Kn disk);
                  requests not aligned to it are refused
  --fs DIR        directory shared as virtio-fs (read-only unless --fs-writable)
  --tag TAG       virtio-fs mount tag (1 to 36 bytes)
  --fs-writable   let the guest change the shared directory
  --fs-queues N   virtio-fs request queues, 1 (default) to 4
  --fault NAMES   inject faults: bad-used-id, bad-used-len, unknown-opcode, flood,
                  die-mid-request, touch-unmapped; virtio-fs only: fs-short-reply,
                  fs-wrong-unique, fs-error-reply, fs-huge-len, fs-bad-errno,
                  fs-dirent-overrun, fs-slash-name, fs-silent
  --log LEVEL     error, warn, info (default), debug, trace

exit status: 0 stopped by SIGTERM/SIGINT, 1 error, 2 usage, 3 died by die-mid-request";

/// Exit status when `die-mid-request` fired.
const EXIT_DIED: u8 = 3;

/// The device a process serves.
enum Kind {
    Blk {
        file: PathBuf,
        read_only: bool,
        serial: Option<String>,
        block_size: Option<u32>,
    },
    Fs(FsOptions),
}

struct Args {
    socket: PathBuf,
    kind: Kind,
    faults: Faults,
    log: LevelFilter,
}

fn parse(mut it: impl Iterator<Item = String>) -> Result<Args, String> {
    let (mut socket, mut blk, mut read_only, mut serial) = (None, None, false, None);
    let (mut fs, mut tag, mut fs_writable, mut fs_queues) = (None, None, false, None);
    let mut faults = Faults::default();
    let mut log = LevelFilter::Info;
    let mut block_size = None;
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        match a.as_str() {
            "--socket" => socket = Some(PathBuf::from(value("--socket")?)),
            "--blk" => blk = Some(PathBuf::from(value("--blk")?)),
            "--read-only" => read_only = true,
            "--serial" => serial = Some(value("--serial")?),
            "--block-size" => {
                let v = value("--block-size")?;
                block_size = Some(
                    v.parse::<u32>()
                        .map_err(|_| format!("--block-size {v}: not a number"))?,
                );
            }
            "--fs" => fs = Some(PathBuf::from(value("--fs")?)),
            "--tag" => tag = Some(value("--tag")?),
            "--fs-writable" => fs_writable = true,
            "--fs-queues" => {
                let v = value("--fs-queues")?;
                fs_queues = Some(
                    v.parse::<u16>()
                        .map_err(|_| format!("--fs-queues {v}: not a number"))?,
                );
            }
            "--fault" => faults
                .enable(&value("--fault")?)
                .map_err(|e| e.to_string())?,
            "--log" => {
                let v = value("--log")?;
                log = v
                    .parse()
                    .map_err(|_| format!("--log {v}: not a log level"))?;
            }
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    let kind = match (blk, fs) {
        (Some(file), None) => {
            if tag.is_some() || fs_writable || fs_queues.is_some() {
                return Err("--tag, --fs-writable and --fs-queues go with --fs".into());
            }
            if faults.any_fs() {
                return Err("fs-* faults go with --fs".into());
            }
            Kind::Blk {
                file,
                read_only,
                serial,
                block_size,
            }
        }
        (None, Some(dir)) => {
            if read_only || serial.is_some() || block_size.is_some() {
                return Err("--read-only, --serial and --block-size go with --blk (a share is read-only unless --fs-writable)".into());
            }
            let mut o = FsOptions::new(dir, &tag.ok_or("--fs needs --tag")?);
            o.writable = fs_writable;
            o.request_queues = fs_queues.unwrap_or(1);
            Kind::Fs(o)
        }
        _ => return Err("exactly one of --blk FILE and --fs DIR is required".into()),
    };
    Ok(Args {
        socket: socket.ok_or("--socket is required")?,
        kind,
        faults,
        log,
    })
}

fn main() -> ExitCode {
    let args = match parse(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) if e.is_empty() => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("vio-server: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    logger::init(args.log);
    let stats = Arc::new(Stats::default());
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        if let Err(e) = signal_hook::flag::register(sig, stop.clone()) {
            error!("cannot handle signal {sig}: {e}");
            return ExitCode::FAILURE;
        }
    }
    match args.kind {
        Kind::Blk {
            ref file,
            read_only,
            ref serial,
            block_size,
        } => {
            let blk = match Blk::open(file, read_only, serial.as_deref(), stats.clone()) {
                Ok(b) => b,
                Err(e) => {
                    error!("{}: {e}", file.display());
                    return ExitCode::FAILURE;
                }
            };
            let blk = match block_size {
                Some(bs) => blk.with_block_size(bs),
                None => Ok(blk),
            };
            let blk = match blk {
                Ok(b) => b,
                Err(e) => {
                    error!("{}: {e}", file.display());
                    return ExitCode::FAILURE;
                }
            };
            info!(
                "serving {} ({} sectors{}) on {}",
                file.display(),
                blk.capacity(),
                if read_only { ", read-only" } else { "" },
                args.socket.display()
            );
            run(&args, blk, stats, stop)
        }
        Kind::Fs(ref o) => {
            let fs = match Fs::new(o, stats.clone()) {
                Ok(f) => f,
                Err(e) => {
                    error!("virtio-fs: {e}");
                    return ExitCode::FAILURE;
                }
            };
            info!(
                "sharing {} as virtio-fs tag {:?} ({}, {} request queue{}) on {}",
                fs.dir().display(),
                o.tag,
                if o.writable { "writable" } else { "read-only" },
                o.request_queues,
                if o.request_queues == 1 { "" } else { "s" },
                args.socket.display()
            );
            run(&args, fs, stats, stop)
        }
    }
}

/// Serves `device` until stopped.
fn run<D: Device>(args: &Args, device: D, stats: Arc<Stats>, stop: Arc<AtomicBool>) -> ExitCode {
    if !args.faults.is_empty() {
        info!("fault injection: {}", args.faults);
    }
    let mut partner = SocketPartner::new(&args.socket);
    let opts = Options {
        faults: args.faults,
        stats: stats.clone(),
        stop,
    };
    let (exit, _device) = server::serve(&mut partner, device, &opts, None);
    info!("stats: {stats}");
    match exit {
        Exit::Died => {
            error!("exiting: fault die-mid-request");
            ExitCode::from(EXIT_DIED)
        }
        Exit::Stopped | Exit::Idle => {
            info!("stopped");
            ExitCode::SUCCESS
        }
    }
}
