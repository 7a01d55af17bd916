//! Connections: deadlines (login, idle), budgets, and shutdown.

use super::*;

#[test]
fn shutdown_says_the_server_is_restarting_and_keeps_rooms_open() {
    let mut w = World::new();
    let (ann, bob) = (w.user("ann"), w.user("bob"));
    let room = w.create_room(ann, "Lobby", 10);
    w.join(bob, room);
    w.events(bob);
    let writes = w.committed.len();
    w.hub.shutdown(w.now);
    w.run_effects();
    assert!(matches!(
        &w.events(bob)[..],
        [Event::Bye { reason, resume: true }] if reason.contains("restarting")
    ));
    assert!(w.closed.contains(&ann) && w.closed.contains(&bob));
    assert_eq!(w.committed.len(), writes, "the room is not closed");
}

#[test]
fn a_reopened_room_waits_the_grace_period_for_its_admin() {
    use crate::store::{OpenRoom, RoomRow};
    let limits = Limits {
        grace: 60_000,
        ..Limits::default()
    };
    let snapshot = harness::snapshot(vec![harness::account(1, "ann"), harness::account(2, "bob")]);
    let mut w = harness::Harness::build(snapshot, limits, ());
    let line = RoomRow {
        id: crate::model::MessageId(7),
        seq: 7,
        sender: UserId(1),
        sender_name: "ann".into(),
        text: "before the restart".into(),
        sent: 500,
    };
    let open = |id: i64, name: &str| OpenRoom {
        id: RoomId(id),
        name: name.into(),
        admin: UserId(1),
        capacity: 5,
        last_seq: 7,
        history: vec![line.clone()],
        held: vec![UserId(1)],
    };
    let start = w.now;
    w.hub.reopen(start, vec![open(3, "Lobby"), open(4, "Den")]);
    w.login("bob", PW);
    let bob = ConnId(w.next_conn - 1);
    let taken = Request::CreateRoom {
        name: "lobby".into(),
        capacity: 5,
    };
    assert_eq!(w.error(bob, taken), ErrorCode::RoomNameTaken);
    // Open as it was: its history, its name taken, its numbers going on.
    match w.join(bob, 3) {
        Reply::Room {
            room,
            members,
            history,
        } => {
            assert_eq!((room.name.as_str(), room.admin.as_str()), ("Lobby", "ann"));
            assert_eq!(members, ["bob", "ann"], "ann's place is held");
            assert_eq!(history.len(), 1);
        }
        other => panic!("{other:?}"),
    }
    w.say(bob, "anyone?");
    let seqs: Vec<u64> = w
        .events(bob)
        .iter()
        .filter_map(|e| match e {
            Event::RoomMessage { line, .. } => Some(line.seq),
            _ => None,
        })
        .collect();
    assert_eq!(seqs, [8]);
    // Ann comes back to one of her rooms in time; the other closes.
    w.login("ann", PW);
    let ann = ConnId(w.next_conn - 1);
    assert!(matches!(w.join(ann, 3), Reply::Room { .. }));
    w.now = start + 60_000;
    w.timeout();
    let closed: Vec<RoomId> = w
        .committed
        .iter()
        .filter_map(|write| match write {
            Write::CloseRoom { id, .. } => Some(*id),
            _ => None,
        })
        .collect();
    assert_eq!(closed, [RoomId(4)]);
    w.say(ann, "I am back");
    assert_eq!(texts(&w.events(bob)), ["ann: I am back"]);
}

#[test]
fn messages_past_the_budget_are_refused_and_not_sent() {
    let mut w = World::new();
    let (ann, bob) = (w.user("ann"), w.user("bob"));
    let room = w.create_room(ann, "Lobby", 10);
    w.join(bob, room);
    w.events(bob);
    // A burst of 10 goes through; the 11th at the same moment does not.
    let replies: Vec<Option<Reply>> = (0..11)
        .map(|i| {
            w.now -= 10; // hold the clock still: `input` adds 10 ms
            w.say(ann, &format!("m{i}"))
        })
        .collect();
    assert!(replies[..10].iter().all(|r| *r == Some(Reply::Ok)));
    assert!(matches!(
        &replies[10],
        Some(Reply::Error { code: ErrorCode::RateLimited, message }) if message.contains("not sent")
    ));
    assert_eq!(texts(&w.events(bob)).len(), 10);
    // 5 a second refill: after 200 ms one more is allowed.
    w.now += 200;
    assert_eq!(w.say(ann, "later"), Some(Reply::Ok));
}

#[test]
fn a_client_that_does_not_log_in_in_time_is_closed() {
    let mut w = World::new();
    let c = w.connect();
    let limits = Limits::default();
    w.now += limits.login_timeout + limits.sweep;
    w.hub.handle_timeout(w.now);
    w.run_effects();
    assert!(w.closed.contains(&c));
    assert!(matches!(&w.events(c)[..], [Event::Bye { reason, .. }] if reason.contains("no login")));
}

#[test]
fn silent_clients_are_pinged_then_dropped_and_their_room_told() {
    let mut w = World::new();
    let (ann, bob) = (w.user("ann"), w.user("bob"));
    let room = w.create_room(ann, "Lobby", 10);
    w.join(bob, room);
    w.events(bob);
    w.events(ann);
    let limits = Limits::default();
    // Ann keeps talking; Bob says nothing.
    let mut t = 0;
    while t < limits.idle_close + 2 * limits.sweep {
        w.now += limits.sweep;
        t += limits.sweep;
        w.hub.handle_timeout(w.now);
        w.run_effects();
        if t % 30_000 == 0 {
            w.ask(ann, Request::Ping);
        }
    }
    let bob_saw = w.events(bob);
    assert_eq!(
        bob_saw.iter().filter(|e| **e == Event::Ping).count(),
        1,
        "{bob_saw:?}"
    );
    assert!(matches!(bob_saw.last(), Some(Event::Bye { .. })));
    assert!(w.closed.contains(&bob) && !w.closed.contains(&ann));
    assert!(
        w.events(ann)
            .contains(&left(room, "bob", LeaveReason::Disconnected))
    );
}

#[test]
fn after_a_logout_the_login_deadline_does_not_apply() {
    let mut w = World::new();
    let ann = w.user("ann");
    w.ask(ann, Request::Logout);
    let limits = Limits::default();
    w.now += limits.login_timeout + limits.sweep;
    w.hub.handle_timeout(w.now);
    w.run_effects();
    assert!(!w.closed.contains(&ann));
}
