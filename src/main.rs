//! The `chatapp` binary: parses the command line and hands over to the
//! library. With no subcommand it is the client, so that a double-clicked
//! executable does what a person expects.

use chatapp::{client, server};
use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    version,
    about = "Terminal chat: rooms and private messages, encrypted, every message kept"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the chat server.
    Serve(ServeArgs),
    /// Connect to a chat server (the default when no command is given).
    Connect(client::ConnectArgs),
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum SyncMode {
    Full,
    Normal,
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:7878", value_name = "ADDR")]
    listen: String,
    /// Where the database, the server key and the lock file live
    /// [default: the platform's data directory].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Print the server key's fingerprint and exit.
    #[arg(long)]
    fingerprint: bool,
    /// How commits reach the disk: `full` survives power loss (default);
    /// `normal` survives a crash of chatapp but may lose the last moments
    /// before a power loss, and is faster on slow disks.
    #[arg(long, value_enum, default_value = "full", value_name = "MODE")]
    sync: SyncMode,
    /// Connections one address may hold at once (loopback is exempt).
    #[arg(long, default_value_t = 16, value_name = "N")]
    max_per_address: usize,
    /// scrypt cost as log2(N), 1 to 20 [default: 17]. Lower it only for tests.
    #[arg(long, value_name = "LOG_N", value_parser = clap::value_parser!(u8).range(1..=20), hide = true)]
    scrypt_log_n: Option<u8>,
    /// Seconds a client has to log in [default: 10].
    #[arg(long, value_name = "SECS", hide = true)]
    login_timeout: Option<f64>,
    /// Seconds of silence before a client is pinged [default: 60].
    #[arg(long, value_name = "SECS", hide = true)]
    idle_ping: Option<f64>,
    /// Seconds of silence before a client is dropped [default: 120].
    #[arg(long, value_name = "SECS", hide = true)]
    idle_close: Option<f64>,
}

fn millis(secs: f64) -> i64 {
    (secs * 1000.0).round() as i64
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Serve(args)) => serve(args),
        Some(Command::Connect(args)) => client::run(args),
        None => client::run(client::ConnectArgs::default()),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("chatapp: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let data_dir = match args.data_dir {
        Some(dir) => dir,
        None => server::default_data_dir()?,
    };
    if args.fingerprint {
        println!("{}", server::fingerprint(&data_dir)?);
        return Ok(());
    }
    let mut config = server::Config::new(data_dir);
    config.sync = match args.sync {
        SyncMode::Full => chatapp::store::Sync::Full,
        SyncMode::Normal => chatapp::store::Sync::Normal,
    };
    config.net_limits.max_per_address = args.max_per_address;
    let limits = &mut config.limits;
    if let Some(s) = args.login_timeout {
        limits.login_timeout = millis(s);
    }
    if let Some(s) = args.idle_ping {
        limits.idle_ping = millis(s);
    }
    if let Some(s) = args.idle_close {
        limits.idle_close = millis(s);
    }
    // Deadlines are checked a few times within the shortest of them.
    limits.sweep = limits
        .sweep
        .min(limits.login_timeout / 4)
        .min(limits.idle_ping / 4)
        .max(10);
    if let Some(log_n) = args.scrypt_log_n {
        config.hash_cost.log_n = log_n;
    }
    server::serve(&args.listen, config)
}
