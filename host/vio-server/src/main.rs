//! `vio-server`: serves one virtio-blk device to a guest through QEMU's `spapr-virtio-vio`.
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
use vio_server::{logger, Blk, Faults, SocketPartner, Stats};

const USAGE: &str = "\
usage: vio-server --socket PATH --blk FILE [--read-only] [--serial STR]
                  [--fault NAME[,NAME]]... [--log LEVEL]

  --socket PATH   QEMU's spapr-virtio-vio chardev socket (QEMU listens; we connect)
  --blk FILE      disk image or block device served as virtio-blk
  --read-only     offer VIRTIO_BLK_F_RO and refuse writes
  --serial STR    GET_ID answer (at most 20 bytes; default: the file name)
  --fault NAMES   inject faults: bad-used-id, bad-used-len, unknown-opcode, flood,
                  die-mid-request, touch-unmapped
  --log LEVEL     error, warn, info (default), debug, trace

exit status: 0 stopped by SIGTERM/SIGINT, 1 error, 2 usage, 3 died by die-mid-request";

/// Exit status when `die-mid-request` fired.
const EXIT_DIED: u8 = 3;

struct Args {
    socket: PathBuf,
    blk: PathBuf,
    read_only: bool,
    serial: Option<String>,
    faults: Faults,
    log: LevelFilter,
}

fn parse(mut it: impl Iterator<Item = String>) -> Result<Args, String> {
    let (mut socket, mut blk, mut read_only, mut serial) = (None, None, false, None);
    let mut faults = Faults::default();
    let mut log = LevelFilter::Info;
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        match a.as_str() {
            "--socket" => socket = Some(PathBuf::from(value("--socket")?)),
            "--blk" => blk = Some(PathBuf::from(value("--blk")?)),
            "--read-only" => read_only = true,
            "--serial" => serial = Some(value("--serial")?),
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
    Ok(Args {
        socket: socket.ok_or("--socket is required")?,
        blk: blk.ok_or("--blk is required")?,
        read_only,
        serial,
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
    let blk = match Blk::open(
        &args.blk,
        args.read_only,
        args.serial.as_deref(),
        stats.clone(),
    ) {
        Ok(b) => b,
        Err(e) => {
            error!("{}: {e}", args.blk.display());
            return ExitCode::FAILURE;
        }
    };
    info!(
        "serving {} ({} sectors{}) on {}",
        args.blk.display(),
        blk.capacity(),
        if args.read_only { ", read-only" } else { "" },
        args.socket.display()
    );
    if !args.faults.is_empty() {
        info!("fault injection: {}", args.faults);
    }
    let mut partner = SocketPartner::new(&args.socket);
    let opts = Options {
        faults: args.faults,
        stats: stats.clone(),
        stop,
    };
    let (exit, _blk) = server::serve(&mut partner, blk, &opts, None);
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
