// sled and the HTTP stack allocate and free many short-lived buffers from several
// threads; mimalloc keeps that fast and returns memory instead of fragmenting it
// across glibc arenas.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    corral::cli::main()
}
