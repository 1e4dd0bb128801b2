//! The allocator's own account of the heap, for `/metrics`.
//!
//! The `cvs-operator` binary allocates through jemalloc (see `main.rs`). Its RSS alone cannot
//! tell a leak from memory the allocator keeps for reuse: jemalloc's `stats.allocated` is what
//! the program holds, `stats.resident` what the allocator has in RAM. A soak that sees RSS grow
//! with `allocated` flat has found fragmentation, not a leak.

use tikv_jemalloc_ctl::{epoch, stats};

/// jemalloc's figures, in bytes, as of one refresh of its statistics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeapStats {
    /// Bytes in blocks the program holds.
    pub allocated: u64,
    /// Bytes in pages that hold at least one such block.
    pub active: u64,
    /// Bytes of the allocator's pages resident in RAM, its own metadata included.
    pub resident: u64,
    /// Bytes of virtual memory the allocator keeps mapped but has returned to the kernel.
    pub retained: u64,
}

/// Refreshes jemalloc's statistics and reads them. Costs a few microseconds; meant for a scrape.
pub fn jemalloc_stats() -> Result<HeapStats, tikv_jemalloc_ctl::Error> {
    // jemalloc caches its statistics; advancing the epoch makes it gather them again.
    epoch::advance()?;
    Ok(HeapStats {
        allocated: stats::allocated::read()? as u64,
        active: stats::active::read()? as u64,
        resident: stats::resident::read()? as u64,
        retained: stats::retained::read()? as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::alloc::{GlobalAlloc, Layout};
    use tikv_jemallocator::Jemalloc;

    // The test binary runs on the system allocator, so blocks are taken from jemalloc directly.
    #[test]
    fn a_block_taken_from_jemalloc_is_counted_until_it_is_given_back() {
        const SIZE: usize = 64 << 20;
        let before = jemalloc_stats().expect("jemalloc answers");
        let layout = Layout::from_size_align(SIZE, 4096).unwrap();
        // SAFETY: the layout has a non-zero size; the block is written within it and freed once
        // with the same layout.
        unsafe {
            let block = Jemalloc.alloc(layout);
            assert!(!block.is_null());
            std::ptr::write_bytes(block, 0xa5, SIZE);
            let held = jemalloc_stats().expect("jemalloc answers");
            assert!(
                held.allocated >= before.allocated + SIZE as u64,
                "{before:?} -> {held:?}"
            );
            assert!(held.active >= held.allocated, "{held:?}");
            assert!(held.resident >= SIZE as u64, "{held:?}");
            Jemalloc.dealloc(block, layout);
        }
        let after = jemalloc_stats().expect("jemalloc answers");
        assert!(
            after.allocated < before.allocated + SIZE as u64,
            "{before:?} -> {after:?}"
        );
    }
}
