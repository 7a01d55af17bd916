//! The `chatapp` binary: parses the command line and hands over to the
//! library. With no subcommand it is the client, so that a double-clicked
//! executable does what a person expects; and when it is alone on its
//! console (a double-click on Windows), it waits for Enter before the
//! window closes, so the last message can be read.

use chatapp::{client, pause, server};
use clap::{Parser, Subcommand};

/// The static Linux build links musl, whose allocator is slow for a server
/// (see Cargo.toml); the other builds keep their C library's.
#[cfg(target_env = "musl")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    version,
    about = "Terminal chat: rooms and private messages, encrypted, every message kept"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Close at once on exit, even in a console window of its own (where
    /// chatapp otherwise waits for Enter, as after a double-click on
    /// Windows).
    #[arg(long, global = true)]
    no_pause: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Run the chat server.
    Serve(server::args::ServeArgs),
    /// Connect to a chat server (the default when no command is given).
    Connect(client::ConnectArgs),
}

fn main() -> std::process::ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // --help, --version and mistakes, said before closing.
        Err(e) => {
            let _ = e.print();
            let no_pause = std::env::args_os().any(|a| a == "--no-pause");
            pause::at_exit(no_pause);
            return std::process::ExitCode::from(e.exit_code().clamp(0, 255) as u8);
        }
    };
    let no_pause = cli.no_pause;
    if let Some(Command::Serve(_)) = &cli.command {
        // The server's lines go to stderr; the client draws on the
        // terminal, where a log line would tear its screen.
        server::log::install(server::log::level_from_env());
    }
    // A panic has printed its message already; it too waits for Enter.
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match cli.command {
        Some(Command::Serve(args)) => server::args::run(args).map_err(anyhow::Error::from),
        Some(Command::Connect(args)) => client::run(args).map_err(anyhow::Error::from),
        None => client::run(client::ConnectArgs::default()).map_err(anyhow::Error::from),
    }));
    let code = match result {
        Ok(Ok(())) => std::process::ExitCode::SUCCESS,
        Ok(Err(e)) => {
            eprintln!("chatapp: {e:#}");
            std::process::ExitCode::FAILURE
        }
        Err(_) => std::process::ExitCode::from(101),
    };
    pause::at_exit(no_pause);
    code
}
