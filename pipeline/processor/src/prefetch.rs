//! Software prefetch: asks the CPU to load memory the next steps will read, so that
//! several cache misses overlap instead of stalling one after another.
//!
//! The per-event state (dedup slot, session slot, the back of a session's buffer) is
//! spread over a table much larger than the cache; each access is a miss that costs
//! hundreds of nanoseconds here. [`crate::source::PartitionProcessor::process_group`]
//! prefetches a whole group's state before applying the first event of it.

/// Prefetches every cache line of `value` into all cache levels. A hint only:
/// nothing is read, so a stale or freed location costs nothing but the load.
#[inline]
pub(crate) fn lines<T>(value: &T) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let start = std::ptr::from_ref(value).cast::<i8>();
        let size = std::mem::size_of::<T>();
        let mut offset = 0;
        while offset < size {
            // SAFETY: `_mm_prefetch` needs SSE, part of every x86_64 CPU; a prefetch
            // reads nothing and never faults, whatever the address.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(start.wrapping_add(offset)) };
            offset += 64;
        }
        // The last line, when the value starts inside one and ends in another.
        // SAFETY: as above.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(start.wrapping_add(size.saturating_sub(1))) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = value;
}

/// Requests the cache line right after `value` (where the next element of a
/// contiguous buffer goes; prefetching an address never faults, whatever it is).
pub(crate) fn after<T>(value: &T) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let end = std::ptr::from_ref(value)
            .cast::<i8>()
            .wrapping_add(std::mem::size_of::<T>());
        // SAFETY: as in `lines`: a prefetch reads nothing and never faults.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(end) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = value;
}
