//! chatapp: a terminal chat server and client in one binary. Rooms and
//! private messages travel over a Noise-encrypted channel and every message
//! is kept in SQLite.
//!
//! # Layout
//!
//! - [`model`]: ids, names and limits shared by the hub and the store.
//! - [`wire`]: framing, the Noise handshake and transport, MessagePack messages. Pure.
//! - [`store`]: SQLite schema and queries; the password standard and scrypt.
//! - [`server::hub`]: the chat core: accounts, rooms, private messages. Pure:
//!   fed inputs, drained of outputs; no sockets, clock or SQLite.
//! - [`server::net`]: the mio event loop, the only code that touches sockets.
//! - [`server::turns`]: the event loop's turn times: histogram, longest turn. Pure.
//! - [`server::workers`]: the threads for scrypt and for SQLite writes.
//! - [`server`]: configuration, data directory, key and lock files; `serve`.
//! - [`pause`]: the double-click pause before a console window closes.
//! - [`client`]: the blocking client-side protocol and the terminal client.

pub mod client;
pub mod model;
pub mod pause;
pub mod server;
pub mod store;
pub mod wire;
