//! `tapit`: the Tapitalee command line, a thin layer over the `tapitalee` facade. Parsing
//! (clap, `key=value` words), configuration (`tapit.toml`), rendering, exit codes and process
//! management (the detached deployer, cross-process control) live here; deployment logic lives
//! in the library.

mod cli;
mod commands;
mod config;
mod control;
mod exit;
mod platform;
mod render;
mod store;
mod words;

use clap::Parser;

use crate::cli::Cli;
use crate::exit::{CliError, code};
use crate::render::Out;

/// mimalloc rather than glibc's malloc: the engine's tasks move between tokio's worker threads,
/// and glibc takes an arena lock (often a futex wake-up) each time one thread frees what another
/// allocated. At 1,000 processes that was ~12 % of the run (`cargo bench --bench fanout`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // Help and version go to stdout with 0; usage errors to stderr with 2.
            let _ = e.print();
            std::process::exit(if e.use_stderr() {
                code::USAGE
            } else {
                code::OK
            });
        }
    };
    if let Some(code) = commands::reexec_for_profile(&cli.global) {
        std::process::exit(code);
    }
    let out = Out::new(cli.global.output);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            out.error(&format!("cannot start the async runtime: {e}"));
            std::process::exit(code::ERROR);
        }
    };
    let result = runtime.block_on(commands::run(cli, out));
    // Background tasks (control watchers, log followers) end with the runtime.
    runtime.shutdown_background();
    std::process::exit(finish(&out, result));
}

/// The one place errors become messages and exit codes.
fn finish(out: &Out, result: Result<(), CliError>) -> i32 {
    match result {
        Ok(()) => code::OK,
        // Outcomes were rendered by the command; only the code is left to give.
        Err(e @ (CliError::Outcome(_) | CliError::Interrupted)) => e.code(),
        Err(e) => {
            if out.json() {
                out.json_value(&serde_json::json!({
                    "error": e.to_string(),
                    "exit_code": e.code(),
                }));
            }
            out.error(&e.to_string());
            e.code()
        }
    }
}
