//! A simulated hypervisor for host tests: TCE tables with permissions, one adapter's CRQ pair,
//! remote DMA that honours the TCEs, and transport events. vioboot's own code runs on the host
//! against it (its hcalls arrive here through `vioboot::arch::set_hypervisor`); guest "real
//! addresses" are host pointers into vioboot's page pool.
//!
//! A server model (`Server`) runs synchronously: whenever the guest sends a CRQ entry, the
//! server is pumped until it has nothing more to do.

#![allow(dead_code)] // each test file uses part of it

use papr::crq::{self, Entry, ENTRY_LEN};
use papr::hcall::{
    H_ENABLE_CRQ, H_FREE_CRQ, H_GET_TCE, H_PUT_TCE, H_PUT_TCE_INDIRECT, H_REG_CRQ, H_SEND_CRQ,
    H_STUFF_TCE, H_VIO_SIGNAL,
};
use papr::status::{
    H_CLOSED, H_DEST_PARM, H_DROPPED, H_FUNCTION, H_PARAMETER, H_RESOURCE, H_SUCCESS,
};
use papr::tce::{TCE_INDIRECT_MAX, TCE_PAGE_SIZE, TCE_READ, TCE_WRITE};
use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::sync::Mutex;
use vioboot::arch::HcallRegs;
use vioboot_core::inventory::DmaWindow;

/// Tests share vioboot's global state (page pool, TCE registry): one at a time.
pub static SERIAL: Mutex<()> = Mutex::new(());

pub const UNIT: u32 = 0x7100_0010;
pub const WINDOW: DmaWindow = DmaWindow {
    liobn: UNIT,
    ioba: 0,
    size: 0x1000_0000,
};

/// The simulated adapter, as vioboot's bus discovery would report it.
pub fn adapter() -> vioboot::vio::Adapter {
    vioboot::vio::Adapter {
        name: "virtio@71000010".into(),
        unit: UNIT,
        window: WINDOW,
        irq: None,
    }
}

/// The hypervisor's state.
#[derive(Default)]
pub struct Hv {
    /// TCE of each mapped page of the window, by page IOBA.
    pub tces: HashMap<u64, u64>,
    /// The guest's registered CRQ: IOBA, length, next slot to fill.
    pub crq: Option<(u64, u64, usize)>,
    /// Entries the guest sent that the server has not taken yet.
    pub to_server: VecDeque<[u8; ENTRY_LEN]>,
    /// Whether a server is there (H_SEND_CRQ gives H_CLOSED otherwise).
    pub server_alive: bool,
    pub counts: HashMap<u64, u64>,
    /// RDMA attempts refused for lack of a TCE or permission.
    pub refused_rdma: u64,
    /// Set when the partner failed; the next hcall brings up a fresh server (if `Sim::respawn`).
    pub failed: bool,
    /// Times the partner failed.
    pub failures: u64,
    /// A hostile hypervisor: hcalls answered with a status instead of being performed,
    /// opcode -> (status, how many more times).
    pub refuse: HashMap<u64, (i64, u64)>,
}

impl Hv {
    /// Host address of `ioba`, if its page is mapped with `need` (`TCE_READ`, `TCE_WRITE`).
    fn translate(&self, ioba: u64, need: u64) -> Option<u64> {
        let in_page = TCE_PAGE_SIZE - 1;
        let tce = *self.tces.get(&(ioba & !in_page))?;
        (tce & need == need).then(|| (tce & !in_page) + (ioba & in_page))
    }

    /// The device's remote DMA read: all or nothing, like QEMU's device model.
    pub fn rdma_read(&mut self, ioba: u64, buf: &mut [u8]) -> Result<(), i64> {
        let ok = (0..buf.len() as u64).all(|i| self.translate(ioba + i, TCE_READ).is_some());
        if !ok {
            self.refused_rdma += 1;
            return Err(H_DEST_PARM);
        }
        for (i, b) in buf.iter_mut().enumerate() {
            let a = self.translate(ioba + i as u64, TCE_READ).unwrap_or(0);
            // SAFETY: the guest mapped this host page through its TCE (pool memory).
            *b = unsafe { std::ptr::read_volatile(a as *const u8) };
        }
        Ok(())
    }

    pub fn rdma_write(&mut self, ioba: u64, data: &[u8]) -> Result<(), i64> {
        let ok = (0..data.len() as u64).all(|i| self.translate(ioba + i, TCE_WRITE).is_some());
        if !ok {
            self.refused_rdma += 1;
            return Err(H_DEST_PARM);
        }
        for (i, b) in data.iter().enumerate() {
            let a = self.translate(ioba + i as u64, TCE_WRITE).unwrap_or(0);
            // SAFETY: as rdma_read, with write permission.
            unsafe { std::ptr::write_volatile(a as *mut u8, *b) };
        }
        Ok(())
    }

    /// Puts an entry into the guest's CRQ: bytes 8..15 first, then 0..7.
    pub fn deliver(&mut self, e: [u8; ENTRY_LEN]) -> Result<(), i64> {
        let Some((ioba, len, tail)) = self.crq else {
            return Err(H_CLOSED);
        };
        let slot = ioba + (tail * ENTRY_LEN) as u64;
        let Some(a) = self.translate(slot, TCE_READ | TCE_WRITE) else {
            return Err(H_DEST_PARM);
        };
        // SAFETY: the CRQ page is mapped read/write through the TCE.
        let byte0 = unsafe { std::ptr::read_volatile(a as *const u8) };
        if crq::is_valid(byte0) {
            return Err(H_DROPPED);
        }
        for i in (8..ENTRY_LEN).chain(0..8) {
            // SAFETY: as above.
            unsafe { std::ptr::write_volatile((a + i as u64) as *mut u8, e[i]) };
        }
        self.crq = Some((ioba, len, (tail + 1) % (len as usize / ENTRY_LEN)));
        Ok(())
    }

    /// The partner went away: the hypervisor posts "partner failed".
    pub fn partner_failed(&mut self) {
        self.server_alive = false;
        self.failed = true;
        self.failures += 1;
        let _ = self.deliver(Entry::transport(crq::PARTNER_FAILED));
    }
}

/// What plays the VIO server.
pub trait Server {
    /// Handles what the guest sent (`hv.to_server`) until there is nothing left to do.
    fn pump(&mut self, hv: &mut Hv);
}

/// Makes the server that comes up after a failure.
pub type Respawn = Box<dyn Fn() -> Box<dyn Server>>;

pub struct Sim {
    pub hv: Rc<RefCell<Hv>>,
    pub server: Rc<RefCell<Box<dyn Server>>>,
    pub respawn: Rc<RefCell<Option<Respawn>>>,
}

fn regs(status: i64, out: &[u64]) -> HcallRegs {
    let mut r = HcallRegs {
        status,
        out: [0; 9],
    };
    r.out[..out.len()].copy_from_slice(out);
    r
}

impl Sim {
    /// Installs a simulated hypervisor with one virtio-vio adapter served by `server`, and a
    /// fresh 8 MiB page pool for vioboot.
    pub fn install(server: Box<dyn Server>) -> Sim {
        init_pool();
        let hv = Rc::new(RefCell::new(Hv {
            server_alive: true,
            ..Hv::default()
        }));
        let server = Rc::new(RefCell::new(server));
        let respawn: Rc<RefCell<Option<Respawn>>> = Rc::new(RefCell::new(None));
        let (h, s, rs) = (hv.clone(), server.clone(), respawn.clone());
        vioboot::arch::set_hypervisor(Some(Box::new(move |op, a| {
            *h.borrow_mut().counts.entry(op).or_default() += 1;
            let refused = h
                .borrow_mut()
                .refuse
                .get_mut(&op)
                .and_then(|(status, left)| {
                    (*left > 0).then(|| {
                        *left -= 1;
                        *status
                    })
                });
            if let Some(status) = refused {
                return regs(status, &[]);
            }
            // A failed server is replaced by a fresh one (as a restarted VIO server would be).
            if h.borrow().failed {
                if let Some(make) = rs.borrow().as_ref() {
                    *s.borrow_mut() = make();
                    let mut hv = h.borrow_mut();
                    hv.failed = false;
                    hv.server_alive = true;
                    hv.to_server.clear();
                }
            }
            let r = hcall(&mut h.borrow_mut(), op, a);
            if op == H_SEND_CRQ && r.status == H_SUCCESS {
                let mut hv = h.borrow_mut();
                s.borrow_mut().pump(&mut hv);
            }
            r
        })));
        Sim {
            hv,
            server,
            respawn,
        }
    }

    /// What comes up after the server fails.
    pub fn on_failure(&self, make: Respawn) {
        *self.respawn.borrow_mut() = Some(make);
    }

    /// Replaces the server now.
    pub fn restart_server(&self, server: Box<dyn Server>) {
        *self.server.borrow_mut() = server;
        self.hv.borrow_mut().server_alive = true;
        self.hv.borrow_mut().to_server.clear();
    }

    /// Answers hcall `op` with `status` the next `times` times, without performing it.
    pub fn refuse(&self, op: u64, status: i64, times: u64) {
        self.hv.borrow_mut().refuse.insert(op, (status, times));
    }

    pub fn count(&self, op: u64) -> u64 {
        self.hv.borrow().counts.get(&op).copied().unwrap_or(0)
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        vioboot::arch::set_hypervisor(None);
    }
}

fn in_window(ioba: u64, pages: u64) -> bool {
    // The window starts at IOBA 0.
    ioba.is_multiple_of(TCE_PAGE_SIZE) && ioba + pages * TCE_PAGE_SIZE <= WINDOW.ioba + WINDOW.size
}

fn hcall(hv: &mut Hv, op: u64, a: &[u64]) -> HcallRegs {
    let arg = |i: usize| a.get(i).copied().unwrap_or(0);
    match op {
        H_PUT_TCE | H_STUFF_TCE | H_PUT_TCE_INDIRECT | H_GET_TCE
            if arg(0) != u64::from(WINDOW.liobn) =>
        {
            regs(H_PARAMETER, &[])
        }
        H_PUT_TCE => {
            if !in_window(arg(1), 1) {
                return regs(H_PARAMETER, &[]);
            }
            if arg(2) == 0 {
                hv.tces.remove(&arg(1));
            } else {
                hv.tces.insert(arg(1), arg(2));
            }
            regs(H_SUCCESS, &[])
        }
        H_GET_TCE => regs(H_SUCCESS, &[hv.tces.get(&arg(1)).copied().unwrap_or(0)]),
        H_STUFF_TCE => {
            if !in_window(arg(1), arg(3)) {
                return regs(H_PARAMETER, &[]);
            }
            for p in 0..arg(3) {
                if arg(2) == 0 {
                    hv.tces.remove(&(arg(1) + p * TCE_PAGE_SIZE));
                } else {
                    hv.tces.insert(arg(1) + p * TCE_PAGE_SIZE, arg(2));
                }
            }
            regs(H_SUCCESS, &[])
        }
        H_PUT_TCE_INDIRECT => {
            let (ioba, list, n) = (arg(1), arg(2), arg(3));
            if n > TCE_INDIRECT_MAX as u64
                || !list.is_multiple_of(TCE_PAGE_SIZE)
                || !in_window(ioba, n)
            {
                return regs(H_PARAMETER, &[]);
            }
            for i in 0..n {
                // SAFETY: the list is a pool page vioboot filled with big-endian TCEs.
                let tce =
                    u64::from_be(unsafe { std::ptr::read((list as *const u64).add(i as usize)) });
                hv.tces.insert(ioba + i * TCE_PAGE_SIZE, tce);
            }
            regs(H_SUCCESS, &[])
        }
        H_REG_CRQ => {
            if arg(0) != u64::from(UNIT) {
                return regs(H_PARAMETER, &[]);
            }
            if hv.crq.is_some() {
                return regs(H_RESOURCE, &[]);
            }
            if hv.translate(arg(1), TCE_READ | TCE_WRITE).is_none()
                || arg(2) < TCE_PAGE_SIZE
                || !arg(2).is_multiple_of(TCE_PAGE_SIZE)
            {
                return regs(H_PARAMETER, &[]);
            }
            hv.crq = Some((arg(1), arg(2), 0));
            regs(H_SUCCESS, &[])
        }
        H_FREE_CRQ => {
            hv.crq = None;
            regs(H_SUCCESS, &[])
        }
        H_ENABLE_CRQ | H_VIO_SIGNAL => regs(H_SUCCESS, &[]),
        H_SEND_CRQ => {
            if !hv.server_alive || hv.crq.is_none() {
                return regs(H_CLOSED, &[]);
            }
            hv.to_server.push_back(crq::from_words(arg(1), arg(2)));
            regs(H_SUCCESS, &[])
        }
        _ => regs(H_FUNCTION, &[]),
    }
}

/// A fresh page pool for vioboot (8 MiB of host memory, page aligned; leaked on purpose: the
/// pool's pages must outlive any test that might still hold a pointer).
fn init_pool() {
    let size = 8 << 20;
    let layout = std::alloc::Layout::from_size_align(size, 4096).expect("layout");
    // SAFETY: a non-zero-sized layout.
    let p = unsafe { std::alloc::alloc_zeroed(layout) } as u64;
    assert_ne!(p, 0, "host allocation failed");
    let r = vioboot_core::ranges::Range {
        start: p,
        end: p + size as u64,
    };
    // SAFETY: freshly allocated memory that nothing else uses.
    unsafe { vioboot::mem::init_pool(r) };
}
