//! A table of zeroed 12-byte slots that grows without copying and without touching
//! its old pages: the dedup table's memory ([`crate::dedup`]).
//!
//! The day's dedup table is the largest piece of state (a 192 MiB table for 10M ids).
//! Grown as a `Vec`, every doubling allocated a fresh table twice the size and moved
//! every id into it: the new pages were all faulted in and zeroed while the old table
//! was still held, so each growth cost a table's worth of page faults and the peak
//! held both tables. On a VM, where a page first touched is also faulted in by the
//! host, those faults were 6-8% of the processor bench. On Linux the table is an
//! anonymous mapping grown with `mremap`: the kernel moves the old pages (no copy,
//! no fault) and the new half is zero pages until written, and the dedup table
//! rehashes in place. Elsewhere it is a `Vec`.

/// One slot: a dedup id's 96 bits (see [`crate::dedup`]), all zero when empty.
/// Three `u32`s rather than a `u128`: 12 bytes with no padding to 16.
pub(crate) type Slot = [u32; 3];

#[cfg(target_os = "linux")]
pub(crate) use mapped::ZeroedSlots;

#[cfg(not(target_os = "linux"))]
pub(crate) use vec::ZeroedSlots;

#[cfg(target_os = "linux")]
mod mapped {
    use std::alloc::{handle_alloc_error, Layout};
    use std::ptr::NonNull;

    use super::Slot;

    /// `len` slots in an anonymous private mapping of their own (none when `len` is
    /// 0).
    pub(crate) struct ZeroedSlots {
        ptr: NonNull<Slot>,
        len: usize,
    }

    // SAFETY: the mapping is owned by this value alone (no other pointer to it
    // exists), like a `Vec<Slot>`'s buffer.
    unsafe impl Send for ZeroedSlots {}
    // SAFETY: as above; shared access only reads.
    unsafe impl Sync for ZeroedSlots {}

    /// The size in bytes of `len` slots; out of memory (as `Vec` would) when it
    /// overflows.
    fn size_of_slots(len: usize) -> usize {
        match Layout::array::<Slot>(len) {
            Ok(layout) => layout.size(),
            Err(_) => handle_alloc_error(Layout::new::<Slot>()),
        }
    }

    fn out_of_memory(len: usize) -> ! {
        handle_alloc_error(Layout::array::<Slot>(len).unwrap_or(Layout::new::<Slot>()))
    }

    /// Huge pages' size and alignment on x86_64 and aarch64 (4 KiB base pages).
    const HUGE_PAGE: usize = 2 << 20;

    /// A new zero-filled read-write mapping of `size` bytes starting on a huge-page
    /// boundary, so that a kernel set to use transparent huge pages everywhere can
    /// back it with them. It is not advised to (`MADV_HUGEPAGE`): on this project's
    /// VM a huge page costs far more to fault in than its 512 small ones (DESIGN.md
    /// section 8), and the advice made the bench's system time 0.9-1.0 s instead of
    /// 0.6 s for no gain in user time.
    fn map_aligned(size: usize, len: usize) -> NonNull<Slot> {
        let Some(padded) = size.checked_add(HUGE_PAGE) else {
            out_of_memory(len);
        };
        // SAFETY: a new anonymous private mapping (no file, no fixed address);
        // failure is checked below.
        let map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                padded,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if map == libc::MAP_FAILED {
            out_of_memory(len);
        }
        let start = map as usize;
        let head = start.next_multiple_of(HUGE_PAGE) - start;
        let aligned = map.cast::<u8>().wrapping_add(head);
        // SAFETY: both ranges lie inside the mapping just made (`head < HUGE_PAGE`),
        // outside the `size` bytes kept; unmapping them touches nothing else.
        unsafe {
            if head > 0 {
                libc::munmap(map, head);
            }
            libc::munmap(aligned.wrapping_add(size).cast(), HUGE_PAGE - head);
        }
        match NonNull::new(aligned.cast::<Slot>()) {
            Some(ptr) => ptr,
            None => out_of_memory(len),
        }
    }

    impl ZeroedSlots {
        /// `len` zeroed slots.
        pub(crate) fn zeroed(len: usize) -> Self {
            if len == 0 {
                return Self {
                    ptr: NonNull::dangling(),
                    len: 0,
                };
            }
            Self {
                ptr: map_aligned(size_of_slots(len), len),
                len,
            }
        }

        /// Grows to `len` slots (not fewer than now): the slots held keep their
        /// values and place, the new ones are zero.
        pub(crate) fn grow(&mut self, len: usize) {
            if len <= self.len {
                return;
            }
            if self.len == 0 {
                *self = Self::zeroed(len);
                return;
            }
            // The grown table is a new aligned mapping whose first part is then
            // replaced by the old pages, moved there (not copied).
            let target = map_aligned(size_of_slots(len), len);
            let old_size = size_of_slots(self.len);
            // SAFETY: moves this value's own mapping (of `self.len` slots) onto the
            // start of `target`, a mapping of ours at least that large; on success
            // the old address is gone and only `target` is used, on failure the old
            // mapping is unchanged and `target` is released.
            let map = unsafe {
                libc::mremap(
                    self.ptr.as_ptr().cast(),
                    old_size,
                    old_size,
                    libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED,
                    target.as_ptr().cast::<libc::c_void>(),
                )
            };
            if map == libc::MAP_FAILED {
                // SAFETY: releases the mapping `map_aligned` just made.
                unsafe { libc::munmap(target.as_ptr().cast(), size_of_slots(len)) };
                out_of_memory(len);
            }
            self.ptr = target;
            self.len = len;
        }

        pub(crate) fn as_slice(&self) -> &[Slot] {
            // SAFETY: `ptr` is a live mapping of `len` slots (or dangling with `len`
            // 0), readable and writable, zero-filled by the kernel where unwritten.
            unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
        }

        pub(crate) fn as_mut_slice(&mut self) -> &mut [Slot] {
            // SAFETY: as in `as_slice`, and `&mut self` makes this the only access.
            unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
        }
    }

    impl Drop for ZeroedSlots {
        fn drop(&mut self) {
            if self.len > 0 {
                // SAFETY: unmaps this value's own mapping, once; nothing refers to
                // it after the drop.
                unsafe { libc::munmap(self.ptr.as_ptr().cast(), size_of_slots(self.len)) };
            }
        }
    }

    impl Clone for ZeroedSlots {
        fn clone(&self) -> Self {
            let mut copy = Self::zeroed(self.len);
            copy.as_mut_slice().copy_from_slice(self.as_slice());
            copy
        }
    }

    impl std::fmt::Debug for ZeroedSlots {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "ZeroedSlots({} slots)", self.len)
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod vec {
    use super::Slot;

    /// `len` slots in a `Vec` (growth copies).
    #[derive(Debug, Clone)]
    pub(crate) struct ZeroedSlots(Vec<Slot>);

    impl ZeroedSlots {
        pub(crate) fn zeroed(len: usize) -> Self {
            Self(vec![[0; 3]; len])
        }

        pub(crate) fn grow(&mut self, len: usize) {
            if len > self.0.len() {
                self.0.resize(len, [0; 3]);
            }
        }

        pub(crate) fn as_slice(&self) -> &[Slot] {
            &self.0
        }

        pub(crate) fn as_mut_slice(&mut self) -> &mut [Slot] {
            &mut self.0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ZeroedSlots;

    #[test]
    fn slots_start_zeroed_and_keep_their_values_through_growth() {
        let mut slots = ZeroedSlots::zeroed(0);
        assert!(slots.as_slice().is_empty());
        slots.grow(3);
        assert_eq!(slots.as_slice(), &[[0; 3]; 3]);
        slots.as_mut_slice()[1] = [7, 8, 9];
        // Large enough that the mapping must move or extend over pages.
        slots.grow(1 << 20);
        assert_eq!(slots.as_slice().len(), 1 << 20);
        assert_eq!(&slots.as_slice()[..3], &[[0; 3], [7, 8, 9], [0; 3]]);
        assert!(slots.as_slice()[3..].iter().all(|&s| s == [0; 3]));
        slots.as_mut_slice()[(1 << 20) - 1] = [u32::MAX; 3];
        let copy = slots.clone();
        slots.grow(10); // never shrinks
        assert_eq!(copy.as_slice(), slots.as_slice());
        assert_eq!(copy.as_slice()[(1 << 20) - 1], [u32::MAX; 3]);
    }
}
