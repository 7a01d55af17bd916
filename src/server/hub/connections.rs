//! The connections the hub knows and the state of each: anonymous,
//! waiting for a password check, or logged in (and in which room); the
//! login deadline, the idle clock (ping, then close), and the request and
//! message budgets. It decides who is late or silent; the hub root acts on
//! it.

use super::effects::{ConnId, ConnMap};
use crate::model::{Millis, RoomId, UserId};
use crate::server::limits::{Bucket, Limits};

#[derive(Clone, Copy)]
pub(super) enum State {
    Anonymous,
    /// Waiting for scrypt; further requests are refused until it answers.
    Authenticating,
    Online {
        user: UserId,
        room: Option<RoomId>,
    },
}

pub(super) struct Conn {
    pub peer: String,
    pub ip: String,
    pub state: State,
    since: Millis,
    /// Whether this connection has been logged in; the login deadline
    /// applies only before that (after a logout the idle rules do).
    was_online: bool,
    last_heard: Millis,
    pinged: bool,
    /// Chat messages (room and private).
    messages: Bucket,
    /// Every request, so that no request can be spammed.
    requests: Bucket,
}

/// What a sweep of the deadlines found.
#[derive(Default)]
pub(super) struct Overdue {
    /// Not logged in within the login deadline.
    pub late: Vec<ConnId>,
    /// Silent past the idle limit.
    pub silent: Vec<ConnId>,
    /// Silent long enough to be asked whether they are still there.
    pub ping: Vec<ConnId>,
}

/// Why a request is refused before it is even looked at.
pub(super) enum OverBudget {
    Requests,
    Messages,
}

#[derive(Default)]
pub(super) struct Connections {
    conns: ConnMap<Conn>,
}

impl Connections {
    pub fn len(&self) -> usize {
        self.conns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }

    pub fn ids(&self) -> Vec<ConnId> {
        self.conns.keys().copied().collect()
    }

    pub fn get(&self, conn: ConnId) -> Option<&Conn> {
        self.conns.get(&conn)
    }

    pub fn contains(&self, conn: ConnId) -> bool {
        self.conns.contains_key(&conn)
    }

    pub fn state(&self, conn: ConnId) -> Option<State> {
        self.conns.get(&conn).map(|c| c.state)
    }

    pub fn connect(
        &mut self,
        now: Millis,
        conn: ConnId,
        peer: String,
        ip: String,
        limits: &Limits,
    ) {
        self.conns.insert(
            conn,
            Conn {
                peer,
                ip,
                state: State::Anonymous,
                since: now,
                was_online: false,
                last_heard: now,
                pinged: false,
                messages: Bucket::full(limits.message_burst, now),
                requests: Bucket::full(limits.request_burst, now),
            },
        );
    }

    pub fn remove(&mut self, conn: ConnId) {
        self.conns.remove(&conn);
    }

    pub fn set_state(&mut self, conn: ConnId, state: State) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.state = state;
            if matches!(state, State::Online { .. }) {
                c.was_online = true;
            }
        }
    }

    /// Takes the connection out of its room, if it is logged in.
    pub fn clear_room(&mut self, conn: ConnId) {
        if let Some(c) = self.conns.get_mut(&conn)
            && let State::Online { room, .. } = &mut c.state
        {
            *room = None;
        }
    }

    /// A request arrived: the client is alive. Spends the request's share
    /// of the budgets (a chat message also spends one of the message
    /// budget once logged in). `None` if the connection is unknown.
    pub fn heard(
        &mut self,
        now: Millis,
        conn: ConnId,
        is_message: bool,
        limits: &Limits,
    ) -> Option<Result<State, OverBudget>> {
        let c = self.conns.get_mut(&conn)?;
        c.last_heard = now;
        c.pinged = false;
        if !c
            .requests
            .take(limits.request_burst, limits.requests_per_second, now)
        {
            return Some(Err(OverBudget::Requests));
        }
        if is_message
            && matches!(c.state, State::Online { .. })
            && !c
                .messages
                .take(limits.message_burst, limits.messages_per_second, now)
        {
            return Some(Err(OverBudget::Messages));
        }
        Some(Ok(c.state))
    }

    /// Who missed the login deadline or has been silent too long; marks
    /// those to be pinged as pinged.
    pub fn overdue(&mut self, now: Millis, limits: &Limits) -> Overdue {
        let mut found = Overdue::default();
        for (&conn, c) in &mut self.conns {
            let quiet = now - c.last_heard;
            match c.state {
                State::Anonymous | State::Authenticating
                    if !c.was_online && now - c.since >= limits.login_timeout =>
                {
                    found.late.push(conn)
                }
                _ if !c.was_online => {}
                _ if quiet >= limits.idle_close => found.silent.push(conn),
                _ if quiet >= limits.idle_ping && !c.pinged => {
                    c.pinged = true;
                    found.ping.push(conn);
                }
                _ => {}
            }
        }
        found
    }
}
