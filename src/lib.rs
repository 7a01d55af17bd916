//! chatapp: a terminal chat server and client in one binary. Rooms and
//! private messages travel over a Noise-encrypted channel and every message
//! is kept in SQLite.
//!
//! # Layout
//!
//! - [`model`]: ids, names and limits shared by the hub and the store.
//! - [`wire`]: framing, the Noise handshake and transport, MessagePack messages. Pure.
//! - [`password`]: the password standard, shared by the server and the client.
//! - [`store`]: the storage interface and its SQLite backend; scrypt password hashing.
//! - [`server::hub`]: the chat core: accounts, rooms, private messages. Pure:
//!   fed inputs, drained of outputs; no sockets, clock or SQLite.
//! - [`server::directory`]: who is connected where; resolves a broadcast's
//!   audience to connections for the event loop. Pure.
//! - [`server::net`]: the mio event loop, the only code that touches sockets.
//! - [`server::turns`]: the event loop's turn times: histogram, longest turn. Pure.
//! - [`server::workers`]: the threads for scrypt and for the store.
//! - [`server::log`]: the server's log lines as `tracing` events, and the
//!   subscriber `chatapp serve` prints them with.
//! - [`server`]: configuration, data directory, key and lock files; `serve`;
//!   [`server::Error`], why it could not start.
//! - [`pause`]: the double-click pause before a console window closes.
//! - [`client`]: the blocking client-side protocol and the terminal client.

pub mod client;
pub mod model;
pub mod password;
pub mod pause;
pub mod server;
pub mod store;
pub mod wire;
