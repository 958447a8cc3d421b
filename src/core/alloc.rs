//! How the process's allocator returns memory.
//!
//! glibc raises its mmap threshold to the size of the largest block freed
//! (up to 32 MiB): after the first 1 MiB buffers of unpacking are freed,
//! later ones come from the heaps of the threads' arenas, which keep them.
//! A build's threads (read-ahead, decoders, deflate, speculative passes)
//! each leave such memory behind, and the peak RSS becomes their sum
//! instead of the largest phase's. A fixed threshold keeps every large
//! buffer in its own mapping, returned when it is freed.

/// Allocations from this size get their own mapping.
const MMAP_THRESHOLD: i32 = 512 << 10;

/// Sets the allocator's mmap threshold (see the module docs). Call once,
/// early; best effort (other allocators ignore it).
pub fn tune() {
    // SAFETY: mallopt only changes a malloc parameter.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
    }
}
