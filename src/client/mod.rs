//! `chatapp connect`: the terminal client.
//!
//! - [`proto`]: the protocol, blocking (also what the integration tests speak).
//! - [`link`]: the network thread that owns the connection, and the
//!   channels between it and the terminal.
//! - [`trust`]: the known-servers file (server keys pinned on first use).
//! - [`tokens`]: the saved-logins file (a resume token for each server).
//! - [`core`]: pure: the flow (which screen comes next, which request to
//!   send, what a reply means), fed user and network inputs, drained of
//!   effects.
//! - [`session`]: pure: what each reply and event shows, as lines of text.
//! - [`editor`]: pure: the line being typed.
//! - `ui`: the only code that touches the terminal (dialoguer, console,
//!   crossterm).
//! - `app`: the driver: carries the core's effects out to the terminal
//!   and the network, and feeds back what comes in.

mod app;
pub use app::Error;
pub mod core;
pub mod editor;
pub mod link;
pub mod proto;
pub mod session;
pub mod tokens;
pub mod trust;
mod ui;

/// The server a client connects to when none is named.
pub const DEFAULT_SERVER: &str = "127.0.0.1:7878";
/// The port used when an address names none.
pub const DEFAULT_PORT: u16 = 7878;

#[derive(clap::Args, Debug, Default)]
pub struct ConnectArgs {
    /// The server's address, or the addresses of several servers of one
    /// deployment separated by commas, tried in order [default:
    /// $CHATAPP_SERVER or 127.0.0.1:7878].
    #[arg(value_name = "ADDR")]
    pub addr: Option<String>,
    /// Trust a server met for the first time without asking, and remember
    /// its key (for scripts). A server whose key changed is still refused.
    #[arg(long)]
    pub accept_new_server: bool,
}

impl ConnectArgs {
    pub fn server(&self) -> String {
        self.addr
            .clone()
            .or_else(|| {
                std::env::var("CHATAPP_SERVER")
                    .ok()
                    .filter(|s| !s.is_empty())
            })
            .unwrap_or_else(|| DEFAULT_SERVER.to_string())
    }
}

/// Runs the interactive client until the user quits. The server's key is
/// checked against the known-servers file before anything is sent.
pub fn run(args: ConnectArgs) -> Result<(), Error> {
    app::run(args)
}

/// An address with the default port added when it names none:
/// `chat.example.org` -> `chat.example.org:7878`, `::1` -> `[::1]:7878`.
pub fn normalize_addr(addr: &str) -> String {
    let addrs: Vec<String> = (addr.split(','))
        .filter(|a| !a.trim().is_empty())
        .map(normalize_one)
        .collect();
    match addrs.is_empty() {
        true => DEFAULT_SERVER.to_string(),
        false => addrs.join(","),
    }
}

fn normalize_one(addr: &str) -> String {
    let addr = addr.trim();
    if addr.parse::<std::net::SocketAddr>().is_ok() {
        return addr.to_string();
    }
    if addr.starts_with('[') {
        return if addr.contains("]:") {
            addr.to_string()
        } else {
            format!("{addr}:{DEFAULT_PORT}")
        };
    }
    match addr.matches(':').count() {
        0 => format!("{addr}:{DEFAULT_PORT}"),
        1 => addr.to_string(),
        _ => format!("[{addr}]:{DEFAULT_PORT}"),
    }
}

/// Milliseconds since the Unix epoch, as the server stamps messages.
fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The local offset from UTC at a moment, in seconds, from the C
/// library's time-zone rules (so `TZ` and summer time are honoured).
#[cfg(unix)]
fn local_offset(ms: i64) -> i32 {
    // The libc crate marks time_t deprecated on musl only to announce that
    // it will follow musl to 64 bits, which it already is on x86_64.
    #[allow(deprecated)]
    let t = ms.div_euclid(1000) as libc::time_t;
    let mut tm = std::mem::MaybeUninit::<libc::tm>::zeroed();
    // SAFETY: localtime_r is the reentrant form; it fills `tm` or fails.
    let ok = unsafe { !libc::localtime_r(&t, tm.as_mut_ptr()).is_null() };
    if !ok {
        return 0;
    }
    // SAFETY: filled by the successful call above.
    let tm = unsafe { tm.assume_init() };
    tm.tm_gmtoff as i32
}

/// Without the C library's time-zone rules, times are shown in UTC.
#[cfg(not(unix))]
fn local_offset(_ms: i64) -> i32 {
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_get_the_default_port() {
        assert_eq!(normalize_addr("127.0.0.1:9000"), "127.0.0.1:9000");
        assert_eq!(
            normalize_addr(" chat.example.org "),
            "chat.example.org:7878"
        );
        assert_eq!(normalize_addr("localhost:1"), "localhost:1");
        assert_eq!(normalize_addr("::1"), "[::1]:7878");
        assert_eq!(normalize_addr("[::1]"), "[::1]:7878");
        assert_eq!(normalize_addr("[::1]:9"), "[::1]:9");
        // Several servers of one deployment, each made whole.
        assert_eq!(
            normalize_addr("a.example.org, 10.0.0.2:9,::1"),
            "a.example.org:7878,10.0.0.2:9,[::1]:7878"
        );
        assert_eq!(normalize_addr(" , "), DEFAULT_SERVER);
    }

    #[cfg(unix)]
    #[test]
    fn the_local_offset_is_within_a_day() {
        assert!(local_offset(1_700_000_000_000).abs() <= 14 * 3600);
    }
}
