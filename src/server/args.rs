//! The arguments of `chatapp serve` and how they become a
//! [`Config`](super::Config).

use std::path::PathBuf;

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum SyncMode {
    Full,
    Normal,
}

#[derive(clap::Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:7878", value_name = "ADDR")]
    pub listen: String,
    /// Where the database, the server key and the lock file live
    /// [default: the platform's data directory].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Print the server key's fingerprint and exit.
    #[arg(long)]
    pub fingerprint: bool,
    /// How commits reach the disk: `full` survives power loss (default);
    /// `normal` survives a crash of chatapp but may lose the last moments
    /// before a power loss, and is faster on slow disks.
    #[arg(long, value_enum, default_value = "full", value_name = "MODE")]
    pub sync: SyncMode,
    /// Connections one address may hold at once (loopback is exempt).
    #[arg(long, default_value_t = 16, value_name = "N")]
    pub max_per_address: usize,
    /// Chat messages a client may send a second, after its burst.
    #[arg(long, default_value_t = 5, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub message_rate: u32,
    /// Chat messages a client may send at once.
    #[arg(long, default_value_t = 10, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub message_burst: u32,
    /// Requests of any kind a client may send a second, after its burst.
    #[arg(long, default_value_t = 20, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub request_rate: u32,
    /// Requests of any kind a client may send at once.
    #[arg(long, default_value_t = 50, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub request_burst: u32,
    /// scrypt cost as log2(N), 1 to 20 [default: 17]. Lower it only for tests.
    #[arg(long, value_name = "LOG_N", value_parser = clap::value_parser!(u8).range(1..=20), hide = true)]
    pub scrypt_log_n: Option<u8>,
    /// Seconds a client has to log in [default: 10].
    #[arg(long, value_name = "SECS", hide = true)]
    pub login_timeout: Option<f64>,
    /// Seconds of silence before a client is pinged [default: 60].
    #[arg(long, value_name = "SECS", hide = true)]
    pub idle_ping: Option<f64>,
    /// Seconds of silence before a client is dropped [default: 120].
    #[arg(long, value_name = "SECS", hide = true)]
    pub idle_close: Option<f64>,
}

fn millis(secs: f64) -> i64 {
    (secs * 1000.0).round() as i64
}

/// `chatapp serve`: prints the fingerprint, or runs the server until
/// SIGINT or SIGTERM.
pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let data_dir = match args.data_dir {
        Some(dir) => dir,
        None => super::default_data_dir()?,
    };
    if args.fingerprint {
        println!("{}", super::fingerprint(&data_dir)?);
        return Ok(());
    }
    let mut config = super::Config::new(data_dir);
    config.sync = match args.sync {
        SyncMode::Full => crate::store::Sync::Full,
        SyncMode::Normal => crate::store::Sync::Normal,
    };
    config.net_limits.max_per_address = args.max_per_address;
    config.limits.messages_per_second = args.message_rate;
    config.limits.message_burst = args.message_burst;
    config.limits.requests_per_second = args.request_rate;
    config.limits.request_burst = args.request_burst;
    let limits = &config.limits;
    config.limits = limits.clone().with_deadlines(
        args.login_timeout.map_or(limits.login_timeout, millis),
        args.idle_ping.map_or(limits.idle_ping, millis),
        args.idle_close.map_or(limits.idle_close, millis),
    );
    if let Some(log_n) = args.scrypt_log_n {
        config.hash_cost.log_n = log_n;
    }
    super::serve(&args.listen, config)
}
