//! The arguments of `chatapp serve` and how they become a
//! [`Config`](super::Config).

use super::limits;
use crate::store::password::HashCost;
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
    /// Keep the chat in this PostgreSQL database instead of the SQLite file
    /// in the data directory (which still holds the server key): a URL
    /// such as postgres://chatapp:PASSWORD@db.example.org/chatapp. Better
    /// given through the environment, so the password stays off the
    /// command line.
    #[arg(
        long,
        env = "CHATAPP_DATABASE",
        hide_env_values = true,
        value_name = "URL"
    )]
    pub database: Option<String>,
    /// Share --database with other chatapp servers, hearing what they
    /// store (and telling them what this one stores) through this Redis:
    /// a URL such as redis://:PASSWORD@bus.example.org:6379/. Every
    /// server needs the same --database, --bus and server key.
    #[arg(long, env = "CHATAPP_BUS", hide_env_values = true, value_name = "URL")]
    pub bus: Option<String>,
    /// Print the server key's fingerprint and exit.
    #[arg(long)]
    pub fingerprint: bool,
    /// How commits reach the disk: `full` survives power loss (default);
    /// `normal` survives a crash of chatapp but may lose the last moments
    /// before a power loss, and is faster on slow disks.
    #[arg(long, value_enum, default_value = "full", value_name = "MODE")]
    pub sync: SyncMode,
    /// Connections one address may hold at once (loopback is exempt).
    #[arg(long, default_value_t = limits::MAX_PER_ADDRESS, value_name = "N")]
    pub max_per_address: usize,
    /// Load balancers that open their connections with a PROXY protocol
    /// version 2 header naming the client (HAProxy's `send-proxy-v2`):
    /// their clients are then counted and limited under their own
    /// addresses. Repeat the option, or separate addresses with commas.
    #[arg(long = "proxy-protocol", value_name = "ADDR", value_delimiter = ',')]
    pub proxy_protocol: Vec<std::net::IpAddr>,
    /// Chat messages a client may send a second, after its burst.
    #[arg(long, default_value_t = limits::MESSAGES_PER_SECOND, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub message_rate: u32,
    /// Chat messages a client may send at once.
    #[arg(long, default_value_t = limits::MESSAGE_BURST, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub message_burst: u32,
    /// Requests of any kind a client may send a second, after its burst.
    #[arg(long, default_value_t = limits::REQUESTS_PER_SECOND, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub request_rate: u32,
    /// Requests of any kind a client may send at once.
    #[arg(long, default_value_t = limits::REQUEST_BURST, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub request_burst: u32,
    /// Days a saved login (resume token) may go unused before it expires
    /// and its user must log in with the password again; fractions allowed.
    #[arg(long, default_value_t = f64::from(limits::RESUME_DAYS), value_name = "DAYS", value_parser = positive_days)]
    pub resume_days: f64,
    /// scrypt cost as log2(N), 1 to 20. Lower it only for tests.
    #[arg(long, default_value_t = HashCost::default().log_n, value_name = "LOG_N", value_parser = clap::value_parser!(u8).range(1..=20), hide = true)]
    pub scrypt_log_n: u8,
    /// Seconds a client has to log in.
    #[arg(long, default_value_t = secs(limits::LOGIN_TIMEOUT), value_name = "SECS", hide = true)]
    pub login_timeout: f64,
    /// Seconds of silence before a client is pinged.
    #[arg(long, default_value_t = secs(limits::IDLE_PING), value_name = "SECS", hide = true)]
    pub idle_ping: f64,
    /// Seconds of silence before a client is dropped.
    #[arg(long, default_value_t = secs(limits::IDLE_CLOSE), value_name = "SECS", hide = true)]
    pub idle_close: f64,
    /// Seconds a member whose connection dropped keeps their place in their
    /// room (an admin's room stays open as long); 0 makes them leave at once.
    #[arg(long, default_value_t = secs(limits::GRACE), value_name = "SECS")]
    pub grace: f64,
}

/// A number of days above zero (fractions allowed), at most 100 years.
fn positive_days(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(days) if days > 0.0 && days <= 36_500.0 => Ok(days),
        _ => Err(format!(
            "{text:?} is not a number of days from above 0 to 36500: give one such as 30 or 0.5"
        )),
    }
}

fn millis(secs: f64) -> i64 {
    (secs * 1000.0).round() as i64
}

fn secs(millis: i64) -> f64 {
    millis as f64 / 1000.0
}

/// `chatapp serve`: prints the fingerprint, or runs the server until
/// SIGINT or SIGTERM.
pub fn run(args: ServeArgs) -> Result<(), super::Error> {
    let data_dir = match args.data_dir.clone() {
        Some(dir) => dir,
        None => super::default_data_dir()?,
    };
    if args.fingerprint {
        println!("{}", super::fingerprint(&data_dir)?);
        return Ok(());
    }
    super::serve(&args.listen, config(&args, data_dir))
}

/// The server's configuration from its options.
fn config(args: &ServeArgs, data_dir: PathBuf) -> super::Config {
    let mut config = super::Config::new(data_dir);
    config.sync = match args.sync {
        SyncMode::Full => crate::store::Sync::Full,
        SyncMode::Normal => crate::store::Sync::Normal,
    };
    config.database = args.database.clone();
    config.bus = args.bus.clone();
    config.net_limits.max_per_address = args.max_per_address;
    config.net_limits.proxies = args
        .proxy_protocol
        .iter()
        .map(|ip| ip.to_canonical())
        .collect();
    config.limits.messages_per_second = args.message_rate;
    config.limits.message_burst = args.message_burst;
    config.limits.requests_per_second = args.request_rate;
    config.limits.request_burst = args.request_burst;
    config.limits.grace = millis(args.grace.max(0.0));
    config.limits.resume_expiry = (args.resume_days * limits::DAY as f64).round() as i64;
    let limits = &config.limits;
    config.limits = limits.clone().with_deadlines(
        millis(args.login_timeout),
        millis(args.idle_ping),
        millis(args.idle_close),
    );
    config.hash_cost.log_n = args.scrypt_log_n;
    config
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};

    #[derive(Parser)]
    struct Serve {
        #[command(flatten)]
        args: ServeArgs,
    }

    /// Options left out must give the server the limits it has by
    /// default: the options' defaults and the server's are one set of
    /// numbers, not two that can drift apart.
    #[test]
    fn serve_without_options_runs_with_the_default_limits() {
        let args = Serve::try_parse_from(["serve"]).unwrap().args;
        let config = config(&args, PathBuf::from("data"));
        let default = super::super::Config::new(PathBuf::from("data"));
        assert_eq!(
            format!("{:?}", config.limits),
            format!("{:?}", default.limits)
        );
        assert_eq!(
            format!("{:?}", config.net_limits),
            format!("{:?}", default.net_limits)
        );
        assert_eq!(config.hash_cost, default.hash_cost);
    }

    #[test]
    fn proxy_protocol_takes_a_list_or_the_option_again_and_refuses_a_name() {
        let args = Serve::try_parse_from([
            "serve",
            "--proxy-protocol",
            "10.0.0.5,::ffff:10.0.0.6",
            "--proxy-protocol",
            "::1",
        ])
        .unwrap()
        .args;
        let proxies = config(&args, PathBuf::from("data")).net_limits.proxies;
        let expected: Vec<std::net::IpAddr> = ["10.0.0.5", "10.0.0.6", "::1"]
            .iter()
            .map(|ip| ip.parse().unwrap())
            .collect();
        assert_eq!(proxies, expected);
        let name = Serve::try_parse_from(["serve", "--proxy-protocol", "lb.example.org"])
            .err()
            .expect("a host name is refused")
            .to_string();
        assert!(name.contains("lb.example.org"), "{name}");
    }

    #[test]
    fn help_shows_the_default_limits() {
        let help = Serve::command().render_help().to_string();
        for (option, default) in [
            ("--max-per-address", limits::MAX_PER_ADDRESS.to_string()),
            ("--message-rate", limits::MESSAGES_PER_SECOND.to_string()),
            ("--message-burst", limits::MESSAGE_BURST.to_string()),
            ("--request-rate", limits::REQUESTS_PER_SECOND.to_string()),
            ("--request-burst", limits::REQUEST_BURST.to_string()),
            ("--resume-days", limits::RESUME_DAYS.to_string()),
        ] {
            let at = help
                .find(option)
                .unwrap_or_else(|| panic!("{option}: {help}"));
            let next = help[at + 2..]
                .find("\n  -")
                .map_or(help.len(), |n| at + 2 + n);
            assert!(
                help[at..next].contains(&format!("[default: {default}]")),
                "{option} should show [default: {default}]:\n{help}"
            );
        }
    }
}
