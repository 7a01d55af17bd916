//! The client session as data: who is logged in, which screen they are
//! on, and what each reply or event from the server shows as lines of
//! text. Pure: no terminal, no socket, no clock (times come in as Unix
//! milliseconds with a function that gives the local UTC offset), so every
//! screen's words are tested here as text, and the terminal module only
//! colours and places them.

use crate::model::{MAX_CAPACITY, MIN_CAPACITY};
use crate::wire::msg::{
    Conversation, Event, LeaveReason, PrivateLine, Request, RoomInfo, RoomLine, Topic,
};

/// Messages one `/more` asks for.
pub const MORE_PAGE: u32 = 20;
use unicode_width::UnicodeWidthStr;

/// How a piece of text is meant to look; the terminal picks the colours,
/// and drops them when colour is off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    Plain,
    /// Times, separators, hints.
    Dim,
    Heading,
    /// Another person's name.
    Name,
    /// The user's own name.
    Me,
    /// Join, leave and other announcements.
    Notice,
    /// Something the user asked for went well.
    Good,
    /// Something went wrong or was refused.
    Error,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Span {
    pub tone: Tone,
    pub text: String,
}

/// One line on the screen, in styled pieces.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Line {
    pub spans: Vec<Span>,
    /// Columns a wrapped continuation is indented by (a chat message's
    /// text lines up under its first word).
    pub hang: usize,
}

impl Line {
    pub fn new() -> Line {
        Line::default()
    }

    pub fn of(tone: Tone, text: impl Into<String>) -> Line {
        Line::new().with(tone, text)
    }

    pub fn plain(text: impl Into<String>) -> Line {
        Line::of(Tone::Plain, text)
    }

    pub fn with(mut self, tone: Tone, text: impl Into<String>) -> Line {
        self.spans.push(Span {
            tone,
            text: text.into(),
        });
        self
    }

    pub fn hanging(mut self, columns: usize) -> Line {
        self.hang = columns;
        self
    }

    /// The line as plain text, as it shows without colour.
    pub fn text(&self) -> String {
        self.spans.iter().map(|s| s.text.as_str()).collect()
    }

    fn push(&mut self, tone: Tone, text: &str) {
        match self.spans.last_mut() {
            Some(last) if last.tone == tone => last.text.push_str(text),
            _ => self.spans.push(Span {
                tone,
                text: text.to_string(),
            }),
        }
    }
}

/// Columns `text` takes on a terminal (wide characters take two).
pub fn measure_text_width(text: &str) -> usize {
    text.width()
}

/// The line broken at spaces into rows of at most `width` columns, so that
/// the terminal does not cut words; continuations are indented by the
/// line's `hang`. A word longer than a row is cut where it must be.
pub fn wrap(line: &Line, width: usize) -> Vec<Line> {
    let width = width.max(8);
    if measure_text_width(&line.text()) <= width {
        return vec![line.clone()];
    }
    let hang = if line.hang <= width / 2 { line.hang } else { 0 };
    let mut rows = Vec::new();
    let mut row = Line::new();
    let mut col = 0;
    for span in &line.spans {
        for piece in pieces(&span.text) {
            let is_space = piece.starts_with(' ');
            let w = measure_text_width(piece);
            if col + w > width && col > hang {
                rows.push(trimmed(std::mem::take(&mut row)));
                row.push(Tone::Plain, &" ".repeat(hang));
                col = hang;
                if is_space {
                    continue; // no row starts with the space it broke at
                }
            }
            if col + w <= width {
                row.push(span.tone, piece);
                col += w;
                continue;
            }
            for c in piece.chars() {
                let cw = measure_text_width(c.encode_utf8(&mut [0; 4]));
                if col + cw > width && col > hang {
                    rows.push(trimmed(std::mem::take(&mut row)));
                    row.push(Tone::Plain, &" ".repeat(hang));
                    col = hang;
                }
                row.push(span.tone, c.encode_utf8(&mut [0; 4]));
                col += cw;
            }
        }
    }
    rows.push(row);
    rows
}

/// A row without the spaces it ended with before a break.
fn trimmed(mut row: Line) -> Line {
    while let Some(last) = row.spans.last_mut() {
        let kept = last.text.trim_end_matches(' ').len();
        last.text.truncate(kept);
        if !last.text.is_empty() {
            break;
        }
        row.spans.pop();
    }
    row
}

/// Words and the runs of spaces between them.
fn pieces(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = text;
    std::iter::from_fn(move || {
        let first = rest.chars().next()?;
        let space = first == ' ';
        let end = rest
            .find(|c: char| (c == ' ') != space)
            .unwrap_or(rest.len());
        let (piece, tail) = rest.split_at(end);
        rest = tail;
        Some(piece)
    })
}

/// The lines as plain text, one a line: what tests compare.
pub fn text_of(lines: &[Line]) -> String {
    lines.iter().map(|l| l.text() + "\n").collect()
}

/// Gives the local offset from UTC, in seconds, at a Unix time in ms.
pub type LocalOffset = fn(i64) -> i32;

/// Where the user is.
#[derive(Debug, Clone, PartialEq)]
pub enum Place {
    Menu,
    Room {
        info: RoomInfo,
        members: Vec<String>,
    },
    Chat {
        with: String,
    },
}

/// What to do after an event was shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    Stay,
    /// The room screen ended (kicked, closed): back to the main menu.
    ToMenu,
    /// The server is closing the connection; the text says why, and
    /// `resume` whether the session goes on over a new connection.
    Disconnected {
        reason: String,
        resume: bool,
    },
}

/// What an event shows, and what follows from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shown {
    pub lines: Vec<Line>,
    pub next: Next,
    /// A private message from this user was shown in their open
    /// conversation: tell the server it was read.
    pub mark_read: Option<String>,
}

impl Shown {
    fn lines(lines: Vec<Line>) -> Shown {
        Shown {
            lines,
            next: Next::Stay,
            mark_read: None,
        }
    }

    fn nothing() -> Shown {
        Shown::lines(Vec::new())
    }
}

/// A logged-in session.
#[derive(Debug, Clone)]
pub struct Session {
    me: String,
    unread: u32,
    place: Place,
    local: LocalOffset,
    /// The lowest sequence number shown on the room or chat screen, where
    /// `/more` pages back from.
    oldest: Option<u64>,
    /// The highest shown there: a catch-up asks for what came after it,
    /// and a message numbered at or below it is not shown again.
    newest: Option<u64>,
}

impl Session {
    pub fn new(me: impl Into<String>, unread: u32, local: LocalOffset) -> Session {
        Session {
            me: me.into(),
            unread,
            place: Place::Menu,
            local,
            oldest: None,
            newest: None,
        }
    }

    pub fn me(&self) -> &str {
        &self.me
    }

    pub fn unread(&self) -> u32 {
        self.unread
    }

    pub fn set_unread(&mut self, unread: u32) {
        self.unread = unread;
    }

    pub fn place(&self) -> &Place {
        &self.place
    }

    /// Back at the main menu.
    pub fn to_menu(&mut self) {
        self.place = Place::Menu;
        self.oldest = None;
        self.newest = None;
    }

    /// A message numbered `seq` is on the screen.
    fn shown(&mut self, seq: u64) {
        self.oldest = Some(self.oldest.map_or(seq, |o| o.min(seq)));
        self.newest = Some(self.newest.map_or(seq, |n| n.max(seq)));
    }

    /// Whether the message numbered `seq` is on the screen already (sent
    /// again by a catch-up, or live after one).
    fn seen(&self, seq: u64) -> bool {
        self.newest.is_some_and(|n| seq <= n)
    }

    /// The number of the last message shown on the room or chat screen
    /// (0: none), which a catch-up asks to continue from.
    pub fn newest(&self) -> u64 {
        self.newest.unwrap_or(0)
    }

    /// The room on the screen, as a `room` reply after a reconnect gives
    /// it: its members now; the screen and what it shows stay.
    pub fn rejoined(&mut self, room: RoomInfo, list: Vec<String>) {
        if let Place::Room { info, members } = &mut self.place {
            *info = room;
            *members = list;
        }
    }

    /// What was missed on the room screen, from a `room_caught_up` reply.
    pub fn caught_up_room(&mut self, skipped: u64, missed: &[RoomLine]) -> Vec<Line> {
        let fresh: Vec<&RoomLine> = missed.iter().filter(|l| !self.seen(l.seq)).collect();
        let lines = fresh.iter().map(|l| (l.seq, l.time, &*l.from, &*l.text));
        self.caught_up(skipped, lines)
    }

    /// What was missed on the chat screen, from a `dialogue_caught_up`
    /// reply, and whether any of it came from the other person.
    pub fn caught_up_chat(&mut self, skipped: u64, missed: &[PrivateLine]) -> (Vec<Line>, bool) {
        let fresh: Vec<&PrivateLine> = missed.iter().filter(|l| !self.seen(l.seq)).collect();
        let from_them = fresh.iter().any(|l| !l.from.eq_ignore_ascii_case(&self.me));
        let lines = fresh.iter().map(|l| (l.seq, l.time, &*l.from, &*l.text));
        (self.caught_up(skipped, lines), from_them)
    }

    fn caught_up<'a>(
        &mut self,
        skipped: u64,
        missed: impl ExactSizeIterator<Item = (u64, i64, &'a str, &'a str)>,
    ) -> Vec<Line> {
        if missed.len() == 0 {
            return vec![Line::of(Tone::Dim, "No new messages while you were away.")];
        }
        let mut lines = vec![Line::of(
            Tone::Notice,
            format!(
                "--- {} while you were away ---",
                plural(missed.len(), "new message")
            ),
        )];
        if skipped > 0 {
            lines.push(Line::of(
                Tone::Dim,
                format!(
                    "({} before these are not shown: the conversation's history has them)",
                    plural(skipped as usize, "more message")
                ),
            ));
        }
        for (seq, time, from, text) in missed {
            lines.extend(self.message(time, from, text));
            self.newest = Some(self.newest.map_or(seq, |n| n.max(seq)));
            if self.oldest.is_none() {
                self.oldest = Some(seq);
            }
        }
        lines.push(Line::of(Tone::Dim, "--- now ---"));
        lines
    }

    /// A line sent while the connection is down, as it waits.
    pub fn pending(&self, time: i64, text: &str) -> Vec<Line> {
        let mut lines = self.message(time, &self.me, text);
        if let Some(last) = lines.last_mut() {
            last.spans.push(Span {
                tone: Tone::Dim,
                text: " (pending: sent when the connection is back)".to_string(),
            });
        }
        lines
    }

    /// The `history` request for the page before what the room or chat
    /// screen shows; `None` at the beginning of the conversation (or off
    /// such a screen).
    pub fn more_request(&self) -> Option<Request> {
        let of = match &self.place {
            Place::Room { info, .. } => Topic::Room { room: info.id },
            Place::Chat { with } => Topic::Dialogue { with: with.clone() },
            Place::Menu => return None,
        };
        match self.oldest {
            Some(1) => None,
            oldest => Some(Request::History {
                of,
                before: oldest.unwrap_or(0),
                limit: MORE_PAGE,
            }),
        }
    }

    /// A page of earlier room messages, from a `room_history` reply.
    pub fn earlier_room(&mut self, page: &[RoomLine]) -> Vec<Line> {
        let first = page.first().map(|l| l.seq);
        let lines = page.iter().map(|l| (l.time, &*l.from, &*l.text));
        self.earlier(first, lines)
    }

    /// A page of earlier private messages, from a `dialogue` reply to
    /// `history`.
    pub fn earlier_chat(&mut self, page: &[PrivateLine]) -> Vec<Line> {
        let first = page.first().map(|l| l.seq);
        let lines = page.iter().map(|l| (l.time, &*l.from, &*l.text));
        self.earlier(first, lines)
    }

    fn earlier<'a>(
        &mut self,
        first: Option<u64>,
        page: impl ExactSizeIterator<Item = (i64, &'a str, &'a str)>,
    ) -> Vec<Line> {
        let Some(first) = first else {
            self.oldest = Some(1);
            return vec![Line::of(
                Tone::Dim,
                "No earlier messages: that is the beginning.",
            )];
        };
        let mut lines = vec![Line::of(
            Tone::Dim,
            format!("--- earlier: {} ---", plural(page.len(), "message")),
        )];
        for (time, from, text) in page {
            lines.extend(self.message(time, from, text));
        }
        self.oldest = Some(self.oldest.map_or(first, |o| o.min(first)));
        lines.push(Line::of(
            Tone::Dim,
            if first == 1 {
                "--- end of the earlier messages: that is the beginning ---"
            } else {
                "--- end of the earlier messages: /more shows more ---"
            },
        ));
        lines
    }

    fn time(&self, ms: i64) -> String {
        clock(ms, (self.local)(ms))
    }

    fn name_tone(&self, name: &str) -> Tone {
        if name.eq_ignore_ascii_case(&self.me) {
            Tone::Me
        } else {
            Tone::Name
        }
    }

    // ---- the main menu ----

    /// The line above the main menu: who is logged in, what is unread.
    pub fn menu_header(&self) -> Line {
        let unread = match self.unread {
            0 => "no unread private messages".to_string(),
            1 => "1 unread private message".to_string(),
            n => format!("{n} unread private messages"),
        };
        Line::of(Tone::Heading, "Main menu")
            .with(Tone::Dim, " · logged in as ")
            .with(Tone::Me, self.me.clone())
            .with(
                if self.unread > 0 {
                    Tone::Notice
                } else {
                    Tone::Dim
                },
                format!(" · {unread}"),
            )
    }

    pub fn menu_items(&self) -> Vec<String> {
        let inbox = if self.unread > 0 {
            format!("View private chats ({} unread)", self.unread)
        } else {
            "View private chats".to_string()
        };
        vec![
            "Create a chat room".to_string(),
            "Join a chat room".to_string(),
            "Compose a private message".to_string(),
            inbox,
            "Log out / quit".to_string(),
        ]
    }

    // ---- rooms ----

    /// The top of the room screen, from a `room` reply.
    pub fn enter_room(
        &mut self,
        info: RoomInfo,
        members: Vec<String>,
        history: &[RoomLine],
    ) -> Vec<Line> {
        let mut lines = vec![
            Line::of(
                Tone::Heading,
                format!("Welcome to {} (#{})", clean(&info.name), info.id),
            ),
            Line::of(Tone::Dim, "Admin: ").with(self.name_tone(&info.admin), info.admin.clone()),
        ];
        self.place = Place::Room { info, members };
        self.oldest = history.first().map(|l| l.seq);
        self.newest = history.last().map(|l| l.seq);
        lines.push(self.members_line());
        lines.push(room_commands());
        let history = history.iter().map(|l| (l.time, &*l.from, &*l.text));
        lines.extend(self.history(history, "No messages yet: say hello."));
        lines
    }

    /// The history at the top of a room or chat screen, oldest first.
    fn history<'a>(
        &self,
        history: impl ExactSizeIterator<Item = (i64, &'a str, &'a str)>,
        empty: &str,
    ) -> Vec<Line> {
        if history.len() == 0 {
            return vec![Line::of(Tone::Dim, empty.to_string())];
        }
        let mut lines = vec![Line::of(
            Tone::Dim,
            format!("--- the last {} ---", plural(history.len(), "message")),
        )];
        for (time, from, text) in history {
            lines.extend(self.message(time, from, text));
        }
        lines.push(Line::of(Tone::Dim, "--- now ---"));
        lines
    }

    /// `Members (n/cap): alice (Admin), bob`, from the room as last known.
    pub fn members_line(&self) -> Line {
        let Place::Room { info, members } = &self.place else {
            return Line::of(Tone::Error, "You are not in a room.");
        };
        let mut line = Line::of(
            Tone::Dim,
            format!("Members ({}/{}): ", members.len(), info.capacity),
        );
        for (i, m) in members.iter().enumerate() {
            if i > 0 {
                line = line.with(Tone::Dim, ", ");
            }
            line = line.with(self.name_tone(m), m.clone());
            if m.eq_ignore_ascii_case(&info.admin) {
                line = line.with(Tone::Dim, " (Admin)");
            }
        }
        line
    }

    /// The line kept under the room's input line: the room and how many
    /// are in it now, so the count follows joins, leaves and kicks.
    pub fn room_status(&self) -> Option<Line> {
        let Place::Room { info, members } = &self.place else {
            return None;
        };
        Some(
            Line::of(Tone::Dim, format!("{} · ", room_title(info)))
                .with(
                    Tone::Dim,
                    format!("Members ({}/{})", members.len(), info.capacity),
                )
                .with(Tone::Dim, " · /l lists them · /help"),
        )
    }

    /// A `members` reply: remembers the list and shows it.
    pub fn set_members(&mut self, list: Vec<String>) -> Line {
        if let Place::Room { members, .. } = &mut self.place {
            *members = list;
        }
        self.members_line()
    }

    /// The line after `/q`: the room is left, and closed if we ran it.
    pub fn left_room(&mut self) -> Line {
        let line = match &self.place {
            Place::Room { info, .. } if info.admin.eq_ignore_ascii_case(&self.me) => Line::of(
                Tone::Good,
                format!(
                    "You left {}; as its admin, leaving closed it.",
                    room_title(info)
                ),
            ),
            Place::Room { info, .. } => {
                Line::of(Tone::Good, format!("You left {}.", room_title(info)))
            }
            _ => Line::new(),
        };
        self.place = Place::Menu;
        line
    }

    // ---- private chats ----

    /// The top of a conversation screen, from a `dialogue` reply.
    pub fn enter_chat(&mut self, with: &str, history: &[PrivateLine]) -> Vec<Line> {
        self.enter_chat_from(with, history, ChatExit::Menu)
    }

    /// The top of a conversation screen, whose `/q` goes to `exit`.
    pub fn enter_chat_from(
        &mut self,
        with: &str,
        history: &[PrivateLine],
        exit: ChatExit,
    ) -> Vec<Line> {
        let mut lines =
            vec![Line::of(Tone::Heading, "Private chat with ").with(Tone::Name, with.to_string())];
        let oldest = history.first().map(|l| l.seq);
        let newest = history.last().map(|l| l.seq);
        let history = history.iter().map(|l| (l.time, &*l.from, &*l.text));
        lines.extend(self.history(history, "No messages yet: write the first one."));
        lines.push(chat_commands_to(with, exit));
        self.place = Place::Chat {
            with: with.to_string(),
        };
        self.oldest = oldest;
        self.newest = newest;
        lines
    }

    /// The inbox as menu entries, newest first as the server sends them.
    pub fn inbox_items(&self, conversations: &[Conversation], now: i64) -> Vec<String> {
        let width = conversations
            .iter()
            .map(|c| c.with.len())
            .max()
            .unwrap_or(0);
        conversations
            .iter()
            .map(|c| {
                let when = when(
                    c.last_time,
                    now,
                    (self.local)(c.last_time),
                    (self.local)(now),
                );
                let from = if c.last_from.eq_ignore_ascii_case(&self.me) {
                    "you".to_string()
                } else {
                    c.last_from.clone()
                };
                let unread = match c.unread {
                    0 => String::new(),
                    n => format!("  ({n} unread)"),
                };
                format!(
                    "{:width$}  {when}  {from}: {}{unread}",
                    c.with,
                    one_line(&c.last_text)
                )
            })
            .collect()
    }

    // ---- events ----

    /// What a pushed event shows where the user is, and what follows.
    pub fn on_event(&mut self, event: Event) -> Shown {
        match event {
            Event::RoomMessage { room, line } => match &self.place {
                Place::Room { info, .. } if info.id == room && !self.seen(line.seq) => {
                    self.shown(line.seq);
                    Shown::lines(self.message(line.time, &line.from, &line.text))
                }
                _ => Shown::nothing(),
            },
            Event::Joined { room, name } => {
                let Place::Room { info, members } = &mut self.place else {
                    return Shown::nothing();
                };
                if info.id != room {
                    return Shown::nothing();
                }
                if !members.iter().any(|m| m.eq_ignore_ascii_case(&name)) {
                    members.push(name.clone());
                }
                Shown::lines(vec![notice(format!("{name} joined the room"))])
            }
            Event::Left { room, name, reason } => {
                let Place::Room { info, members } = &mut self.place else {
                    return Shown::nothing();
                };
                if info.id != room {
                    return Shown::nothing();
                }
                members.retain(|m| !m.eq_ignore_ascii_case(&name));
                let what = match reason {
                    LeaveReason::Disconnected => "disconnected".to_string(),
                    LeaveReason::Kicked => format!("was kicked out by {}", info.admin),
                    _ => "left the room".to_string(),
                };
                Shown::lines(vec![notice(format!("{name} {what}"))])
            }
            Event::Kicked { room, by } => {
                let Place::Room { info, .. } = &self.place else {
                    return Shown::nothing();
                };
                if info.id != room {
                    return Shown::nothing();
                }
                let line = Line::of(
                    Tone::Error,
                    format!("{by} kicked you out of {}.", room_title(info)),
                );
                self.place = Place::Menu;
                Shown {
                    lines: vec![line],
                    next: Next::ToMenu,
                    mark_read: None,
                }
            }
            Event::RoomClosed { room, reason } => {
                let Place::Room { info, .. } = &self.place else {
                    return Shown::nothing();
                };
                if info.id != room {
                    return Shown::nothing();
                }
                let why = match reason {
                    LeaveReason::AdminDisconnected => {
                        format!("its admin {} lost their connection", info.admin)
                    }
                    LeaveReason::Shutdown => "the server is shutting down".to_string(),
                    _ => format!("its admin {} left", info.admin),
                };
                let line = Line::of(
                    Tone::Error,
                    format!("{} was closed: {why}.", room_title(info)),
                );
                self.place = Place::Menu;
                Shown {
                    lines: vec![line],
                    next: Next::ToMenu,
                    mark_read: None,
                }
            }
            Event::Away { room, name } => self.room_notice(
                room,
                format!("{name} lost their connection; their place is kept for a while"),
            ),
            Event::Back { room, name } => self.room_notice(room, format!("{name} is back")),
            Event::PrivateMessage { line } => self.private_message(line),
            // Read on another device: the count follows, quietly.
            Event::Read { unread, .. } => {
                self.unread = unread;
                Shown::nothing()
            }
            // Answered by the network thread; nothing to show.
            Event::Ping => Shown::nothing(),
            // The core says it, with what follows.
            Event::Bye { reason, resume } => Shown {
                lines: Vec::new(),
                next: Next::Disconnected { reason, resume },
                mark_read: None,
            },
        }
    }

    /// A notice for the room on the screen, if it is that room.
    fn room_notice(&self, room: u64, text: String) -> Shown {
        match &self.place {
            Place::Room { info, .. } if info.id == room => Shown::lines(vec![notice(text)]),
            _ => Shown::nothing(),
        }
    }

    fn private_message(&mut self, line: PrivateLine) -> Shown {
        let from_me = line.from.eq_ignore_ascii_case(&self.me);
        if let Place::Chat { with } = &self.place {
            let other = if from_me { &line.to } else { &line.from };
            if other.eq_ignore_ascii_case(with) {
                if self.seen(line.seq) {
                    return Shown::nothing();
                }
                let mark_read = (!from_me).then(|| with.clone());
                self.shown(line.seq);
                return Shown {
                    lines: self.message(line.time, &line.from, &line.text),
                    next: Next::Stay,
                    mark_read,
                };
            }
        }
        if from_me {
            return Shown::nothing(); // sent from another screen or device
        }
        self.unread += 1;
        Shown::lines(vec![
            Line::of(Tone::Notice, "* New private message from ")
                .with(Tone::Name, line.from.to_string())
                .with(Tone::Notice, format!(": \"{}\"", preview(&line.text, 40)))
                .with(Tone::Dim, " (-in at the main menu reads it)")
                .hanging(2),
        ])
    }

    /// `[HH:MM] name: text`; a text of several lines continues indented.
    pub fn message(&self, time: i64, from: &str, text: &str) -> Vec<Line> {
        let stamp = format!("[{}] ", self.time(time));
        let hang = stamp.len() + from.len() + 2;
        let mut lines = Vec::new();
        for (i, part) in text.split('\n').enumerate() {
            let line = if i == 0 {
                Line::of(Tone::Dim, stamp.clone())
                    .with(self.name_tone(from), from.to_string())
                    .with(Tone::Dim, ": ")
                    .with(Tone::Plain, clean(part))
            } else {
                Line::plain(format!("{}{}", " ".repeat(hang), clean(part)))
            };
            lines.push(line.hanging(hang));
        }
        lines
    }
}

fn notice(text: String) -> Line {
    Line::of(Tone::Notice, format!("* {text}")).hanging(2)
}

/// The rule for user names, shown before one is chosen (what
/// [`crate::model::check_user_name`] checks, and that names are unique in
/// any letter case).
pub const NAME_RULE: &str = "A user name is 3 to 32 characters: letters (a-z, A-Z), digits, '_', '-' or '.', unique without regard to case.";

/// `Lobby (#3)`.
pub fn room_title(info: &RoomInfo) -> String {
    format!("{} (#{})", clean(&info.name), info.id)
}

pub fn room_commands() -> Line {
    Line::of(
        Tone::Dim,
        "Commands: /q leave · /l members · /kick NAME (admin only) · /help",
    )
}

/// `/help` in a room.
pub fn room_help() -> Vec<Line> {
    vec![
        Line::of(Tone::Heading, "In a room:"),
        Line::plain("  type a line and press Enter to send it to everyone here"),
        Line::plain("  /q          leave the room (if you are its admin, this closes it)"),
        Line::plain("  /l          list the members"),
        Line::plain("  /more       show earlier messages (or Page Up)"),
        Line::plain("  /kick NAME  remove a member (admin only)"),
        Line::plain("  /help       show this"),
        Line::plain("  //text      send a line that starts with /"),
    ]
}

/// Where `/q` leaves a private chat for: where it was opened from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChatExit {
    /// Opened with "Compose a private message".
    Menu,
    /// Opened from the list of private chats.
    Inbox,
}

impl ChatExit {
    fn words(self) -> &'static str {
        match self {
            ChatExit::Menu => "back to the menu",
            ChatExit::Inbox => "back to your private chats",
        }
    }
}

pub fn chat_commands(with: &str) -> Line {
    chat_commands_to(with, ChatExit::Menu)
}

pub fn chat_commands_to(with: &str, exit: ChatExit) -> Line {
    Line::of(
        Tone::Dim,
        format!(
            "Type and press Enter to send to {with} · /q {} · /help",
            exit.words()
        ),
    )
}

/// `/help` in a private chat.
pub fn chat_help(with: &str) -> Vec<Line> {
    chat_help_to(with, ChatExit::Menu)
}

/// `/help` in a private chat whose `/q` goes to `exit`.
pub fn chat_help_to(with: &str, exit: ChatExit) -> Vec<Line> {
    vec![
        Line::of(Tone::Heading, "In a private chat:"),
        Line::plain(format!(
            "  type a line and press Enter to send it to {with}"
        )),
        Line::plain(format!("  /q          {}", exit.words())),
        Line::plain("  /more       show earlier messages (or Page Up)"),
        Line::plain("  /help       show this"),
        Line::plain("  //text      send a line that starts with /"),
    ]
}

/// A refusal or failure, as shown: the server's words, capitalised, with
/// a full stop.
pub fn error_line(message: &str) -> Line {
    Line::of(Tone::Error, sentence(message))
}

/// `that name is taken` -> `That name is taken.`
pub fn sentence(text: &str) -> String {
    let text = clean(text.trim());
    let mut chars = text.chars();
    let Some(first) = chars.next() else {
        return String::new();
    };
    let mut out: String = first.to_uppercase().chain(chars).collect();
    if !out.ends_with(['.', '!', '?']) {
        out.push('.');
    }
    out
}

// ---- what the user types ----

/// A line typed on a room or conversation screen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Text to send.
    Say(String),
    Quit,
    List,
    Kick(String),
    /// `/more`: the page of messages before the ones shown.
    More,
    Help,
    /// An empty line: nothing happens.
    Nothing,
    /// Not a command here; the line says what to do instead.
    Refused(Line),
}

/// What a line typed in a room means. `//x` sends `/x`.
pub fn parse_room_input(text: &str) -> Command {
    parse_command(text, true)
}

/// What a line typed in a private chat means.
pub fn parse_chat_input(text: &str) -> Command {
    parse_command(text, false)
}

fn parse_command(text: &str, in_room: bool) -> Command {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Command::Nothing;
    }
    if let Some(rest) = trimmed.strip_prefix("//") {
        return Command::Say(format!("/{rest}"));
    }
    let Some(command) = trimmed.strip_prefix('/') else {
        return Command::Say(text.trim_end().to_string());
    };
    let mut words = command.split_whitespace();
    let verb = words.next().unwrap_or("").to_ascii_lowercase();
    let arg = words.next();
    let hint = |text: String| Command::Refused(Line::of(Tone::Error, text));
    match (verb.as_str(), arg, in_room) {
        ("q" | "quit" | "leave", _, _) => Command::Quit,
        ("help" | "h" | "?", _, _) => Command::Help,
        ("more" | "m", _, _) => Command::More,
        ("l" | "list", _, true) => Command::List,
        ("kick", Some(name), true) => Command::Kick(name.to_string()),
        ("kick", None, true) => {
            hint("Who? Type /kick and a member's name, as in /kick bob.".into())
        }
        ("l" | "list" | "kick", _, false) => hint(format!(
            "/{verb} works in chat rooms; here /q goes back and /help lists the commands. Nothing was sent."
        )),
        _ => hint(format!(
            "Unknown command /{verb}: /help lists the commands. Nothing was sent (to send a line starting with /, type //)."
        )),
    }
}

/// What was typed at a menu.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MenuPick {
    /// The entry with this index (from 0).
    Item(usize),
    /// `-in`: the inbox.
    Inbox,
    /// Enter on an empty line: the highlighted entry.
    Highlighted,
    /// Not a choice; the text says what is.
    Invalid(String),
}

pub fn parse_menu_choice(text: &str, count: usize, inbox_shortcut: bool) -> MenuPick {
    let text = text.trim();
    if text.is_empty() {
        return MenuPick::Highlighted;
    }
    if inbox_shortcut && text.eq_ignore_ascii_case("-in") {
        return MenuPick::Inbox;
    }
    match text.trim_end_matches('.').parse::<usize>() {
        Ok(n) if (1..=count).contains(&n) => MenuPick::Item(n - 1),
        _ => {
            let shortcut = if inbox_shortcut {
                ", or -in for the inbox"
            } else {
                ""
            };
            MenuPick::Invalid(format!(
                "\"{}\" is not a choice: type a number from 1 to {count}{shortcut}, or use the arrow keys and Enter.",
                preview(text, 20)
            ))
        }
    }
}

/// A room number as typed: `12` or `#12`.
pub fn parse_room_id(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let digits = t.strip_prefix('#').unwrap_or(t).trim();
    match digits.parse::<u64>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!(
            "\"{}\" is not a room number: type it as the room's creator sees it, like #12 or 12.",
            preview(t, 20)
        )),
    }
}

/// Room capacity as typed; empty means `default`.
pub fn parse_capacity(text: &str, default: u32) -> Result<u32, String> {
    let t = text.trim();
    if t.is_empty() {
        return Ok(default);
    }
    match t.parse::<u32>() {
        Ok(n) if (MIN_CAPACITY..=MAX_CAPACITY).contains(&n) => Ok(n),
        _ => Err(format!(
            "A room holds {MIN_CAPACITY} to {MAX_CAPACITY} people: type a number in that range."
        )),
    }
}

// ---- text helpers ----

/// Removes what could steer the terminal: control characters (escape
/// sequences above all) become U+FFFD.
pub fn clean(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { '\u{FFFD}' } else { c })
        .collect()
}

fn one_line(text: &str) -> String {
    clean(&text.replace('\n', " "))
}

/// At most `chars` characters, with `…` when cut, on one line.
pub fn preview(text: &str, chars: usize) -> String {
    let text = one_line(text);
    match text.char_indices().nth(chars) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

fn plural(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// `HH:MM` at a Unix time in ms, shifted by an offset in seconds.
pub fn clock(ms: i64, offset: i32) -> String {
    let secs = ms.div_euclid(1000) + i64::from(offset);
    let minutes = secs.div_euclid(60).rem_euclid(24 * 60);
    format!("{:02}:{:02}", minutes / 60, minutes % 60)
}

/// `HH:MM` on the same local day as `now`, else `YYYY-MM-DD HH:MM`.
pub fn when(ms: i64, now: i64, offset: i32, now_offset: i32) -> String {
    let day = |ms: i64, off: i32| (ms.div_euclid(1000) + i64::from(off)).div_euclid(86_400);
    let d = day(ms, offset);
    if d == day(now, now_offset) {
        return clock(ms, offset);
    }
    let (y, m, dd) = civil_from_days(d);
    format!("{y:04}-{m:02}-{dd:02} {}", clock(ms, offset))
}

/// Days since 1970-01-01 to a (year, month, day) date; Howard Hinnant's
/// algorithm, proleptic Gregorian.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
pub(super) mod tests;
