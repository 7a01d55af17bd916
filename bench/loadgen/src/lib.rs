//! chatapp's load generator: speaks chatapp's protocol (Noise NX,
//! MessagePack, real accounts) and IRC to the same scenarios, counts every
//! expected delivery, and writes the side-by-side report.
//!
//! - [`engine`]: the mio event loop driving the clients, both protocols.
//! - [`track`]: matching deliveries to messages; losses, refusals, latency.
//! - [`hist`]: the latency histogram.
//! - [`server`]: starting the servers under test, seeding chatapp's accounts.
//! - [`probe`]: CPU and memory of a process, from /proc.
//! - [`scenario`]: S1 to S5.
//! - [`report`]: the Markdown tables.
//! - [`million`]: what is watched during the million-message run (`million`).

pub mod engine;
pub mod hist;
pub mod million;
pub mod probe;
pub mod report;
pub mod scenario;
pub mod server;
pub mod track;
