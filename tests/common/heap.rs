//! The process's memory as the kernel sees it, for the memory test and the memory benchmark.

/// A `/proc/self/status` field in KiB (`VmRSS:`, `VmHWM:`).
pub fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[cfg(feature = "mimalloc")]
extern "C" {
    /// mimalloc's collection of freed memory (linked in by the default `mimalloc` feature).
    fn mi_collect(force: bool);
}

/// Returns freed heap pages to the system, as far as the allocator of this build can.
pub fn give_back_free_heap() {
    // SAFETY: both calls only release free heap pages.
    #[cfg(feature = "mimalloc")]
    unsafe {
        mi_collect(true)
    };
    #[cfg(not(feature = "mimalloc"))]
    unsafe {
        libc::malloc_trim(0)
    };
}
