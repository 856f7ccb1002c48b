// sled and the HTTP stack allocate and free many short-lived buffers from several
// threads; mimalloc keeps that fast and returns memory instead of fragmenting it
// across glibc arenas.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    no_transparent_huge_pages();
    corral::cli::main()
}

/// Opts this process out of transparent huge pages. mimalloc asks for them on its
/// arenas; the kernel's khugepaged then slowly collapses the arenas into 2 MiB pages,
/// filling in the holes the allocator had given back, and a server whose live heap is
/// flat grew by 250 MB over its first quarter hour (the soak benchmark, at
/// `AnonHugePages`). Huge pages buy nothing for a heap of small, short-lived buffers.
fn no_transparent_huge_pages() {
    // SAFETY: PR_SET_THP_DISABLE takes plain integers and touches no memory of ours.
    // Kernels before 3.15 lack it: the server works the same there, with more memory.
    let _ = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
}
