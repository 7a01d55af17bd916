//! Messages that came ahead of their turn, waiting a moment for the ones
//! before them.
//!
//! Several servers store into one conversation at once, and the database
//! numbers their messages in commit order; each server then hears the
//! others' over the bus a little after it stored its own. So a server
//! often holds number 8 (its own, just committed) while 7 (another
//! server's, committed a moment earlier) is still crossing the bus. Reading
//! the gap from the store at once would cost a database round trip for
//! nearly every message of a busy room shared by several servers (and, on
//! the store thread, delay everything queued behind it); instead the early
//! messages wait here for up to [`WAIT`], and go out in order as soon as
//! the missing ones arrive. Only a gap still open after that (a bus message
//! lost, or the bus down) is read from the store.

use super::replicas::Conv;
use crate::model::{Millis, RoomId, Seq, UserId};
use crate::wire::msg::{PrivateLine, RoomLine};
use std::collections::{BTreeMap, HashMap};

/// How long an early message waits for the numbers before it. The bus
/// carries a batch in about a millisecond on a LAN (docs/SCALING.md); a
/// tenth of a second covers a busy server's publishing queue too, and is
/// the most a lost bus message adds to a delivery.
pub const WAIT: Millis = 100;
/// Early messages one conversation may hold; past that its gap is read at
/// once.
const MOST: usize = 1000;

/// A message to show once its turn comes.
#[derive(Debug)]
pub enum Line {
    Room {
        room: RoomId,
        line: RoomLine,
    },
    Private {
        sender: UserId,
        recipient: UserId,
        line: PrivateLine,
    },
}

#[derive(Debug)]
struct Early {
    /// When the gap in front of them opened.
    since: Millis,
    lines: BTreeMap<Seq, Line>,
}

#[derive(Debug, Default)]
pub struct Reorder {
    early: HashMap<Conv, Early>,
}

impl Reorder {
    /// Holds message `seq` of `conv` until its turn; `false` (and nothing
    /// held) when the conversation holds too many already.
    pub fn hold(&mut self, now: Millis, conv: Conv, seq: Seq, line: Line) -> bool {
        let early = self.early.entry(conv).or_insert_with(|| Early {
            since: now,
            lines: BTreeMap::new(),
        });
        if early.lines.len() >= MOST {
            return false;
        }
        early.lines.insert(seq, line);
        true
    }

    /// The held message numbered `next`, if any, once every one up to it
    /// was shown (`next` - 1 is the last shown); held ones at or below
    /// that are dropped as seen. A conversation whose gap closed but which
    /// holds more starts a new wait from `now`.
    pub fn take(&mut self, now: Millis, conv: Conv, next: Seq) -> Option<Line> {
        let early = self.early.get_mut(&conv)?;
        while early
            .lines
            .first_key_value()
            .is_some_and(|(&s, _)| s < next)
        {
            early.lines.pop_first();
        }
        let line = early.lines.remove(&next);
        if early.lines.is_empty() {
            self.early.remove(&conv);
        } else if line.is_some() {
            early.since = now;
        }
        line
    }

    /// Forgets what `conv` holds (its gap is being read from the store,
    /// which has them all); the highest number it held.
    pub fn drop_conv(&mut self, conv: Conv) -> Option<Seq> {
        let early = self.early.remove(&conv)?;
        early.lines.last_key_value().map(|(&s, _)| s)
    }

    /// Conversations whose gap stayed open [`WAIT`] or longer.
    pub fn due(&self, now: Millis) -> Vec<Conv> {
        let mut due: Vec<Conv> = self
            .early
            .iter()
            .filter(|(_, e)| e.since + WAIT <= now)
            .map(|(&c, _)| c)
            .collect();
        due.sort_unstable();
        due
    }

    /// When the next gap is due.
    pub fn next_due(&self) -> Option<Millis> {
        self.early.values().map(|e| e.since + WAIT).min()
    }

    pub fn convs(&self) -> Vec<Conv> {
        self.early.keys().copied().collect()
    }
}
