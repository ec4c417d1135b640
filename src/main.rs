//! The `zhibao` command: parse the command line, set up logging, run the
//! command, and turn its outcome into an exit code.

mod cli;

use std::process::ExitCode;

use clap::Parser;

// mimalloc rather than glibc's malloc: a node allocates and frees small
// buffers per item on every thread (protobuf, HTTP/2 frames, TLS records,
// redb pages), and glibc's arenas spent a tenth of the store writer's time
// in malloc, free and their consolidation (see the README, "Allocator").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args = cli::args::Cli::parse();
    if let Err(e) = zhibao::telemetry::init_with(&cli::log_options(&args)) {
        eprintln!(
            "error: cannot open the log file: {e}; check the directory exists and is writable"
        );
        return ExitCode::FAILURE;
    }
    cli::when::force_utc(args.utc);
    // The node raises its runtime's threads while urgent items are under way
    // (`zhibao::node::boost`): they are registered as they start.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .on_thread_start(zhibao::node::boost::thread_started)
        .on_thread_stop(zhibao::node::boost::thread_stopped)
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cli::run(args.command)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!(
                "{}",
                cli::error_text(&e, cli::when::Lang::of_command_line())
            );
            cli::exit_code(&e)
        }
    }
}
