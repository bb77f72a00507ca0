//! The `storecast` binary; everything lives in the library, see [`storecast::cli`].

fn main() -> std::process::ExitCode {
    storecast::cli::main()
}
