//! virtio-drivers' `Hal`s. `VioHal`, for virtio-vio and for virtio-pci devices behind a TCE
//! window: every address the device sees is an IOBA in the active adapter's (or host bridge's)
//! TCE window (see `vio::tce::with_window`). Rings are mapped read/write for their lifetime.
//! A shared buffer of up to 4 KiB (request header, status byte, indirect descriptor list, a
//! 4 KiB block) is copied through the window's bounce area, which stays mapped while rings do,
//! and copied back when unshared if the device writes it: no hcall. A longer buffer is mapped
//! in place (read-only or write-only, as its direction says) in the batch of its notify: on
//! virtio-vio its TCEs are put when the transport notifies, with the batch's others (one
//! H_PUT_TCE_INDIRECT per 512 pages), on virtio-pci when it is shared; the batch is cleared
//! with one H_STUFF_TCE once its last buffer is unshared (a batch is what one driver call
//! submits under one notify, so this is before that call returns). Either way, once a batch's
//! buffers are unshared the device reaches none of them, nor any copy of them.

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

/// Maps a ring through the active window for its lifetime.
fn map(addr: u64, len: usize, a: Access) -> PhysAddr {
    let id = tce::active();
    let r = tce::with(id, |w| w.map(RealAddr(addr), len, a));
    match r {
        Ok(Ok(ioba)) => ioba.0,
        // virtio-drivers cannot take an error here, and a request without its buffer mapped
        // must not go out: stop with the reason.
        Ok(Err(e)) | Err(e) => {
            panic!("virtio-vio: cannot map {len} bytes at {addr:#x} in TCE window {id}: {e}")
        }
    }
}

/// Ends a mapping of the active window: a ring's (`back` None, `shared` false) or a shared
/// buffer's, whose bounced copy goes back into `back` if given.
fn unmap(ioba: PhysAddr, len: usize, shared: bool, back: Option<&mut [u8]>) {
    let id = tce::active();
    let r = tce::with(id, |w| {
        if shared {
            w.unshare(Ioba(ioba), len, back)
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
        let ioba = map(p.0, pages * mem::PAGE_SIZE as usize, Access::Both);
        let ptr = NonNull::new(p.0 as *mut u8).unwrap_or(NonNull::dangling());
        (ioba, ptr)
    }

    unsafe fn dma_dealloc(paddr: PhysAddr, vaddr: NonNull<u8>, pages: usize) -> i32 {
        unmap(paddr, pages * mem::PAGE_SIZE as usize, false, None);
        match mem::free_pages(RealAddr(vaddr.as_ptr() as u64), pages) {
            Ok(()) => 0,
            Err(_) => -1,
        }
    }

    unsafe fn mmio_phys_to_virt(paddr: PhysAddr, _size: usize) -> NonNull<u8> {
        panic!("virtio-vio has no MMIO (asked for {paddr:#x})")
    }

    unsafe fn share(buffer: NonNull<[u8]>, direction: BufferDirection) -> PhysAddr {
        // SAFETY: virtio-drivers' contract: `buffer` is valid, non-empty memory that nothing
        // else touches during this call; it is only read here (copied into the bounce area).
        let bytes = unsafe { buffer.as_ref() };
        let id = tce::active();
        match tce::with(id, |w| w.share(bytes, access(direction))) {
            Ok(Ok(ioba)) => ioba.0,
            // As for `map`: a request without its buffer must not go out.
            Ok(Err(e)) | Err(e) => panic!(
                "virtio-vio: cannot share {} bytes at {:p} in TCE window {id}: {e}",
                bytes.len(),
                bytes.as_ptr()
            ),
        }
    }

    unsafe fn unshare(paddr: PhysAddr, buffer: NonNull<[u8]>, direction: BufferDirection) {
        let len = buffer.len();
        let mut buffer = buffer;
        let back = match direction {
            BufferDirection::DriverToDevice => None,
            BufferDirection::DeviceToDriver | BufferDirection::Both => {
                // SAFETY: virtio-drivers' contract as for `share`; a buffer the device writes
                // was given to virtio-drivers as `&mut [u8]`, so writing the device's bytes
                // back into it is what its owner expects.
                Some(unsafe { buffer.as_mut() })
            }
        };
        unmap(paddr, len, true, back);
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
