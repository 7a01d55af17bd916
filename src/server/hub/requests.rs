//! The hub's handlers, one for each request and for each way a session or
//! a room ends. They belong to the root (they reach over every part of
//! the state), and are kept here so that each file stays readable.

use super::accounts::Held;
use super::commits::Deferred;
use super::connections::{OverBudget, State};
use super::devices::Sent;
use super::effects::Refusal;
use super::listing::{Listing, with_names};
use super::rooms::Joined;
use super::{AuthJob, Caller, Change, ConnId, Hub, Level, Output, Query, StoreJob};
use super::{check_text, fit_newest};
use crate::model::{self, DIALOGUE_HISTORY, HISTORY_PAGE, MessageId, Millis, RoomId, Seq, UserId};
use crate::password;
use crate::store::{Origin, Page, Write};
use crate::wire::msg::{
    ClientFrame, ErrorCode, Event, LeaveReason, PrivateLine, Reply, Request, RoomInfo, RoomLine,
    ServerFrame, Topic,
};
use std::sync::Arc;

/// What a request handler returns: a reply now, none (it comes later), or
/// an error reply.
type Answered = Result<Option<Reply>, Refusal>;

impl Hub {
    pub(super) fn request(&mut self, now: Millis, conn: ConnId, frame: ClientFrame) {
        let caller = Caller { conn, id: frame.id };
        let is_message = matches!(frame.req, Request::Say { .. } | Request::SendPrivate { .. });
        let state = match self.conns.heard(now, conn, is_message, &self.limits) {
            None => return,
            Some(Ok(state)) => state,
            Some(Err(over)) => {
                let message = match over {
                    OverBudget::Requests => {
                        let per_sec = self.limits.requests_per_second;
                        format!("too many requests: at most {per_sec} a second, slow down")
                    }
                    OverBudget::Messages => {
                        let per_sec = self.limits.messages_per_second;
                        format!(
                            "too many messages: at most {per_sec} a second; this one was not sent"
                        )
                    }
                };
                let code = ErrorCode::RateLimited;
                return self.reply(caller, Reply::Error { code, message });
            }
        };
        let writes_first = matches!(
            frame.req,
            Request::Say { .. }
                | Request::SendPrivate { .. }
                | Request::Register { .. }
                | Request::CreateRoom { .. }
        );
        if self.storage_down && writes_first {
            let code = ErrorCode::Unavailable;
            let message = "storage unavailable: the server cannot reach its database just now, \
                           so nothing was stored or sent; try again in a moment"
                .to_string();
            return self.reply(caller, Reply::Error { code, message });
        }
        let result = match (state, frame.req) {
            (_, Request::Ping) => Ok(Some(Reply::Pong)),
            (State::Authenticating, _) => Err((
                ErrorCode::NotAllowed,
                "wait for the answer to your login first".to_string(),
            )),
            (State::Anonymous, Request::Register { name, password }) => {
                self.register(caller, name, password)
            }
            (State::Anonymous, Request::Login { name, password }) => {
                self.login(now, caller, name, password)
            }
            (State::Anonymous, Request::Resume { token }) => self.resume(now, caller, token),
            (State::Anonymous, _) => Err((
                ErrorCode::NotAllowed,
                "log in or create an account first".to_string(),
            )),
            (
                State::Online { .. },
                Request::Register { .. } | Request::Login { .. } | Request::Resume { .. },
            ) => Err((
                ErrorCode::AlreadyLoggedIn,
                "you are already logged in: log out first".to_string(),
            )),
            (State::Online { user, room }, req) => self.online(now, caller, user, room, req),
        };
        match result {
            Ok(Some(reply)) => self.reply(caller, reply),
            Ok(None) => {}
            Err((code, message)) => self.reply(caller, Reply::Error { code, message }),
        }
    }

    fn register(&mut self, caller: Caller, name: String, password: String) -> Answered {
        model::check_user_name(&name).map_err(|e| (ErrorCode::InvalidName, e.to_string()))?;
        let key = model::user_key(&name);
        if !self.accounts.is_free(&key) {
            return Err((ErrorCode::NameTaken, "that name is taken".to_string()));
        }
        password::check(&name, &password).map_err(|e| (ErrorCode::WeakPassword, e.to_string()))?;
        self.accounts.reserve(key);
        self.conns.set_state(caller.conn, State::Authenticating);
        self.out.push_back(Output::Auth(AuthJob::Hash {
            caller,
            name,
            password,
        }));
        Ok(None)
    }

    fn login(&mut self, now: Millis, caller: Caller, name: String, password: String) -> Answered {
        let key = model::user_key(&name);
        let user = self.accounts.with_hash(&key);
        self.conns.set_state(caller.conn, State::Authenticating);
        let verify = AuthJob::Verify {
            caller,
            name,
            user,
            password,
        };
        let ip = &self.conns.get(caller.conn).expect("the caller").ip;
        let delay = self.accounts.login_delay(now, &key, ip, &self.limits);
        if delay > 0 {
            self.accounts.hold(now + delay, Held::Auth(verify));
        } else {
            self.out.push_back(Output::Auth(verify));
        }
        Ok(None)
    }

    /// A resume costs no scrypt, so it is answered at once, unless the
    /// address is being throttled: then it waits as a login from there
    /// would, before its token is even looked at (a flood of guesses is
    /// slowed like one of passwords, and the wait tells nothing about the
    /// token).
    fn resume(&mut self, now: Millis, caller: Caller, token: String) -> Answered {
        self.conns.set_state(caller.conn, State::Authenticating);
        let ip = &self.conns.get(caller.conn).expect("the caller").ip;
        let delay = self.accounts.address_delay(now, ip, &self.limits);
        if delay > 0 {
            self.accounts
                .hold(now + delay, Held::Resume { caller, token });
        } else {
            self.resume_now(now, caller, &token);
        }
        Ok(None)
    }

    fn online(
        &mut self,
        now: Millis,
        caller: Caller,
        user: UserId,
        room: Option<RoomId>,
        req: Request,
    ) -> Answered {
        let conn = caller.conn;
        match (room, req) {
            (_, Request::Logout) => {
                self.log_out(now, conn);
                Ok(Some(Reply::Ok))
            }
            (_, Request::Inbox) => {
                let query = Query::Inbox { user };
                self.out
                    .push_back(Output::Store(StoreJob::Query { caller, query }));
                Ok(None)
            }
            (_, Request::OpenDialogue { with }) => {
                let other = self.correspondent(user, &with)?;
                self.mark_read(conn, user, other);
                let query = Query::Dialogue {
                    user,
                    other,
                    page: Page::Before(Seq::MAX),
                    limit: DIALOGUE_HISTORY,
                };
                self.out
                    .push_back(Output::Store(StoreJob::Query { caller, query }));
                Ok(None)
            }
            (_, Request::MarkRead { with }) => {
                let other = self.correspondent(user, &with)?;
                self.mark_read(conn, user, other);
                Ok(Some(Reply::Ok))
            }
            (
                _,
                Request::SendPrivate {
                    to,
                    text,
                    client_id,
                },
            ) => {
                let recipient = self.correspondent(user, &to)?;
                check_text(&text)?;
                let Some(origin) = self.first_time(caller, client_id) else {
                    return Ok(None);
                };
                let text: Arc<str> = text.into();
                let line = PrivateLine {
                    id: self.take_message_id().0 as u64,
                    seq: self.dialogues.next_seq(user, recipient),
                    from: self.accounts.name(user).clone(),
                    to: self.accounts.name(recipient).clone(),
                    text: text.clone(),
                    time: now,
                };
                let seq = self.persist(Write::PrivateMessage {
                    id: MessageId(line.id as i64),
                    seq: line.seq,
                    origin,
                    sender: user,
                    recipient,
                    text,
                    sent: now,
                });
                let sender = user;
                let private = Deferred::Private {
                    sender,
                    recipient,
                    line,
                };
                self.commits.defer(seq, private);
                let reply = Reply::Ok;
                self.commits.defer(seq, Deferred::Reply { caller, reply });
                Ok(None)
            }
            (_, Request::History { of, before, limit }) => {
                let before = if before == 0 { Seq::MAX } else { before };
                let query = self.page_query(user, room, of, Page::Before(before), limit)?;
                self.out
                    .push_back(Output::Store(StoreJob::Query { caller, query }));
                Ok(None)
            }
            (_, Request::CatchUp { of, after, limit }) => {
                self.catch_up(caller, user, room, of, after, limit)
            }
            (Some(_), Request::CreateRoom { .. } | Request::JoinRoom { .. }) => Err((
                ErrorCode::NotAllowed,
                "you are in a room already: leave it first".to_string(),
            )),
            (None, Request::CreateRoom { name, capacity }) => {
                self.create_room(now, caller, user, &name, capacity)
            }
            (None, Request::JoinRoom { room }) => self.join_room(caller, user, room),
            (None, Request::LeaveRoom | Request::Say { .. } | Request::Members)
            | (None, Request::Kick { .. }) => Err((
                ErrorCode::NotMember,
                "you are not in a room: create or join one first".to_string(),
            )),
            (Some(room), Request::LeaveRoom) => {
                self.leave_room(now, conn, room, LeaveReason::Left);
                Ok(Some(Reply::Ok))
            }
            (Some(room), Request::Members) if self.shared => {
                self.ask_members(caller, room, Listing::Members);
                Ok(None)
            }
            (Some(room), Request::Members) => Ok(Some(Reply::Members {
                members: self.member_names(room),
            })),
            (Some(room), Request::Say { text, client_id }) => {
                check_text(&text)?;
                let Some(origin) = self.first_time(caller, client_id) else {
                    return Ok(None);
                };
                let text: Arc<str> = text.into();
                let line = RoomLine {
                    id: self.take_message_id().0 as u64,
                    seq: self.rooms.next_seq(room),
                    from: self.accounts.name(user).clone(),
                    text: text.clone(),
                    time: now,
                };
                let seq = self.persist(Write::RoomMessage {
                    id: MessageId(line.id as i64),
                    seq: line.seq,
                    origin,
                    room,
                    sender: user,
                    text,
                    sent: now,
                });
                self.commits.defer(seq, Deferred::Room { room, line });
                let reply = Reply::Ok;
                self.commits.defer(seq, Deferred::Reply { caller, reply });
                Ok(None)
            }
            (Some(room), Request::Kick { name }) => self.kick(user, room, &name),
            (
                _,
                Request::Register { .. }
                | Request::Login { .. }
                | Request::Resume { .. }
                | Request::Ping,
            ) => {
                unreachable!("handled before")
            }
        }
    }

    fn create_room(
        &mut self,
        now: Millis,
        caller: Caller,
        user: UserId,
        name: &str,
        capacity: u32,
    ) -> Answered {
        let conn = caller.conn;
        let (room, name) = self.rooms.create(name, capacity, user, conn)?;
        let seq = self.persist(Write::Room {
            id: room,
            name: name.clone(),
            admin: user,
            capacity,
            created: now,
        });
        let state = State::Online {
            user,
            room: Some(room),
        };
        self.conns.set_state(conn, state);
        self.directory(Change::Entered { conn, room });
        let admin = self.accounts.name(user).to_string();
        self.log(
            Level::Info,
            format!("room #{room} \"{name}\" created by {admin} for {capacity}"),
        );
        let reply = Reply::Room {
            room: RoomInfo {
                id: room.0 as u64,
                name,
                admin: admin.clone(),
                capacity,
            },
            members: vec![admin],
            history: Vec::new(),
        };
        let created = Deferred::RoomCreated {
            caller,
            room,
            reply,
        };
        self.commits.defer(seq, created);
        Ok(None)
    }

    /// A join: at once, unless the database is shared and this is a new
    /// member, whom the database lets in (or not) first.
    fn join_room(&mut self, caller: Caller, user: UserId, room_no: u64) -> Answered {
        if self.shared && self.rooms.is_new_member(room_no, user)? {
            let room = RoomId(room_no as i64);
            let seq = self.persist(Write::Join { room, user });
            let taken = true;
            let join = Deferred::Join {
                caller,
                user,
                room_no,
                taken,
            };
            self.commits.defer(seq, join);
            return Ok(None);
        }
        if self.shared {
            // In already (another session, or a held place): entered once
            // the store says who else is in it.
            let room = RoomId(room_no as i64);
            self.ask_members(caller, room, Listing::Join { user, room_no });
            return Ok(None);
        }
        self.join_now(caller.conn, user, room_no)
    }

    /// The shared database answered a join (`taken`: it let the user in;
    /// `ok`: it answered at all). Let in, the user enters once the store
    /// says who else is in the room, through the other servers.
    pub(super) fn joined(
        &mut self,
        caller: Caller,
        user: UserId,
        room_no: u64,
        taken: bool,
        ok: bool,
    ) {
        if taken && ok {
            let room = RoomId(room_no as i64);
            self.ask_members(caller, room, Listing::Let { user, room_no });
            return;
        }
        self.enter(caller, user, room_no, (taken, ok), Vec::new());
    }

    /// [`Hub::joined`], once the members on the other servers (`elsewhere`)
    /// are known.
    pub(super) fn enter(
        &mut self,
        caller: Caller,
        user: UserId,
        room_no: u64,
        (taken, ok): (bool, bool),
        elsewhere: Vec<String>,
    ) {
        let room = RoomId(room_no as i64);
        let still_here = matches!(
            self.conns.state(caller.conn),
            Some(State::Online { user: u, room: None }) if u == user
        );
        let result = match (taken, still_here) {
            (true, true) => self.join_now(caller.conn, user, room_no),
            (false, _) if !ok => Ok(Some(super::unavailable())),
            (false, _) => match self.rooms.get(room) {
                Some(r) => Err(super::rooms::full(room_no, r.capacity as usize, r.capacity)),
                None => Err((ErrorCode::RoomClosed, format!("room #{room_no} is closed"))),
            },
            (true, false) => Err((
                ErrorCode::NotAllowed,
                "you are in a room already, or logged out, since you asked: join again".to_string(),
            )),
        };
        if taken
            && !self
                .rooms
                .get(room)
                .is_some_and(|r| r.users().contains(&user))
        {
            // Let in by the database but not here after all.
            let kicked = false;
            self.persist(Write::Leave { room, user, kicked });
        }
        match result {
            Ok(Some(reply)) => self.reply(caller, with_names(reply, elsewhere)),
            Ok(None) => {}
            Err((code, message)) => self.reply(caller, Reply::Error { code, message }),
        }
    }

    pub(super) fn join_now(&mut self, conn: ConnId, user: UserId, room_no: u64) -> Answered {
        let (room_id, joined) = self.rooms.join(room_no, user, conn)?;
        let room = self.rooms.get(room_id).expect("joined");
        let history = fit_newest(room.history.iter().cloned().collect(), |l: &RoomLine| {
            l.text.len() + l.from.len() + 32
        });
        let info = RoomInfo {
            id: room_no,
            name: room.name.clone(),
            admin: self.accounts.name(room.admin).to_string(),
            capacity: room.capacity,
        };
        let name = self.accounts.name(user).to_string();
        let state = State::Online {
            user,
            room: Some(room_id),
        };
        self.conns.set_state(conn, state);
        // Told to the room as it was: the joiner enters it only after. A
        // user already there from another device is not news, nor is one
        // back from a blip the room was not told of.
        let news = match joined {
            Joined::New => Some(Event::Joined {
                room: room_no,
                name: name.clone(),
            }),
            Joined::Back { announced: true } => {
                if self.shared {
                    let (room, since) = (room_id, None);
                    self.persist(Write::Away { room, user, since });
                }
                Some(Event::Back {
                    room: room_no,
                    name: name.clone(),
                })
            }
            Joined::Again | Joined::Back { announced: false } => None,
        };
        if let Some(event) = news {
            self.tell_room_of(room_id, conn, event);
        }
        self.directory(Change::Entered {
            conn,
            room: room_id,
        });
        self.log(Level::Info, format!("{name} joined room #{room_no}"));
        Ok(Some(Reply::Room {
            room: info,
            members: self.member_names(room_id),
            history,
        }))
    }

    fn kick(&mut self, user: UserId, room_id: RoomId, name: &str) -> Answered {
        let named = self.accounts.named(name);
        let (target, target_conns) = match self.rooms.kick(room_id, user, named, name) {
            // In the room through another server, perhaps: the kick goes
            // to the database, and the bus takes it there.
            Err((ErrorCode::NoSuchUser, _)) if self.shared && named.is_some_and(|t| t != user) => {
                let (room, user, kicked) = (room_id, named.expect("named"), true);
                self.persist(Write::Leave { room, user, kicked });
                return Ok(Some(Reply::Ok));
            }
            result => result?,
        };
        let admin = self.accounts.name(user).to_string();
        let target_name = self.accounts.name(target).to_string();
        let room_no = room_id.0 as u64;
        for target_conn in target_conns {
            let state = State::Online {
                user: target,
                room: None,
            };
            self.conns.set_state(target_conn, state);
            self.directory(Change::Left { conn: target_conn });
            self.send(
                target_conn,
                ServerFrame::Event {
                    event: Event::Kicked {
                        room: room_no,
                        by: admin.clone(),
                    },
                },
            );
        }
        self.member_left(room_id, target, target_name.clone(), LeaveReason::Kicked);
        self.log(
            Level::Info,
            format!("{admin} kicked {target_name} from room #{room_no}"),
        );
        Ok(Some(Reply::Ok))
    }

    /// A message's client id, checked: `Some` (with its origin, if it has
    /// an id) for a message to store; `None` for one its device sent
    /// before, which is not stored again: it is answered `ok` once every
    /// write so far is committed (its first copy among them, if that is
    /// still on its way), as the first copy was or will be.
    fn first_time(&mut self, caller: Caller, client_id: u64) -> Option<Option<Origin>> {
        match self.devices.sent(caller.conn, client_id) {
            Sent::Unnumbered => Some(None),
            Sent::New(origin) => Some(Some(origin)),
            Sent::Repeat => {
                if self.commits.all_reported() {
                    self.reply(caller, Reply::Ok);
                } else {
                    let reply = Reply::Ok;
                    self.commits
                        .defer_behind_all(Deferred::Reply { caller, reply });
                }
                None
            }
        }
    }

    /// The store read for a page of a conversation `user` may read: the
    /// room they are in, or a dialogue with someone else.
    fn page_query(
        &self,
        user: UserId,
        room: Option<RoomId>,
        of: Topic,
        page: Page,
        limit: u32,
    ) -> Result<Query, Refusal> {
        let limit = (limit as usize).clamp(1, HISTORY_PAGE);
        match of {
            Topic::Dialogue { with } => Ok(Query::Dialogue {
                user,
                other: self.correspondent(user, &with)?,
                page,
                limit,
            }),
            Topic::Room { room: asked } => match room {
                Some(room) if room.0 as u64 == asked => Ok(Query::Room { room, page, limit }),
                _ => Err((
                    ErrorCode::NotMember,
                    format!("you are not in room #{asked}: join it to read its history"),
                )),
            },
        }
    }

    /// `catch_up`: what came after the last message the client saw, from
    /// the store; at once if nothing did.
    fn catch_up(
        &mut self,
        caller: Caller,
        user: UserId,
        room: Option<RoomId>,
        of: Topic,
        after: Seq,
        limit: u32,
    ) -> Answered {
        let query = self.page_query(user, room, of, Page::After(after), limit)?;
        let (last, what) = match &query {
            Query::Room { room, .. } => (self.rooms.last_committed(*room), format!("room #{room}")),
            Query::Dialogue { other, .. } => (
                self.dialogues.last_committed(user, *other),
                format!("your dialogue with {}", self.accounts.name(*other)),
            ),
            Query::Inbox { .. } | Query::Device { .. } | Query::Members { .. } => {
                unreachable!("a page")
            }
        };
        if after > last {
            return Err((
                ErrorCode::NotAllowed,
                format!(
                    "{what} has {last} messages so far, so message {after} cannot have been \
                     seen: catch up from the number of the last message you were shown"
                ),
            ));
        }
        if after == last {
            return Ok(Some(match query {
                Query::Room { room, .. } => Reply::RoomCaughtUp {
                    room: room.0 as u64,
                    skipped: 0,
                    history: Vec::new(),
                },
                _ => Reply::DialogueCaughtUp {
                    with: of_name(&self.accounts, &query),
                    skipped: 0,
                    history: Vec::new(),
                },
            }));
        }
        self.out
            .push_back(Output::Store(StoreJob::Query { caller, query }));
        Ok(None)
    }

    fn correspondent(&self, user: UserId, name: &str) -> Result<UserId, Refusal> {
        let Some(other) = self.accounts.named(name) else {
            return Err((
                ErrorCode::NoSuchUser,
                format!("there is no user named \"{name}\": check the spelling"),
            ));
        };
        if other == user {
            return Err((
                ErrorCode::NotAllowed,
                "that is you: choose someone else to write to".to_string(),
            ));
        }
        Ok(other)
    }

    /// Marks what `other` sent `user` read, for every session of `user`:
    /// the others are told, so their unread counts follow at once.
    fn mark_read(&mut self, reader: ConnId, user: UserId, other: UserId) {
        if self.unread.clear(user, other) > 0 {
            self.persist(Write::MarkRead {
                recipient: user,
                sender: other,
                upto: self.dialogues.last_committed(user, other),
            });
            let read = Event::Read {
                with: self.accounts.name_of(other),
                unread: self.unread.total(user),
            };
            let others: Vec<ConnId> = self.accounts.sessions(user).to_vec();
            for conn in others.into_iter().filter(|&c| c != reader) {
                let event = read.clone();
                self.send(conn, ServerFrame::Event { event });
            }
        }
    }

    pub(super) fn member_names(&self, room: RoomId) -> Vec<String> {
        let room = self.rooms.get(room).expect("an open room");
        room.users()
            .into_iter()
            .map(|u| self.accounts.name(u).to_string())
            .collect()
    }
}

/// The registered spelling of a dialogue query's partner.
fn of_name(accounts: &super::accounts::Accounts, query: &Query) -> String {
    match query {
        Query::Dialogue { other, .. } => accounts.name_of(*other),
        _ => String::new(),
    }
}
