//! Keeping Argon2's working memory from ratcheting up the process's RSS.
//!
//! Each verification allocates 19 MiB. glibc serves such a block with
//! `mmap`, but after it is freed glibc raises its mmap threshold to that size
//! and serves the next ones from the heap, which it rarely gives back: RSS
//! then keeps one 19 MiB block per thread that ever verified. Pinning the
//! threshold keeps large blocks mmapped, so each is returned on free.

/// Call once at start-up, before other threads exist.
pub fn return_large_blocks_to_the_os() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets a malloc tunable; called before any other
    // thread is started, as glibc requires for consistent behaviour.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}
