//! The server's global allocator: the system allocator with a cache of
//! small freed blocks in front, split into shards so that threads rarely
//! wait for one another.
//!
//! Why: the static binaries link musl, whose malloc takes one process-wide
//! lock. A server with a thread per connection allocates a few dozen small
//! blocks per request, and under load its threads spend more time queuing
//! for that lock (futex wake-ups) than working — measured with `perf`, and
//! the same code runs about twice as fast on glibc's per-thread arenas.
//!
//! How: blocks of up to `MAX_SMALL` bytes are rounded up to a multiple of
//! 16 (one size class each). A freed block is kept on its class's list in
//! one of `SHARDS` shards, each behind its own lock; an allocation takes a
//! block from its thread's shard when there is one, else from the system.
//! Each thread is given a shard once (round robin, in a `const` thread
//! local, so nothing is registered or allocated for it), so two threads
//! meet at a lock only when they share a shard and allocate at the same
//! instant. A block may be freed on another thread than the one that
//! allocated it: it then lands in that thread's shard, which is fine —
//! blocks of one class are interchangeable. Nothing is lost when a thread
//! ends (the shards are global), and the cache is bounded (`KEEP` blocks
//! per class and shard; beyond that blocks go back to the system): at
//! most `SHARDS × KEEP` blocks of each class, 8 × 32 × (16 + 32 + … + 256)
//! = 557,056 bytes, are held.
//!
//! The shards' locks are std's `Mutex`, which on Linux is a futex word and
//! never allocates — an allocator that allocated while taking its own lock
//! would recurse. A poisoned lock (a panic cannot happen inside, but
//! still) makes the block go to or come from the system instead.
//!
//! Measured side by side (`tests/bench/allocators.py`, 2026-12-05, two
//! cores, the static server with 1,000 hosts, cached `/nic/update`
//! through wrk, medians of three alternating rounds; throughput relative
//! to this allocator):
//!
//! | allocator | keep-alive | new connection | RSS idle / after load / peak | binary |
//! |---|---|---|---|---|
//! | this one | 1.00 (p99 1.5 ms) | 1.00 (p99 2.0 ms) | 3.7 / 6.0 / 10.9 MiB | 3.35 MB |
//! | musl's malloc | 0.71 (p99 1.9 ms) | 0.85 (p99 2.4 ms) | 3.7 / 5.7 / 10.7 MiB | −12 KB |
//! | mimalloc | 1.87 (p99 0.5 ms) | 1.64 (p99 0.9 ms) | 20.7 / 72.7 / 180.8 MiB | +104 KB |
//!
//! mimalloc is faster, but its per-thread heaps cost a thread-per-
//! connection server 5.6 times the memory idle and 17 times at the peak
//! (a small VPS or router shares its RAM), and it adds C to the build;
//! musl's malloc alone loses a third of the throughput. This allocator
//! keeps musl's memory and most of the speed.
//!
//! Blocks larger than `MAX_SMALL` or aligned to more than 16 bytes go
//! straight to the system allocator, as does everything in a build where
//! the cache is not wanted. The free lists are intrusive (the first word of
//! a free block points to the next), so keeping a block costs no memory.
#![allow(unsafe_code)] // A global allocator is unsafe by nature; this is all of it.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::ptr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// Largest block kept in the cache.
pub const MAX_SMALL: usize = 256;
/// Size classes are multiples of this (also the alignment malloc gives).
const GRAIN: usize = 16;
const CLASSES: usize = MAX_SMALL / GRAIN;
/// Shards: more than the cores of a small VPS, few enough to stay small.
pub const SHARDS: usize = 8;
/// Blocks kept per class and shard.
pub const KEEP: usize = 32;

/// One class's free blocks in one shard: an intrusive list.
#[derive(Clone, Copy)]
struct FreeList {
    head: *mut u8,
    len: usize,
}

// The pointers are only touched under the shard's lock.
unsafe impl Send for FreeList {}

struct Shard {
    lists: Mutex<[FreeList; CLASSES]>,
}

/// The allocator; use as `#[global_allocator] static A: Sharded = Sharded::new();`.
pub struct Sharded {
    shards: [Shard; SHARDS],
}

impl Default for Sharded {
    fn default() -> Self {
        Self::new()
    }
}

thread_local! {
    /// This thread's shard, `usize::MAX` until first use.
    static SHARD: Cell<usize> = const { Cell::new(usize::MAX) };
}

static NEXT_SHARD: AtomicUsize = AtomicUsize::new(0);

fn my_shard() -> usize {
    // `try_with`: during a thread's teardown the slot may be gone.
    SHARD
        .try_with(|s| {
            let mut i = s.get();
            if i == usize::MAX {
                i = NEXT_SHARD.fetch_add(1, Ordering::Relaxed) % SHARDS;
                s.set(i);
            }
            i
        })
        .unwrap_or(0)
}

/// The class of a small layout, if it is one the cache keeps.
fn class(layout: Layout) -> Option<usize> {
    (layout.size() <= MAX_SMALL && layout.align() <= GRAIN).then(|| layout.size().max(1).div_ceil(GRAIN) - 1)
}

/// The layout the system allocator sees for blocks of `class`.
fn class_layout(class: usize) -> Layout {
    // Sizes 16..=256 with alignment 16 are always valid layouts.
    unsafe { Layout::from_size_align_unchecked((class + 1) * GRAIN, GRAIN) }
}

impl Sharded {
    pub const fn new() -> Sharded {
        const EMPTY: FreeList = FreeList { head: ptr::null_mut(), len: 0 };
        Sharded { shards: [const { Shard { lists: Mutex::new([EMPTY; CLASSES]) } }; SHARDS] }
    }

    /// Blocks held in the cache now (for tests and curiosity).
    pub fn cached(&self) -> usize {
        self.shards.iter().map(|s| s.lists.lock().map(|l| l.iter().map(|f| f.len).sum::<usize>()).unwrap_or(0)).sum()
    }
}

unsafe impl GlobalAlloc for Sharded {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let Some(c) = class(layout) else { return unsafe { System.alloc(layout) } };
        if let Ok(mut lists) = self.shards[my_shard()].lists.lock() {
            let list = &mut lists[c];
            if !list.head.is_null() {
                let block = list.head;
                // The first word of a free block holds the next one.
                list.head = unsafe { block.cast::<*mut u8>().read() };
                list.len -= 1;
                return block;
            }
        }
        unsafe { System.alloc(class_layout(c)) }
    }

    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        let Some(c) = class(layout) else { return unsafe { System.dealloc(block, layout) } };
        if let Ok(mut lists) = self.shards[my_shard()].lists.lock() {
            let list = &mut lists[c];
            if list.len < KEEP {
                unsafe { block.cast::<*mut u8>().write(list.head) };
                list.head = block;
                list.len += 1;
                return;
            }
        }
        unsafe { System.dealloc(block, class_layout(c)) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        match class(layout) {
            // Large blocks: calloc, which takes fresh pages from the kernel
            // already zeroed instead of writing them.
            None => unsafe { System.alloc_zeroed(layout) },
            Some(_) => {
                let block = unsafe { self.alloc(layout) };
                if !block.is_null() {
                    unsafe { ptr::write_bytes(block, 0, layout.size()) };
                }
                block
            }
        }
    }

    unsafe fn realloc(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        match (class(layout), class(new_layout)) {
            // Both large: the system moves (or grows) it itself.
            (None, None) => unsafe { System.realloc(block, layout, new_size) },
            // The same class: the block already has room.
            (Some(a), Some(b)) if a == b => block,
            _ => {
                let new = unsafe { self.alloc(new_layout) };
                if !new.is_null() {
                    unsafe {
                        ptr::copy_nonoverlapping(block, new, layout.size().min(new_size));
                        self.dealloc(block, layout);
                    }
                }
                new
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_round_up_to_sixteen_and_stop_at_the_limit() {
        let l = |size, align| Layout::from_size_align(size, align).expect("layout");
        assert_eq!(class(l(0, 1)), Some(0));
        assert_eq!(class(l(1, 1)), Some(0));
        assert_eq!(class(l(16, 8)), Some(0));
        assert_eq!(class(l(17, 8)), Some(1));
        assert_eq!(class(l(256, 16)), Some(15));
        assert_eq!(class(l(257, 8)), None);
        assert_eq!(class(l(64, 32)), None, "over-aligned blocks go to the system");
    }

    #[test]
    fn zeroed_blocks_are_zero_also_when_they_come_from_the_cache() {
        static A: Sharded = Sharded::new();
        for size in [48, 4096] {
            let layout = Layout::from_size_align(size, 8).expect("layout");
            unsafe {
                let dirty = A.alloc(layout);
                ptr::write_bytes(dirty, 0xAB, size);
                A.dealloc(dirty, layout);
                let clean = A.alloc_zeroed(layout);
                assert!(!clean.is_null());
                assert!(std::slice::from_raw_parts(clean, size).iter().all(|&b| b == 0), "{size} bytes");
                A.dealloc(clean, layout);
            }
        }
    }

    #[test]
    fn blocks_survive_threads_sizes_reallocs_and_cross_thread_frees() {
        static A: Sharded = Sharded::new();
        let layout = |n: usize| Layout::from_size_align(n, 8).expect("layout");
        let (tx, rx) = std::sync::mpsc::channel::<Vec<(usize, usize, u8)>>();
        let workers: Vec<_> = (0..8)
            .map(|t: usize| {
                let tx = tx.clone();
                std::thread::spawn(move || {
                    let mut rng = (t as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
                    let mut next = move || {
                        rng ^= rng << 13;
                        rng ^= rng >> 7;
                        rng ^= rng << 17;
                        rng as usize
                    };
                    let mut live: Vec<(usize, usize, u8)> = Vec::new();
                    for i in 0..20_000 {
                        let size = 1 + next() % 400;
                        let fill = (i % 251) as u8;
                        let p = unsafe { A.alloc(layout(size)) };
                        assert!(!p.is_null());
                        unsafe { ptr::write_bytes(p, fill, size) };
                        live.push((p as usize, size, fill));
                        if next() % 3 == 0 {
                            let k = next() % live.len();
                            let (p, size, fill) = live.swap_remove(k);
                            // Grow or shrink it, and check the contents came along.
                            let new_size = 1 + next() % 400;
                            let q = unsafe { A.realloc(p as *mut u8, layout(size), new_size) };
                            let kept = size.min(new_size);
                            let ok = (0..kept).all(|j| unsafe { *q.add(j) } == fill);
                            assert!(ok, "contents lost in realloc {size} -> {new_size}");
                            unsafe { ptr::write_bytes(q, fill, new_size) };
                            live.push((q as usize, new_size, fill));
                        }
                        if live.len() > 200 {
                            let (p, size, fill) = live.swap_remove(next() % live.len());
                            let ok = (0..size).all(|j| unsafe { *(p as *const u8).add(j) } == fill);
                            assert!(ok, "a block was overwritten");
                            unsafe { A.dealloc(p as *mut u8, layout(size)) };
                        }
                    }
                    // Half of what is left is freed by another thread.
                    let handed = live.split_off(live.len() / 2);
                    tx.send(handed).expect("send");
                    for (p, size, _) in live {
                        unsafe { A.dealloc(p as *mut u8, layout(size)) };
                    }
                })
            })
            .collect();
        drop(tx);
        for w in workers {
            w.join().expect("worker");
        }
        for batch in rx {
            for (p, size, fill) in batch {
                let ok = (0..size).all(|j| unsafe { *(p as *const u8).add(j) } == fill);
                assert!(ok, "a block handed over was overwritten");
                unsafe { A.dealloc(p as *mut u8, layout(size)) };
            }
        }
        assert!(A.cached() <= SHARDS * CLASSES * KEEP, "the cache is bounded");
    }
}
