//! Translation control entries: what a VIO adapter's DMA window maps, page by page.
//!
//! A TCE holds the real address of a page in its upper bits and the device's permissions in the
//! lowest two; a TCE of 0 maps nothing.

/// TCE bit: the device may read the page.
pub const TCE_READ: u64 = 1;
/// TCE bit: the device may write the page.
pub const TCE_WRITE: u64 = 2;
/// Bytes a TCE maps: the unit of a window's IOBAs.
pub const TCE_PAGE_SIZE: u64 = 4096;
/// Most entries one H_PUT_TCE_INDIRECT takes (one 4 KiB page of TCEs).
pub const TCE_INDIRECT_MAX: usize = 512;

// An indirect list is one page of 8-byte TCEs.
const _: () = assert!(TCE_INDIRECT_MAX as u64 * 8 == TCE_PAGE_SIZE);
