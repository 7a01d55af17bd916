//! chatapp's integration tests, in one test binary: linking the crate and
//! its dependencies once instead of once per file is most of what a test
//! build costs. Each former file is a module named after its area, so
//! `cargo test --test all rooms::` runs one area, and `kit` holds what
//! they share: the real server (in process and as the real binary), the
//! protocol clients, the pseudo-terminal driver, and a PostgreSQL server.

mod kit;

mod accept_backlog;
mod accounts;
mod architecture;
mod backpressure;
mod bad_input;
mod balancer;
mod bus;
mod chaos;
mod cli;
mod cluster;
mod durability;
mod floods;
mod fuzz_replay;
mod hostile_session;
mod limits;
mod load;
mod netns;
mod old_databases;
mod on_postgres;
mod passwords;
mod postgres;
mod powerloss;
mod private;
mod properties;
mod protocol_doc;
mod pty_chat;
mod pty_trust;
mod resume;
mod rooms;
mod sequences;
mod server;
mod slow_clients;
