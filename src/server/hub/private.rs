//! Private messages: the unread counts of every user (by sender) and the
//! sequence numbers of every dialogue, kept in memory from the start-up
//! snapshot on, and the inbox and dialogue replies made from what the
//! store reads.

use crate::model::{Seq, UserId};
use crate::store;
use crate::wire::msg::{Conversation, PrivateLine};
use std::collections::HashMap;

/// Conversations listed in an inbox reply, newest first.
pub const INBOX_LIMIT: usize = 100;
/// Characters of the last message shown in an inbox line.
pub const PREVIEW_CHARS: usize = 100;

#[derive(Default)]
pub(super) struct Unread {
    /// recipient -> sender -> unread private messages.
    counts: HashMap<UserId, HashMap<UserId, u32>>,
}

impl Unread {
    pub fn new(snapshot: Vec<(UserId, UserId, u32)>) -> Unread {
        let mut unread = Unread::default();
        for (recipient, sender, count) in snapshot {
            unread
                .counts
                .entry(recipient)
                .or_default()
                .insert(sender, count);
        }
        unread
    }

    /// A message from `sender` reached `recipient`'s inbox.
    pub fn add(&mut self, recipient: UserId, sender: UserId) {
        *self
            .counts
            .entry(recipient)
            .or_default()
            .entry(sender)
            .or_default() += 1;
    }

    /// `user` has read everything from `other`; returns how many that was.
    pub fn clear(&mut self, user: UserId, other: UserId) -> u32 {
        self.counts
            .get_mut(&user)
            .and_then(|m| m.remove(&other))
            .unwrap_or(0)
    }

    /// Everything `user` has not read, from anyone.
    pub fn total(&self, user: UserId) -> u32 {
        self.counts.get(&user).map_or(0, |m| m.values().sum())
    }
}

/// Every dialogue's sequence numbers: the last one given out, and the last
/// one committed (what its two users can have seen).
#[derive(Default)]
pub(super) struct Dialogues {
    /// Keyed by the pair, lower id first.
    seqs: HashMap<(UserId, UserId), (Seq, Seq)>,
}

fn pair(a: UserId, b: UserId) -> (UserId, UserId) {
    (a.min(b), a.max(b))
}

impl Dialogues {
    pub fn new(snapshot: Vec<(UserId, UserId, Seq)>) -> Dialogues {
        let seqs = snapshot
            .into_iter()
            .map(|(a, b, seq)| (pair(a, b), (seq, seq)))
            .collect();
        Dialogues { seqs }
    }

    /// The sequence number of the next message between `a` and `b`.
    pub fn next_seq(&mut self, a: UserId, b: UserId) -> Seq {
        let (given, _) = self.seqs.entry(pair(a, b)).or_default();
        *given += 1;
        *given
    }

    /// Message `seq` between `a` and `b` was committed.
    pub fn committed(&mut self, a: UserId, b: UserId, seq: Seq) {
        let (given, committed) = self.seqs.entry(pair(a, b)).or_default();
        *committed = (*committed).max(seq);
        // As for a room (`Rooms::record`).
        *given = (*given).max(seq);
    }

    /// Every dialogue with a message, lower id first, with its last
    /// committed number.
    pub fn all(&self) -> Vec<(UserId, UserId, Seq)> {
        let mut all: Vec<_> = self
            .seqs
            .iter()
            .map(|(&(a, b), &(_, c))| (a, b, c))
            .collect();
        all.sort_unstable();
        all
    }

    /// The last committed message between `a` and `b` (0: none).
    pub fn last_committed(&self, a: UserId, b: UserId) -> Seq {
        self.seqs.get(&pair(a, b)).map_or(0, |&(_, c)| c)
    }
}

/// The inbox reply's lines; `name_of` names a user by id.
pub(super) fn inbox(
    rows: Vec<store::Conversation>,
    name_of: impl Fn(UserId) -> String,
) -> Vec<Conversation> {
    rows.into_iter()
        .take(INBOX_LIMIT)
        .map(|r| Conversation {
            last_from: name_of(r.last_sender),
            with: r.other_name,
            last_text: preview(&r.last_text),
            last_time: r.last_time,
            unread: r.unread,
        })
        .collect()
}

/// A dialogue's lines, oldest first, as the store read them.
pub(super) fn dialogue(
    rows: Vec<store::PrivateRow>,
    name_of: impl Fn(UserId) -> String,
) -> Vec<PrivateLine> {
    rows.into_iter()
        .map(|r| PrivateLine {
            id: r.id.0 as u64,
            seq: r.seq,
            to: name_of(r.recipient).into(),
            from: r.sender_name.into(),
            text: r.text.into(),
            time: r.sent,
        })
        .collect()
}

pub(super) fn preview(text: &str) -> String {
    match text.char_indices().nth(PREVIEW_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}
