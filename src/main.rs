//! The `switchyard` binary: see `switchyard --help`.

#![forbid(unsafe_code)]

mod cli;

fn main() -> std::process::ExitCode {
    // mimalloc is built to be the process's `malloc` (its `override`
    // feature), and Rust's default allocator calls `malloc` for any
    // alignment up to 16, which is nearly every allocation. As
    // `#[global_allocator]`, mimalloc's crate sent every allocation
    // through `mi_malloc_aligned`, whose path for blocks over 1 KB of a
    // size that is not a power of two over-allocates and searches (a
    // `HeaderMap` of 7–12 fields, tokio's task cells): 890 instructions
    // a proxied request, 2,830 one on a connection of its own
    // (bench/RESULTS.md). Asking its version references mimalloc's one
    // object file, so the linker cannot leave it, and its `malloc`, out.
    let _ = mimalloc::MiMalloc.version();
    cli::main()
}
