//! `chatapp connect`: the client. [`proto`] speaks the protocol; the
//! terminal interface is built on it.

pub mod proto;

use std::time::Duration;

/// The server a client connects to when none is named.
pub const DEFAULT_SERVER: &str = "127.0.0.1:7878";

#[derive(clap::Args, Debug, Default)]
pub struct ConnectArgs {
    /// The server's address [default: $CHATAPP_SERVER or 127.0.0.1:7878].
    #[arg(value_name = "ADDR")]
    pub addr: Option<String>,
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

/// Connects, shows the server's fingerprint, and checks that the channel
/// answers. The interactive client replaces this.
pub fn run(args: ConnectArgs) -> anyhow::Result<()> {
    let addr = args.server();
    let unverified = proto::connect(&addr)?;
    println!(
        "connected to {} ({}), server key {}",
        addr,
        unverified.addr(),
        unverified.fingerprint()
    );
    let mut conn = unverified.accept();
    conn.request_within(crate::wire::msg::Request::Ping, Duration::from_secs(10))?;
    println!("the server answers; the interactive client is not built yet");
    Ok(())
}
