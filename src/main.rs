//! The `storecast` binary; everything lives in the library, see [`storecast::cli`].

/// mimalloc rather than the system allocator: a request's spans, fields and messages are
/// many small allocations, which glibc's allocator made a tenth of the gateway's CPU
/// (measured in BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    storecast::cli::main()
}
