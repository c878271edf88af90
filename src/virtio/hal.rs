//! virtio-drivers' `Hal`s. `VioHal`, for virtio-vio and for virtio-pci devices behind a TCE
//! window: every address the device sees is an IOBA in the active
//! adapter's (or host bridge's) TCE window (see `vio::tce::with_window`). Rings are mapped read/write for their
//! lifetime; each buffer is mapped when shared (read-only or write-only, as its direction says)
//! and unmapped when unshared, so after a request nothing stays reachable.

use crate::hcall::{Ioba, RealAddr};
use crate::mem;
use crate::vio::tce::{self, Access};
use core::ptr::NonNull;
use virtio_drivers::{BufferDirection, Hal, PhysAddr};

/// The `Hal` of every virtio-vio device.
pub struct VioHal;

fn access(d: BufferDirection) -> Access {
    match d {
        BufferDirection::DriverToDevice => Access::DeviceReads,
        BufferDirection::DeviceToDriver => Access::DeviceWrites,
        BufferDirection::Both => Access::Both,
    }
}

/// Maps through the active window: a ring for its lifetime (`shared` false) or a request's
/// buffer until it is unshared (`shared` true).
fn map(addr: u64, len: usize, a: Access, shared: bool) -> PhysAddr {
    let id = tce::active();
    let r = tce::with(id, |w| {
        if shared {
            w.share(RealAddr(addr), len, a)
        } else {
            w.map(RealAddr(addr), len, a)
        }
    });
    match r {
        Ok(Ok(ioba)) => ioba.0,
        // virtio-drivers cannot take an error here, and a request without its buffer mapped
        // must not go out: stop with the reason.
        Ok(Err(e)) | Err(e) => {
            panic!("virtio-vio: cannot map {len} bytes at {addr:#x} in TCE window {id}: {e}")
        }
    }
}

fn unmap(ioba: PhysAddr, len: usize, shared: bool) {
    let id = tce::active();
    let r = tce::with(id, |w| {
        if shared {
            w.unshare(Ioba(ioba), len)
        } else {
            w.unmap(Ioba(ioba), len)
        }
    });
    match r {
        Ok(Ok(())) => {}
        // Leaving memory reachable by the device is not acceptable either.
        Ok(Err(e)) | Err(e) => {
            panic!("virtio-vio: cannot unmap IOBA {ioba:#x} in TCE window {id}: {e}")
        }
    }
}

// SAFETY: dma_alloc returns zeroed, page-aligned pool pages that nothing else uses until
// dma_dealloc; the addresses handed to the device are IOBAs that map exactly those pages.
unsafe impl Hal for VioHal {
    fn dma_alloc(pages: usize, _direction: BufferDirection) -> (PhysAddr, NonNull<u8>) {
        let Some(p) = mem::alloc_pages(pages) else {
            panic!(
                "virtio-vio: DMA page pool exhausted ({pages} pages wanted, {:?} used/total)",
                mem::pool_usage()
            )
        };
        let ioba = map(p.0, pages * mem::PAGE_SIZE as usize, Access::Both, false);
        let ptr = NonNull::new(p.0 as *mut u8).unwrap_or(NonNull::dangling());
        (ioba, ptr)
    }

    unsafe fn dma_dealloc(paddr: PhysAddr, vaddr: NonNull<u8>, pages: usize) -> i32 {
        unmap(paddr, pages * mem::PAGE_SIZE as usize, false);
        match mem::free_pages(RealAddr(vaddr.as_ptr() as u64), pages) {
            Ok(()) => 0,
            Err(_) => -1,
        }
    }

    unsafe fn mmio_phys_to_virt(paddr: PhysAddr, _size: usize) -> NonNull<u8> {
        panic!("virtio-vio has no MMIO (asked for {paddr:#x})")
    }

    unsafe fn share(buffer: NonNull<[u8]>, direction: BufferDirection) -> PhysAddr {
        map(
            buffer.as_ptr() as *mut u8 as u64,
            buffer.len(),
            access(direction),
            true,
        )
    }

    unsafe fn unshare(paddr: PhysAddr, buffer: NonNull<[u8]>, _direction: BufferDirection) {
        unmap(paddr, buffer.len(), true);
    }
}

/// The `Hal` of a device that reaches memory by real address (a virtio-pci device without
/// VIRTIO_F_ACCESS_PLATFORM): pool pages for rings, buffers as they are; nothing to map.
pub struct RealHal;

// SAFETY: dma_alloc returns zeroed, page-aligned pool pages that nothing else uses until
// dma_dealloc, and their real address is what such a device uses; shared buffers are given
// by their real address (vioboot runs in real mode: addresses are real).
unsafe impl Hal for RealHal {
    fn dma_alloc(pages: usize, _direction: BufferDirection) -> (PhysAddr, NonNull<u8>) {
        let Some(p) = mem::alloc_pages(pages) else {
            panic!(
                "virtio: DMA page pool exhausted ({pages} pages wanted, {:?} used/total)",
                mem::pool_usage()
            )
        };
        let ptr = NonNull::new(p.0 as *mut u8).unwrap_or(NonNull::dangling());
        (p.0, ptr)
    }

    unsafe fn dma_dealloc(_paddr: PhysAddr, vaddr: NonNull<u8>, pages: usize) -> i32 {
        match mem::free_pages(RealAddr(vaddr.as_ptr() as u64), pages) {
            Ok(()) => 0,
            Err(_) => -1,
        }
    }

    unsafe fn mmio_phys_to_virt(paddr: PhysAddr, _size: usize) -> NonNull<u8> {
        panic!("virtio-pci registers are reached through hcalls (asked for {paddr:#x})")
    }

    unsafe fn share(buffer: NonNull<[u8]>, _direction: BufferDirection) -> PhysAddr {
        buffer.as_ptr() as *mut u8 as u64
    }

    unsafe fn unshare(_paddr: PhysAddr, _buffer: NonNull<[u8]>, _direction: BufferDirection) {}
}
