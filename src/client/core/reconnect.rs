//! Riding out a lost connection: attempts after a backoff, the screen
//! and the typed line kept, lines sent meanwhile kept in the outbox with
//! their client ids, and, once the token resumed the session, the room
//! joined again, the conversation caught up by sequence number and the
//! outbox sent again (see the module above).

use super::{
    CATCH_UP, Core, Effect, ID_BLOCK, Lost, MAX_PENDING, OFFLINE, Outgoing, Pending, Screen,
    UserInput, backoff, seconds,
};
use crate::client::session::{self, Command, Line, Place, Session, Tone};
use crate::wire::msg::{Request, Topic};

impl Core {
    /// The connection dropped under a session that can be resumed: keep
    /// the screen, and try again after a while.
    pub(super) fn lose_connection(&mut self, why: Lost) {
        let screen = match self.pending.take() {
            Some(
                Pending::More { back: screen }
                | Pending::Back { screen }
                | Pending::Rejoin { screen }
                | Pending::CatchUp { screen },
            ) => screen,
            Some(Pending::Members | Pending::Kick) => Screen::Room,
            Some(Pending::Leave) => {
                // The room lets the place go when the grace period ends.
                if let Some(s) = self.session.as_mut() {
                    s.to_menu();
                }
                Screen::Menu
            }
            Some(_) => Screen::Menu,
            None => std::mem::replace(&mut self.screen, Screen::Busy),
        };
        self.connected = false;
        self.emit(Effect::Close);
        if self.reconnect.is_none() {
            let why = match why {
                Lost::Bye { reason, .. } => session::clean(&reason),
                Lost::Closed(why) => why,
                Lost::Timeout => "the server did not answer in time".to_string(),
            };
            self.line(Line::of(
                Tone::Error,
                format!("Connection lost: {why}. Reconnecting by itself; what you type is kept."),
            ));
        }
        self.reconnect = Some(0);
        if screen == Screen::Menu {
            self.ask_main_menu();
        }
        self.screen = screen;
        self.next_attempt();
    }

    /// Waits before the next attempt, saying so under the prompt.
    pub(super) fn next_attempt(&mut self) {
        let attempt = self.reconnect.unwrap_or(0) + 1;
        self.reconnect = Some(attempt);
        let random = self.random();
        let wait = backoff(attempt, random);
        self.emit(Effect::Timer(wait));
        let when = format!("reconnecting in {}", seconds(wait));
        self.banner(&when, attempt);
    }

    pub(super) fn banner(&mut self, when: &str, attempt: u32) {
        let text = format!("Connection lost, {when}, attempt {attempt}; Ctrl-C to quit");
        self.emit(Effect::Banner(Some(Line::of(Tone::Error, text))));
    }

    pub(super) fn on_timer(&mut self) {
        if let Some(attempt) = self.reconnect {
            self.banner("reconnecting now", attempt);
            self.emit(Effect::Dial);
        }
    }

    /// What was typed while the connection is down: lines to send wait
    /// in the outbox; anything that needs the server is refused.
    pub(super) fn on_user_offline(&mut self, input: UserInput) {
        let command = match (&self.screen, input) {
            (Screen::Room | Screen::Chat { .. }, UserInput::Text(text)) => {
                if matches!(self.screen, Screen::Room) {
                    session::parse_room_input(&text)
                } else {
                    session::parse_chat_input(&text)
                }
            }
            _ => return self.say(Tone::Dim, OFFLINE),
        };
        match command {
            Command::Say(text) => self.send_message(text),
            Command::Help => match &self.screen {
                Screen::Chat { with, exit } => {
                    let help = session::chat_help_to(with, *exit);
                    self.show(help)
                }
                _ => self.show(session::room_help()),
            },
            Command::Nothing => {}
            Command::Refused(line) => self.line(line),
            _ => self.say(Tone::Dim, OFFLINE),
        }
    }

    /// Sends a line typed on the room or chat screen, with a new client
    /// id; while the connection is down it waits in the outbox.
    pub(super) fn send_message(&mut self, text: String) {
        let (req, room) = match (&self.screen, self.session.as_ref().map(Session::place)) {
            (Screen::Room, Some(Place::Room { info, .. })) => (
                Request::Say {
                    text: text.clone(),
                    client_id: 0,
                },
                Some(info.id),
            ),
            (Screen::Chat { with, .. }, _) => (
                Request::SendPrivate {
                    to: with.clone(),
                    text: text.clone(),
                    client_id: 0,
                },
                None,
            ),
            _ => return,
        };
        if self.reconnect.is_some() && self.outbox.len() >= MAX_PENDING {
            return self.error(&format!(
                "{MAX_PENDING} lines are waiting for the connection already: this one was not kept"
            ));
        }
        let id = self.client_id();
        let req = match req {
            Request::Say { text, .. } => Request::Say {
                text,
                client_id: id,
            },
            Request::SendPrivate { to, text, .. } => Request::SendPrivate {
                to,
                text,
                client_id: id,
            },
            other => other,
        };
        self.outbox.push(Outgoing {
            id,
            req: req.clone(),
            room,
        });
        if self.reconnect.is_some() {
            if let Some(s) = self.session.as_ref() {
                let lines = s.pending((self.now)(), &text);
                self.show(lines);
            }
        } else {
            self.emit(Effect::Send(req));
        }
    }

    /// A new client id, above every one this device used before: the saved
    /// login always names a first id above those handed out.
    pub(super) fn client_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        if id >= self.id_floor {
            self.save_login();
        }
        id
    }

    /// Saves the token with room for the next [`ID_BLOCK`] client ids.
    pub(super) fn save_login(&mut self) {
        if let Some(token) = self.token.clone() {
            self.id_floor = self.next_id + ID_BLOCK;
            self.emit(Effect::SaveToken {
                token,
                next_id: self.id_floor,
            });
        }
    }

    /// Back after a reconnect: the room or conversation on the screen is
    /// picked up where it was.
    pub(super) fn restore(&mut self, screen: Screen) {
        let place = self.session.as_ref().map(|s| s.place().clone());
        match (&screen, place) {
            (Screen::Room, Some(Place::Room { info, .. })) => {
                let room = info.id;
                self.call(Pending::Rejoin { screen }, Request::JoinRoom { room });
            }
            (Screen::Chat { with, .. }, _) => {
                let of = Topic::Dialogue { with: with.clone() };
                self.catch_up(screen, of);
            }
            (Screen::Menu, _) => {
                self.flush_outbox();
                self.enter_menu();
            }
            (Screen::Inbox, _) => {
                self.flush_outbox();
                self.open_inbox();
            }
            _ => {
                // A question on the way to something: it stays asked.
                self.screen = screen;
                self.flush_outbox();
            }
        }
    }

    pub(super) fn catch_up(&mut self, screen: Screen, of: Topic) {
        let after = self.session.as_ref().map_or(0, Session::newest);
        let req = Request::CatchUp {
            of,
            after,
            limit: CATCH_UP,
        };
        self.call(Pending::CatchUp { screen }, req);
    }

    /// Sends again, with their ids, the messages not acknowledged; a
    /// line for a room the session is no longer in is dropped, saying so.
    pub(super) fn flush_outbox(&mut self) {
        let here = match self.session.as_ref().map(Session::place) {
            Some(Place::Room { info, .. }) => Some(info.id),
            _ => None,
        };
        let (keep, gone): (Vec<Outgoing>, Vec<Outgoing>) = std::mem::take(&mut self.outbox)
            .into_iter()
            .partition(|o| o.room.is_none() || o.room == here);
        for o in &keep {
            self.emit(Effect::Send(o.req.clone()));
        }
        self.outbox = keep;
        self.report_unsent(gone, "you are no longer in that room");
    }

    pub(super) fn drop_outbox(&mut self, why: &str) {
        let gone = std::mem::take(&mut self.outbox);
        self.report_unsent(gone, why);
    }

    pub(super) fn report_unsent(&mut self, gone: Vec<Outgoing>, why: &str) {
        for o in gone {
            if let Request::Say { text, .. } | Request::SendPrivate { text, .. } = o.req {
                self.error(&format!(
                    "not sent ({why}): \"{}\"",
                    session::preview(&text, 60)
                ));
            }
        }
    }
}
