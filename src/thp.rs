//! Transparent huge pages: off for weft's own process unless `MIMALLOC_ALLOW_THP` is set.
//!
//! mimalloc (the default allocator) asks the kernel for transparent huge pages on the
//! memory it maps (`madvise(MADV_HUGEPAGE)`), so under the kernel's usual `madvise` THP
//! mode its arenas come in 2 MiB pages. Each is zeroed whole the first time any byte of it
//! is touched, and counted whole in RSS while only a few request buffers live in it.
//! weft's heap is mostly short-lived buffers (requests, batches, bodies) freed and
//! reused, where huge pages cost memory and buy nothing back. Measured on the benchmarks
//! (README, Performance, *Twelfth session*, alternated with the build before): peak RSS
//! 33 / 33 instead of 38 / 41 MiB at 200,000 spans/s (pinned / unpinned), 76–89 instead
//! of 96–120 MiB on the Elasticsearch path, with CPU per item unchanged within the noise.
//!
//! `MIMALLOC_ALLOW_THP` in the environment (mimalloc's own switch: `1` keeps huge pages,
//! `0` turns them off itself) leaves the choice to mimalloc. The switch is the kernel's
//! per-process `PR_SET_THP_DISABLE` (Linux; elsewhere nothing changes); it also applies
//! to the system allocator of a `--no-default-features` build where the kernel's THP
//! mode is `always`.

/// What [`small_pages`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Thp {
    /// Transparent huge pages are off for this process.
    Disabled,
    /// `MIMALLOC_ALLOW_THP` is set: left to mimalloc.
    LeftToMimalloc,
    /// Not changed: the kernel refused (its errno) or the platform has no such switch (0).
    Unchanged(i32),
}

/// Turns transparent huge pages off for this process unless `MIMALLOC_ALLOW_THP` is set.
/// Call it first thing in `main`: the kernel checks the flag when a page is faulted in, so
/// memory mapped before is covered too, but pages already in place stay as they are.
pub fn small_pages() -> Thp {
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_some() {
        return Thp::LeftToMimalloc;
    }
    disable()
}

#[cfg(target_os = "linux")]
fn disable() -> Thp {
    // SAFETY: PR_SET_THP_DISABLE takes integer arguments only and sets a flag of the
    // calling process; no memory is read or written through them.
    let r = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
    if r == 0 {
        Thp::Disabled
    } else {
        Thp::Unchanged(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
    }
}

#[cfg(not(target_os = "linux"))]
fn disable() -> Thp {
    Thp::Unchanged(0)
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// The flag the kernel reports back: 1 when huge pages are off for this process.
    fn thp_disabled() -> i32 {
        // SAFETY: PR_GET_THP_DISABLE takes integer arguments only and reads a flag.
        unsafe { libc::prctl(libc::PR_GET_THP_DISABLE, 0, 0, 0, 0) }
    }

    #[test]
    fn huge_pages_are_turned_off_for_the_process() {
        assert_eq!(disable(), Thp::Disabled);
        assert_eq!(thp_disabled(), 1);
    }
}
