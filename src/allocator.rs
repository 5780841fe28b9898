//! The process's allocator: mimalloc for a request's many small blocks,
//! glibc for Argon2's 19 MiB working memory.
//!
//! A warm request makes about 1 200 allocations (most of them the AWS
//! SDK's); glibc's `malloc`/`free` spent about 260 instructions on each, a
//! fifth of the request, mimalloc's thread-local free lists a fraction of
//! that (docs/measurements.md, issue 27). Blocks of [`LARGE`] and more stay
//! with glibc, whose behaviour for them is measured and pinned below: each
//! is its own `mmap`, returned to the OS on `free`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::ffi::c_void;

use libmimalloc_sys as mi;

/// From this size on a block is glibc's (Argon2's 19 MiB; nothing of a
/// request comes close).
pub const LARGE: usize = 1 << 20;

/// Every mimalloc block is a multiple of a word from a word-aligned start,
/// so up to this alignment the plain calls do; above it, the aligned ones.
const WORD: usize = std::mem::size_of::<usize>();

/// mimalloc below [`LARGE`], glibc from it on. Which allocator owns a block
/// follows from its size alone, and `dealloc`/`realloc` are given the size
/// it was allocated with, so a block always goes back where it came from.
pub struct Allocator;

fn is_large(size: usize) -> bool {
    size >= LARGE
}

// SAFETY: every method forwards to an allocator chosen by the block's size,
// which is the same at allocation and release (GlobalAlloc's contract), so
// each block is released by the allocator that made it; mimalloc's plain
// calls are used only where their word alignment is enough; the move
// across the threshold in `realloc` copies min(old, new) bytes between two
// live blocks.
unsafe impl GlobalAlloc for Allocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        match (is_large(layout.size()), layout.align() <= WORD) {
            (true, _) => System.alloc(layout),
            (false, true) => mi::mi_malloc(layout.size()).cast(),
            (false, false) => mi::mi_malloc_aligned(layout.size(), layout.align()).cast(),
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        match (is_large(layout.size()), layout.align() <= WORD) {
            (true, _) => System.alloc_zeroed(layout),
            (false, true) => mi::mi_zalloc(layout.size()).cast(),
            (false, false) => mi::mi_zalloc_aligned(layout.size(), layout.align()).cast(),
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if is_large(layout.size()) {
            System.dealloc(ptr, layout)
        } else {
            mi::mi_free(ptr.cast::<c_void>())
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        match (is_large(layout.size()), is_large(new_size)) {
            (false, false) if layout.align() <= WORD => {
                mi::mi_realloc(ptr.cast::<c_void>(), new_size).cast()
            }
            (false, false) => {
                mi::mi_realloc_aligned(ptr.cast::<c_void>(), new_size, layout.align()).cast()
            }
            (true, true) => System.realloc(ptr, layout, new_size),
            _ => {
                // SAFETY: GlobalAlloc::realloc's caller guarantees new_size,
                // rounded up to the alignment, does not overflow isize.
                let new_layout = Layout::from_size_align_unchecked(new_size, layout.align());
                let new = self.alloc(new_layout);
                if !new.is_null() {
                    std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                    self.dealloc(ptr, layout);
                }
                new
            }
        }
    }
}

/// mimalloc for every block, as the `mimalloc` crate's `MiMalloc` does
/// (its calls, one for one): what [`Allocator`] is measured against
/// (feature `bench-mimalloc-only`; docs/measurements.md, "Allocators").
#[cfg(feature = "bench-mimalloc-only")]
pub struct MimallocOnly;

// SAFETY: every block is mimalloc's, and each call passes the layout's
// alignment, as mimalloc's aligned API requires.
#[cfg(feature = "bench-mimalloc-only")]
unsafe impl GlobalAlloc for MimallocOnly {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        mi::mi_malloc_aligned(layout.size(), layout.align()).cast()
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        mi::mi_zalloc_aligned(layout.size(), layout.align()).cast()
    }

    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        mi::mi_free(ptr.cast::<c_void>())
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        mi::mi_realloc_aligned(ptr.cast::<c_void>(), new_size, layout.align()).cast()
    }
}

/// Keeps Argon2's working memory from ratcheting up the process's RSS.
///
/// Each verification allocates 19 MiB (glibc's, see [`Allocator`]). glibc
/// serves such a block with `mmap`, but after it is freed glibc raises its
/// mmap threshold to that size and serves the next ones from the heap, which
/// it rarely gives back: RSS then keeps one 19 MiB block per thread that ever
/// verified. Pinning the threshold keeps large blocks mmapped, so each is
/// returned on free.
///
/// Call once at start-up, before other threads exist.
pub fn return_large_blocks_to_the_os() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets a malloc tunable; called before any other
    // thread is started, as glibc requires for consistent behaviour.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Blocks that grow and shrink across the threshold keep their bytes
    /// and go back to the allocator that made them (a wrong one would
    /// abort the test process).
    #[test]
    fn blocks_crossing_the_threshold_keep_their_contents() {
        for (from, to) in [
            (16, LARGE + 8),
            (LARGE - 1, LARGE),
            (LARGE, LARGE - 1),
            (LARGE * 3, 64),
            (100, 200),
            (LARGE, LARGE * 2),
        ] {
            let mut v: Vec<u8> = (0..from).map(|i| (i % 251) as u8).collect();
            if to > from {
                v.reserve_exact(to - from);
                v.extend((from..to).map(|i| (i % 251) as u8));
            } else {
                v.truncate(to);
                v.shrink_to_fit();
            }
            assert_eq!(v.len(), to);
            assert!(v.iter().enumerate().all(|(i, b)| *b == (i % 251) as u8));
        }
        let zeroed = vec![0u8; LARGE + 1];
        assert!(zeroed.iter().all(|b| *b == 0));
    }

    /// Every alignment a layout may ask for is kept, on either side of
    /// the word and of the threshold, through growth and shrinking, and
    /// the bytes with it.
    #[test]
    fn every_alignment_is_kept() {
        let aligned =
            |ptr: *mut u8, align: usize| !ptr.is_null() && (ptr as usize).is_multiple_of(align);
        for align in [1, 2, 4, 8, 16, 32, 64, 4096] {
            for size in [1, 7, 8, 24, 100, 4096, LARGE - 1, LARGE] {
                let layout = Layout::from_size_align(size, align).unwrap();
                let (grown, shrunk) = (size * 2 + 8, size / 2 + 1);
                // SAFETY: non-zero sizes; each block is released with the
                // layout it has at that point.
                unsafe {
                    let zeroed = Allocator.alloc_zeroed(layout);
                    assert!(aligned(zeroed, align), "{size} {align}");
                    assert!(std::slice::from_raw_parts(zeroed, size)
                        .iter()
                        .all(|b| *b == 0));
                    Allocator.dealloc(zeroed, layout);

                    let ptr = Allocator.alloc(layout);
                    assert!(aligned(ptr, align), "{size} {align}");
                    std::ptr::write_bytes(ptr, 0xa5, size);
                    let ptr = Allocator.realloc(ptr, layout, grown);
                    assert!(aligned(ptr, align), "{size} {align} grown");
                    let layout = Layout::from_size_align(grown, align).unwrap();
                    let ptr = Allocator.realloc(ptr, layout, shrunk);
                    assert!(aligned(ptr, align), "{size} {align} shrunk");
                    let kept = std::slice::from_raw_parts(ptr, shrunk);
                    assert!(kept.iter().all(|b| *b == 0xa5), "{size} {align}");
                    Allocator.dealloc(ptr, Layout::from_size_align(shrunk, align).unwrap());
                }
            }
        }
    }

    #[test]
    fn the_threshold_is_inclusive() {
        assert!(!is_large(LARGE - 1));
        assert!(is_large(LARGE));
    }
}
