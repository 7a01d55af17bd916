//! Two hubs sharing one store, as two servers on one PostgreSQL with a
//! bus between them: each makes ids of its own slot, the store numbers
//! every message in its conversation at commit, and what one commits is
//! handed to the other ([`Input::Replicated`]) while the bus is up. The
//! store answers the gaps a hub reads from what both committed.

use super::*;
use crate::model::DeviceId;
use crate::model::IdSpace;
use crate::server::limits::ORPHAN_CHECK;
use crate::store::{DeviceRow, PrivateRow, RoomRow, TokenHash};
use std::collections::HashMap;

/// The shared store: every write committed, in commit order, and each
/// conversation's last number.
#[derive(Default)]
struct Store {
    writes: Vec<Write>,
    rooms: HashMap<RoomId, Seq>,
    dialogues: HashMap<(UserId, UserId), Seq>,
    /// Each open room's capacity and members.
    members: HashMap<RoomId, (u32, Vec<UserId>)>,
}

impl Store {
    /// The store's answer for a write: the number it gives a message (its
    /// conversation's next), 1 or 0 for a join (room of space or not).
    fn number(&mut self, write: &Write) -> Option<Seq> {
        match *write {
            Write::Room {
                id,
                admin,
                capacity,
                ..
            } => {
                self.members.insert(id, (capacity, vec![admin]));
                return None;
            }
            Write::CloseRoom { id, .. } => {
                self.members.remove(&id);
                return None;
            }
            Write::Join { room, user } => {
                let Some((capacity, members)) = self.members.get_mut(&room) else {
                    return Some(0);
                };
                if !members.contains(&user) {
                    if members.len() >= *capacity as usize {
                        return Some(0);
                    }
                    members.push(user);
                }
                return Some(1);
            }
            Write::Leave { room, user, .. } => {
                if let Some((_, members)) = self.members.get_mut(&room) {
                    members.retain(|&u| u != user);
                }
                return None;
            }
            _ => {}
        }
        let last = match *write {
            Write::RoomMessage { room, .. } => self.rooms.entry(room).or_default(),
            Write::PrivateMessage {
                sender, recipient, ..
            } => (self.dialogues)
                .entry((sender.min(recipient), sender.max(recipient)))
                .or_default(),
            _ => return None,
        };
        *last += 1;
        Some(*last)
    }

    fn name(&self, user: UserId) -> String {
        self.writes
            .iter()
            .find_map(|w| match w {
                Write::User { id, name, .. } if *id == user => Some(name.clone()),
                _ => None,
            })
            .expect("a stored user")
    }

    /// The device holding a token, as the store holds it after every
    /// write, with its user.
    fn device(&self, token_hash: TokenHash) -> Option<(DeviceRow, UserRow)> {
        let mut devices: HashMap<DeviceId, DeviceRow> = HashMap::new();
        for write in &self.writes {
            match *write {
                Write::Device {
                    id,
                    user,
                    token_hash,
                    created,
                } => {
                    let row = DeviceRow {
                        id,
                        user,
                        token_hash,
                        previous_hash: None,
                        created,
                        last_used: created,
                        last_client_id: 0,
                    };
                    devices.insert(id, row);
                }
                Write::RotateDevice {
                    id,
                    token_hash,
                    previous_hash,
                    used,
                } => {
                    if let Some(row) = devices.get_mut(&id) {
                        row.token_hash = token_hash;
                        row.previous_hash = Some(previous_hash);
                        row.last_used = used;
                    }
                }
                Write::DeleteDevice { id } => {
                    devices.remove(&id);
                }
                _ => {}
            }
        }
        let device = devices.into_values().find(|d| d.token_hash == token_hash)?;
        let user = self.writes.iter().find_map(|w| match w {
            Write::User {
                id,
                name,
                password_hash,
                ..
            } if *id == device.user => Some(UserRow {
                id: *id,
                name: name.clone(),
                password_hash: password_hash.clone(),
            }),
            _ => None,
        })?;
        Some((device, user))
    }

    fn fill(&self, gap: Gap) -> Filled {
        match gap {
            Gap::Room { room, after } => Filled::Room(
                (self.writes.iter())
                    .filter_map(|w| match w {
                        Write::RoomMessage {
                            id,
                            seq,
                            room: r,
                            sender,
                            text,
                            sent,
                            ..
                        } if *r == room && *seq > after => Some(RoomRow {
                            id: *id,
                            seq: *seq,
                            sender: *sender,
                            sender_name: self.name(*sender),
                            text: text.to_string(),
                            sent: *sent,
                        }),
                        _ => None,
                    })
                    .collect(),
            ),
            Gap::Dialogue { a, b, after } => Filled::Dialogue(
                (self.writes.iter())
                    .filter_map(|w| match w {
                        Write::PrivateMessage {
                            id,
                            seq,
                            sender,
                            recipient,
                            text,
                            sent,
                            ..
                        } if (*sender).min(*recipient) == a
                            && (*sender).max(*recipient) == b
                            && *seq > after =>
                        {
                            Some(PrivateRow {
                                id: *id,
                                seq: *seq,
                                sender: *sender,
                                sender_name: self.name(*sender),
                                recipient: *recipient,
                                text: text.to_string(),
                                sent: *sent,
                            })
                        }
                        _ => None,
                    })
                    .collect(),
            ),
        }
    }
}

struct Cluster {
    nodes: [World; 2],
    store: Store,
    /// Whether what one node commits reaches the other.
    bus_up: bool,
    /// The places the store says nobody keeps (while they are in their
    /// rooms), told to node 0 (the lowest running slot) when it asks.
    orphans: Vec<(RoomId, UserId)>,
}

impl Cluster {
    fn new() -> Cluster {
        Cluster::with(harness::no_grace())
    }

    fn with(limits: Limits) -> Cluster {
        let node = |slot| {
            let mut w = World::new();
            // Each server's own randomness, so their tokens differ.
            let rng = rand::SeedableRng::seed_from_u64(slot as u64);
            w.hub = Hub::new(harness::snapshot(Vec::new()), limits.clone(), rng);
            w.hub.use_ids(IdSpace { slot, step: 2 });
            w.auto_commit = false;
            // Queries go to the shared store below.
            w.auto_answer = false;
            w
        };
        Cluster {
            nodes: [node(0), node(1)],
            store: Store::default(),
            bus_up: true,
            orphans: Vec::new(),
        }
    }

    /// Commits what each node wrote, carries it to the other, and answers
    /// the gaps they read, until nothing moves.
    fn settle(&mut self) {
        loop {
            let mut moved = false;
            for i in 0..2 {
                if !self.nodes[i].uncommitted.is_empty() {
                    let store = &mut self.store;
                    let stored = self.nodes[i].commit_renumbered(|w| store.number(w));
                    store.writes.extend(stored.iter().cloned());
                    if self.bus_up {
                        self.nodes[1 - i].handle(Input::Replicated { writes: stored });
                    }
                    moved = true;
                }
                for job in std::mem::take(&mut self.nodes[i].jobs) {
                    match job {
                        harness::Job::Fill(gap) => {
                            let filled = self.store.fill(gap);
                            self.nodes[i].handle(Input::Filled { gap, filled });
                        }
                        harness::Job::Query {
                            caller,
                            query: Query::Members { room },
                        } => {
                            let store = &self.store;
                            let names = (store.members.get(&room))
                                .map(|(_, m)| m.iter().map(|&u| store.name(u)).collect())
                                .unwrap_or_default();
                            let answer = Answer::Members(names);
                            self.nodes[i].handle(Input::Answered { caller, answer });
                        }
                        harness::Job::Query {
                            caller,
                            query: Query::Device { token_hash },
                        } => {
                            let answer = Answer::Device(self.store.device(token_hash));
                            self.nodes[i].handle(Input::Answered { caller, answer });
                        }
                        harness::Job::Orphans if i == 0 => {
                            // Those still in their rooms.
                            let members = &self.store.members;
                            let found = Ok((self.orphans.iter())
                                .filter(|(r, u)| members.get(r).is_some_and(|m| m.1.contains(u)))
                                .copied()
                                .collect());
                            self.nodes[i].handle(Input::Orphans { found });
                        }
                        job => self.nodes[i].answer(job),
                    }
                    moved = true;
                }
            }
            if !moved {
                return;
            }
        }
    }

    /// Time passes on both nodes, long enough for a message held for the
    /// ones before it to stop waiting for the bus (their gap is then read
    /// from the store), and what follows settles.
    fn wait_out(&mut self) {
        for node in &mut self.nodes {
            node.now += crate::server::hub::reorder::WAIT;
            node.timeout();
        }
        self.settle();
    }

    fn ask(&mut self, node: usize, conn: ConnId, req: Request) -> Option<Reply> {
        let id = self.nodes[node].request(conn, req);
        self.settle();
        self.nodes[node].reply_to(conn, id)
    }

    fn user(&mut self, node: usize, name: &str) -> ConnId {
        let register = Request::Register {
            name: name.into(),
            password: PW.into(),
        };
        self.enter(node, name, register)
    }

    fn login(&mut self, node: usize, name: &str) -> ConnId {
        let login = Request::Login {
            name: name.into(),
            password: PW.into(),
        };
        self.enter(node, name, login)
    }

    /// A new connection to `node`, logged in by `request` as `name`.
    fn enter(&mut self, node: usize, name: &str, request: Request) -> ConnId {
        let conn = self.nodes[node].connect();
        match self.ask(node, conn, request) {
            Some(Reply::LoggedIn { .. }) => conn,
            other => panic!("{name} on node {node}: {other:?}"),
        }
    }

    fn say(&mut self, node: usize, conn: ConnId, text: &str) {
        let say = Request::Say {
            text: text.into(),
            client_id: 0,
        };
        assert_eq!(self.ask(node, conn, say), Some(Reply::Ok), "{text}");
    }

    fn send(&mut self, node: usize, conn: ConnId, to: &str, text: &str) {
        let send = Request::SendPrivate {
            to: to.into(),
            text: text.into(),
            client_id: 0,
        };
        assert_eq!(self.ask(node, conn, send), Some(Reply::Ok), "{text}");
    }

    /// A room made on `node`, by the number its creator was told.
    fn create_room(&mut self, node: usize, conn: ConnId, name: &str) -> u64 {
        self.create_room_of(node, conn, name, 10)
    }

    fn create_room_of(&mut self, node: usize, conn: ConnId, name: &str, capacity: u32) -> u64 {
        let create = Request::CreateRoom {
            name: name.into(),
            capacity,
        };
        match self.ask(node, conn, create) {
            Some(Reply::Room { room, .. }) => room.id,
            other => panic!("{name}: {other:?}"),
        }
    }

    fn join(&mut self, node: usize, conn: ConnId, room: u64) {
        match self.ask(node, conn, Request::JoinRoom { room }) {
            Some(Reply::Room { .. }) => {}
            other => panic!("join #{room} on node {node}: {other:?}"),
        }
    }

    /// The room and private lines `conn` was shown, as "text seq".
    fn shown(&mut self, node: usize, conn: ConnId) -> Vec<String> {
        (self.nodes[node].events(conn).iter())
            .filter_map(|e| match e {
                Event::RoomMessage { line, .. } => Some(format!("{} {}", line.text, line.seq)),
                Event::PrivateMessage { line } => Some(format!("{} {}", line.text, line.seq)),
                _ => None,
            })
            .collect()
    }
}

#[test]
fn a_room_message_reaches_members_on_both_nodes_once_in_order() {
    let mut c = Cluster::new();
    let ann = c.user(0, "ann");
    let bob = c.user(1, "bob");
    let room = c.create_room(0, ann, "lobby");
    c.join(1, bob, room);
    c.say(0, ann, "a1");
    c.say(1, bob, "b2");
    // Both at once while the bus is down: each node shows its own, then
    // finds the other's number skipped when its next one is stored, waits
    // a moment for the bus to bring it, and reads the gap.
    let say = |text: &str| Request::Say {
        text: text.into(),
        client_id: 0,
    };
    c.bus_up = false;
    c.nodes[0].request(ann, say("a3"));
    c.nodes[1].request(bob, say("b4"));
    c.settle();
    c.bus_up = true;
    c.say(0, ann, "a5");
    assert_eq!(c.shown(1, bob), ["a1 1", "b2 2"], "a5 waits for a3 and b4");
    c.wait_out();
    assert_eq!(c.shown(1, bob), ["a3 3", "b4 4", "a5 5"]);
    assert_eq!(
        c.shown(0, ann),
        ["a1 1", "b2 2", "a3 3", "b4 4", "a5 5"],
        "node 0"
    );
    // The ids of the two nodes never meet.
    let ids: Vec<i64> = (c.store.writes.iter())
        .filter_map(|w| match w {
            Write::RoomMessage { id, .. } => Some(id.0),
            _ => None,
        })
        .collect();
    let mut unique = ids.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), ids.len(), "{ids:?}");
}

#[test]
fn a_message_stored_ahead_of_one_still_on_the_bus_waits_for_it_without_a_read() {
    let mut c = Cluster::new();
    let ann = c.user(0, "ann");
    let bob = c.user(1, "bob");
    let room = c.create_room(0, ann, "lobby");
    c.join(1, bob, room);
    let say = |text: &str| Request::Say {
        text: text.into(),
        client_id: 0,
    };
    // ann's line is stored first (number 1) but is still crossing the bus
    // when bob's (number 2) is stored on the other node.
    c.nodes[0].request(ann, say("a1"));
    let store = &mut c.store;
    let first = c.nodes[0].commit_renumbered(|w| store.number(w));
    store.writes.extend(first.iter().cloned());
    c.nodes[1].request(bob, say("b2"));
    let store = &mut c.store;
    let second = c.nodes[1].commit_renumbered(|w| store.number(w));
    store.writes.extend(second.iter().cloned());
    assert_eq!(c.shown(1, bob), [] as [&str; 0], "b2 waits for a1");
    // a1 arrives a moment later: both go out in order, and the store was
    // never asked for the gap.
    c.nodes[1].now += 1;
    c.nodes[1].handle(Input::Replicated { writes: first });
    c.nodes[0].handle(Input::Replicated { writes: second });
    let fills = |c: &Cluster, i: usize| {
        (c.nodes[i].jobs.iter())
            .filter(|j| matches!(j, harness::Job::Fill(_)))
            .count()
    };
    assert_eq!((fills(&c, 0), fills(&c, 1)), (0, 0));
    for (node, conn) in [(0, ann), (1, bob)] {
        assert_eq!(c.shown(node, conn), ["a1 1", "b2 2"], "node {node}");
    }
    // Nor later: nothing is left waiting.
    c.wait_out();
    assert_eq!((fills(&c, 0), fills(&c, 1)), (0, 0));
    assert_eq!(c.shown(1, bob), [] as [&str; 0]);
}

#[test]
fn a_private_message_crosses_nodes_and_reading_on_one_clears_the_other() {
    let mut c = Cluster::new();
    let ann = c.user(0, "ann");
    let bob = c.user(1, "bob");
    // bob on a second device, through the other node.
    let bob_too = c.login(0, "bob");
    c.send(0, ann, "bob", "hi bob");
    c.send(1, bob, "ann", "hi ann");
    assert_eq!(c.shown(0, ann), ["hi bob 1", "hi ann 2"]);
    assert_eq!(c.shown(1, bob), ["hi bob 1", "hi ann 2"]);
    assert_eq!(c.shown(0, bob_too), ["hi bob 1", "hi ann 2"]);
    // Read on node 1: bob's session on node 0 is told, and a new login
    // there finds nothing unread.
    let read = Request::MarkRead { with: "ann".into() };
    assert_eq!(c.ask(1, bob, read), Some(Reply::Ok));
    let told: Vec<Event> = c.nodes[0].events(bob_too);
    assert_eq!(
        told,
        [Event::Read {
            with: "ann".into(),
            unread: 0
        }]
    );
    let conn = c.nodes[0].connect();
    let login = Request::Login {
        name: "bob".into(),
        password: PW.into(),
    };
    assert!(matches!(
        c.ask(0, conn, login),
        Some(Reply::LoggedIn { unread: 0, .. })
    ));
}

#[test]
fn the_admin_leaving_on_one_node_closes_the_room_on_the_other() {
    let mut c = Cluster::new();
    let ann = c.user(0, "ann");
    let bob = c.user(1, "bob");
    let room = c.create_room(0, ann, "lobby");
    c.join(1, bob, room);
    assert_eq!(c.ask(0, ann, Request::LeaveRoom), Some(Reply::Ok));
    let closed = Event::RoomClosed {
        room,
        reason: LeaveReason::AdminLeft,
    };
    assert!(c.nodes[1].events(bob).contains(&closed));
    let say = Request::Say {
        text: "anyone?".into(),
        client_id: 0,
    };
    assert_eq!(c.nodes[1].error(bob, say), ErrorCode::NotMember);
    assert_eq!(
        c.nodes[1].error(bob, Request::JoinRoom { room }),
        ErrorCode::RoomClosed
    );
}

#[test]
fn what_the_bus_lost_is_read_from_the_store_in_order_once() {
    let mut c = Cluster::new();
    let ann = c.user(0, "ann");
    let bob = c.user(1, "bob");
    let room = c.create_room(0, ann, "lobby");
    c.join(1, bob, room);
    c.send(0, ann, "bob", "p1");
    c.bus_up = false;
    c.say(0, ann, "a1");
    c.say(0, ann, "a2");
    c.send(0, ann, "bob", "p2");
    assert_eq!(
        c.shown(1, bob),
        ["p1 1"],
        "nothing came while the bus was down"
    );
    // The next message that does come shows the gap, which is read once
    // the bus has not brought it in a moment.
    c.bus_up = true;
    c.say(0, ann, "a3");
    assert_eq!(c.shown(1, bob), [] as [&str; 0], "a3 waits for a1 and a2");
    c.wait_out();
    assert_eq!(c.shown(1, bob), ["a1 1", "a2 2", "a3 3"]);
    // The bus back after an outage: everything open is read again from
    // where it stopped.
    c.nodes[1].hub.catch_up_all();
    c.nodes[1].run_effects();
    c.settle();
    assert_eq!(c.shown(1, bob), ["p2 2"]);
    // What comes after shows once, however often it is carried.
    c.say(0, ann, "a4");
    let again: Vec<Write> = c.store.writes.iter().rev().take(1).cloned().collect();
    c.nodes[1].handle(Input::Replicated { writes: again });
    assert_eq!(c.shown(1, bob), ["a4 4"]);
}

#[test]
fn a_bus_message_naming_what_is_unknown_or_past_is_ignored() {
    let mut c = Cluster::new();
    let ann = c.user(0, "ann");
    let bob = c.user(1, "bob");
    let room = c.create_room(0, ann, "lobby");
    c.join(1, bob, room);
    c.say(0, ann, "a1");
    assert_eq!(c.shown(1, bob), ["a1 1"]);
    let message = |room: i64, seq: Seq, sender: i64| Write::RoomMessage {
        id: MessageId(999),
        seq,
        origin: None,
        room: RoomId(room),
        sender: UserId(sender),
        text: "forged".into(),
        sent: 1,
    };
    let ann_id = 2; // slot 0 of two: ids 2, 4, ...
    let forged = vec![
        // A number shown already.
        message(room as i64, 1, ann_id),
        // A room nobody opened.
        message(77, 1, ann_id),
        // A private message from a user nobody made.
        Write::PrivateMessage {
            id: MessageId(998),
            seq: 1,
            origin: None,
            sender: UserId(55),
            recipient: UserId(1),
            text: "forged".into(),
            sent: 1,
        },
        // A room of an unknown admin, and closing one never opened.
        Write::Room {
            id: RoomId(91),
            name: "fake".into(),
            admin: UserId(55),
            capacity: 5,
            created: 1,
        },
        Write::CloseRoom {
            id: RoomId(93),
            closed: 1,
        },
    ];
    c.nodes[1].handle(Input::Replicated { writes: forged });
    c.settle();
    assert_eq!(c.shown(1, bob), Vec::<String>::new());
    assert!(c.nodes[1].hub.rooms.get(RoomId(91)).is_none());
    // The room and its numbering go on as before.
    c.say(0, ann, "a2");
    assert_eq!(c.shown(1, bob), ["a2 2"]);
}

#[test]
fn a_saved_login_from_one_node_resumes_on_the_other_and_ends_the_old_session() {
    let mut c = Cluster::new();
    let conn = c.nodes[0].connect();
    let register = Request::Register {
        name: "ann".into(),
        password: PW.into(),
    };
    let Some(Reply::LoggedIn { token, node, .. }) = c.ask(0, conn, register) else {
        panic!("ann registers");
    };
    assert_eq!(node, Some(0), "the first server names itself");
    // Node 0 is gone for the client (its connection half-open): it
    // resumes on node 1 with the token node 0 gave.
    let moved = c.nodes[1].connect();
    let resume = Request::Resume {
        token: token.clone(),
    };
    let Some(Reply::LoggedIn {
        token: next, node, ..
    }) = c.ask(1, moved, resume)
    else {
        panic!("ann resumes on node 1");
    };
    assert_eq!(node, Some(1), "the client learns it moved");
    assert_ne!(next, token);
    assert!(c.nodes[0].closed.contains(&conn), "the old session ended");
    // The replaced token is spent on both nodes.
    let again = c.nodes[0].connect();
    let reused = Request::Resume { token };
    assert!(matches!(c.ask(0, again, reused), Some(Reply::Error { .. })));
}

#[test]
fn a_room_holds_its_capacity_across_nodes_and_a_kick_reaches_the_other_node() {
    let mut c = Cluster::new();
    let ann = c.user(0, "ann");
    let room = c.create_room_of(0, ann, "small", 3);
    // Six want in, three on each node, asking at once: the store lets in
    // two (ann is the third), whichever node they are on.
    let mut asked = Vec::new();
    for (i, name) in ["bob", "cat", "dan", "eve", "fay", "gus"]
        .iter()
        .enumerate()
    {
        let node = i % 2;
        let conn = c.user(node, name);
        let id = c.nodes[node].request(conn, Request::JoinRoom { room });
        asked.push((node, conn, id, *name));
    }
    c.settle();
    let mut inside = Vec::new();
    for &(node, conn, id, name) in &asked {
        match c.nodes[node].reply_to(conn, id) {
            Some(Reply::Room { .. }) => inside.push((node, conn, name)),
            Some(Reply::Error {
                code: ErrorCode::RoomFull,
                ..
            }) => {}
            other => panic!("a join answered {other:?}"),
        }
    }
    assert_eq!(inside.len(), 2, "{asked:?}");
    // ann kicks a member on the other node.
    let (node, conn, name) = *inside
        .iter()
        .find(|&&(node, _, _)| node == 1)
        .unwrap_or(&inside[0]);
    c.nodes[node].events(conn);
    let kick = Request::Kick { name: name.into() };
    assert_eq!(c.ask(0, ann, kick), Some(Reply::Ok));
    let events = c.nodes[node].events(conn);
    assert!(
        events.contains(&Event::Kicked {
            room,
            by: "ann".into()
        }),
        "{name} on node {node}: {events:?}"
    );
    // Their place is free for the next one, on either node.
    let late = c.user(1 - node, "late");
    let id = c.nodes[1 - node].request(late, Request::JoinRoom { room });
    c.settle();
    assert!(matches!(
        c.nodes[1 - node].reply_to(late, id),
        Some(Reply::Room { .. })
    ));
}

#[test]
fn a_saved_login_the_bus_never_carried_is_found_in_the_store() {
    // ann registers on node 0 while the bus is down: node 1 hears nothing
    // of her account or her device (as when node 0 dies between its
    // commit and its publish).
    let mut c = Cluster::new();
    c.bus_up = false;
    let conn = c.nodes[0].connect();
    let register = Request::Register {
        name: "ann".into(),
        password: PW.into(),
    };
    let Some(Reply::LoggedIn { token, .. }) = c.ask(0, conn, register) else {
        panic!("ann registers");
    };
    c.bus_up = true;
    let moved = c.nodes[1].connect();
    let resume = Request::Resume {
        token: token.clone(),
    };
    assert!(
        matches!(c.ask(1, moved, resume), Some(Reply::LoggedIn { .. })),
        "node 1 asked the store"
    );
    // A token nobody holds is still refused, after the one look.
    let stranger = c.nodes[1].connect();
    let forged = Request::Resume {
        token: "ab".repeat(32),
    };
    assert!(matches!(
        c.ask(1, stranger, forged),
        Some(Reply::Error {
            code: ErrorCode::BadCredentials,
            ..
        })
    ));
}

/// Node 0 outlives node 1: places node 1 kept are what the store calls
/// orphans, held by node 0 for the grace period.
const GRACE: Millis = 60_000;

fn with_grace() -> Cluster {
    Cluster::with(Limits {
        grace: GRACE,
        orphan_settle: ORPHAN_CHECK,
        idle_ping: 10 * GRACE,
        idle_close: 20 * GRACE,
        ..Limits::default()
    })
}

/// The store says nobody keeps these places (node 1 is gone), and node
/// 0's clock moves on by `after`: it asks the store when it is time.
fn orphans_then(c: &mut Cluster, found: Vec<(u64, UserId)>, after: Millis) {
    c.orphans = (found.into_iter())
        .map(|(r, u)| (RoomId(r as i64), u))
        .collect();
    c.nodes[0].now += after;
    c.nodes[0].timeout();
    c.settle();
}

/// Asks to join, and says whether the room was full.
fn full(c: &mut Cluster, node: usize, conn: ConnId, room: u64) -> bool {
    match c.ask(node, conn, Request::JoinRoom { room }) {
        Some(Reply::Error {
            code: ErrorCode::RoomFull,
            ..
        }) => true,
        Some(Reply::Room { .. }) => false,
        other => panic!("join #{room}: {other:?}"),
    }
}

fn user_id(c: &Cluster, name: &str) -> UserId {
    c.nodes[0].hub.accounts.named(name).expect("a user")
}

#[test]
fn a_dead_nodes_admin_keeps_the_room_open_for_the_grace_period_then_it_closes() {
    let mut c = with_grace();
    let ann = c.user(1, "ann");
    let bob = c.user(0, "bob");
    let room = c.create_room(1, ann, "lobby");
    c.join(0, bob, room);
    c.nodes[0].events(bob);
    // Node 1 is gone without a word; node 0 is told ann's place is kept
    // by nobody.
    let orphan = vec![(room, user_id(&c, "ann"))];
    // Listed, and listed again a grace period later: held only from
    // then, as the first listing may be a server that lost its database
    // connection for a moment.
    orphans_then(&mut c, orphan.clone(), ORPHAN_CHECK);
    orphans_then(&mut c, orphan.clone(), GRACE);
    c.say(0, bob, "open");
    // (Each request moves the clock on a little.)
    orphans_then(&mut c, orphan.clone(), GRACE - 100);
    c.say(0, bob, "still open");
    let away = Event::Away {
        room,
        name: "ann".into(),
    };
    assert!(c.nodes[0].events(bob).contains(&away));
    // Still nobody's when the grace period ends.
    orphans_then(&mut c, orphan, 100);
    let closed = Event::RoomClosed {
        room,
        reason: LeaveReason::AdminDisconnected,
    };
    assert!(c.nodes[0].events(bob).contains(&closed));
    assert!(
        (c.store.writes.iter())
            .any(|w| matches!(w, Write::CloseRoom { id, .. } if id.0 as u64 == room)),
        "the close is stored, for every server"
    );
}

#[test]
fn a_dead_nodes_member_leaves_after_the_grace_period_and_frees_the_place() {
    let mut c = with_grace();
    let bob = c.user(0, "bob");
    let cat = c.user(1, "cat");
    let room = c.create_room_of(0, bob, "pair", 2);
    c.join(1, cat, room);
    let dan = c.user(0, "dan");
    assert!(full(&mut c, 0, dan, room));
    c.nodes[0].events(bob);
    let orphan = vec![(room, user_id(&c, "cat"))];
    orphans_then(&mut c, orphan.clone(), ORPHAN_CHECK);
    orphans_then(&mut c, orphan.clone(), ORPHAN_CHECK);
    assert!(full(&mut c, 0, dan, room), "held for the grace period");
    orphans_then(&mut c, orphan, GRACE);
    let left = Event::Left {
        room,
        name: "cat".into(),
        reason: LeaveReason::Disconnected,
    };
    assert!(c.nodes[0].events(bob).contains(&left));
    assert!(!full(&mut c, 0, dan, room), "cat's place is free");
}

#[test]
fn a_place_kept_again_before_the_grace_period_ends_is_let_go_without_a_word() {
    let mut c = with_grace();
    let bob = c.user(0, "bob");
    let cat = c.user(1, "cat");
    let room = c.create_room_of(0, bob, "pair", 2);
    c.join(1, cat, room);
    c.nodes[0].events(bob);
    // Listed once (node 1 lost its database connection, and with it its
    // slot's lock, for a moment), then not: never held.
    let orphan = vec![(room, user_id(&c, "cat"))];
    orphans_then(&mut c, orphan.clone(), ORPHAN_CHECK);
    orphans_then(&mut c, Vec::new(), ORPHAN_CHECK);
    // Listed long enough to be held, then not: node 1 keeps cat's place
    // again, and node 0 lets it go.
    orphans_then(&mut c, orphan.clone(), ORPHAN_CHECK);
    orphans_then(&mut c, orphan, ORPHAN_CHECK);
    orphans_then(&mut c, Vec::new(), ORPHAN_CHECK);
    orphans_then(&mut c, Vec::new(), GRACE);
    assert!(c.nodes[0].events(bob).is_empty());
    let dan = c.user(0, "dan");
    assert!(full(&mut c, 0, dan, room));
    c.say(1, cat, "still here");
    assert_eq!(c.shown(0, bob), ["still here 1"]);
}

#[test]
fn a_member_back_through_the_other_node_is_no_longer_held_by_the_first() {
    let mut c = with_grace();
    let ann = c.user(1, "ann");
    let bob = c.user(0, "bob");
    let room = c.create_room(1, ann, "lobby");
    c.join(0, bob, room);
    // bob's connection to node 0 drops; he comes back through node 1
    // and joins again there before the grace period ends.
    c.nodes[0].input(Input::Disconnected {
        conn: bob,
        reason: "connection reset".into(),
    });
    c.settle();
    let bob = c.login(1, "bob");
    c.join(1, bob, room);
    c.nodes[0].now += GRACE;
    c.nodes[0].timeout();
    c.settle();
    // Node 0 let his place go: no "left" for anyone, and he is in.
    assert!(
        !(c.store.writes.iter()).any(|w| matches!(w, Write::Leave { .. })),
        "{:?}",
        c.store.writes
    );
    c.say(1, ann, "hi bob");
    assert_eq!(c.shown(1, bob), ["hi bob 1"]);
    c.nodes[1].events(ann);
}

#[test]
fn the_member_list_names_the_members_on_both_nodes() {
    let mut c = Cluster::new();
    let ann = c.user(0, "ann");
    let cat = c.user(0, "cat");
    let bob = c.user(1, "bob");
    let room = c.create_room(0, ann, "lobby");
    c.join(0, cat, room);
    // bob enters on node 1: those on node 1 first, then the others.
    match c.ask(1, bob, Request::JoinRoom { room }) {
        Some(Reply::Room { members, .. }) => assert_eq!(members, ["bob", "ann", "cat"]),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        c.ask(0, ann, Request::Members),
        Some(Reply::Members {
            members: vec!["ann".into(), "cat".into(), "bob".into()]
        })
    );
    // cat leaves on node 0: bob's list follows.
    assert_eq!(c.ask(0, cat, Request::LeaveRoom), Some(Reply::Ok));
    assert_eq!(
        c.ask(1, bob, Request::Members),
        Some(Reply::Members {
            members: vec!["bob".into(), "ann".into()]
        })
    );
}

#[test]
fn a_member_away_on_one_node_is_told_on_the_other_and_so_is_their_return() {
    let mut c = with_grace();
    let ann = c.user(0, "ann");
    let bob = c.user(1, "bob");
    let room = c.create_room(0, ann, "lobby");
    c.join(1, bob, room);
    c.nodes[0].events(ann);
    c.nodes[1].input(Input::Disconnected {
        conn: bob,
        reason: "connection reset".into(),
    });
    c.nodes[1].now += Limits::default().quiet_blip;
    c.nodes[1].timeout();
    c.settle();
    let name = "bob".to_string();
    assert_eq!(
        c.nodes[0].events(ann),
        [Event::Away {
            room,
            name: name.clone()
        }]
    );
    let bob = c.login(1, "bob");
    c.join(1, bob, room);
    assert_eq!(
        c.nodes[0].events(ann),
        [Event::Back {
            room,
            name: name.clone()
        }]
    );
    // Away again, and this time gone for the grace period: told as a
    // dropped connection, not as leaving.
    c.nodes[1].input(Input::Disconnected {
        conn: bob,
        reason: "connection reset".into(),
    });
    for step in [Limits::default().quiet_blip, GRACE] {
        c.nodes[1].now += step;
        c.nodes[1].timeout();
        c.settle();
    }
    assert_eq!(
        c.nodes[0].events(ann),
        [
            Event::Away {
                room,
                name: name.clone()
            },
            Event::Left {
                room,
                name,
                reason: LeaveReason::Disconnected
            }
        ]
    );
}

#[test]
fn a_request_id_used_twice_while_a_member_list_is_read_does_not_stop_the_server() {
    let mut c = Cluster::new();
    let ann = c.user(0, "ann");
    c.create_room(0, ann, "lobby");
    // The same id for a read of the inbox and for the member list, in
    // either order: each gets one reply, and the server goes on.
    for reqs in [
        [Request::Inbox, Request::Members],
        [Request::Members, Request::Inbox],
    ] {
        for req in reqs {
            let frame = crate::wire::msg::ClientFrame { id: 900, req };
            c.nodes[0].input(Input::Request { conn: ann, frame });
        }
        c.settle();
    }
    c.say(0, ann, "still here");
    assert_eq!(c.shown(0, ann), ["still here 1"]);
}
