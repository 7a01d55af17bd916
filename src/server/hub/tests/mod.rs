//! The hub driven by scripts of inputs on a fake clock: no sockets, no
//! threads, no SQLite. The world around it is the shared
//! [`Harness`](super::harness::Harness): it "hashes" by prefixing,
//! verifies by comparing, commits writes when told to (each test can look
//! at what the hub shows before and after a commit), resolves broadcasts
//! through a directory kept up to date by the hub's outputs, as the event
//! loop does, and checks that directory against the hub after every step
//! of every test. The tests themselves are split by area, as the hub is.

use super::harness::{self, fake_hash};
use super::*;
use crate::model::{self, UserId};
use crate::store::UserRow;
use crate::wire::msg::Request;

const PW: &str = harness::PASSWORD;

type World = harness::Harness;

fn left(room: u64, name: &str, reason: LeaveReason) -> Event {
    Event::Left {
        room,
        name: name.into(),
        reason,
    }
}

fn texts(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::RoomMessage { line, .. } => Some(format!("{}: {}", line.from, line.text)),
            _ => None,
        })
        .collect()
}

mod accounts;
mod cluster;
mod commits;
mod connections;
mod devices;
mod grace;
mod private;
mod rooms;
mod sequences;
