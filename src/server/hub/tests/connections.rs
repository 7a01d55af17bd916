//! Connections: deadlines (login, idle), budgets, and shutdown.

use super::*;

#[test]
fn shutdown_closes_rooms_and_says_goodbye() {
    let mut w = World::new();
    let (ann, bob) = (w.user("ann"), w.user("bob"));
    let room = w.create_room(ann, "Lobby", 10);
    w.join(bob, room);
    w.events(bob);
    w.hub.shutdown(w.now);
    w.run_effects();
    let events = w.events(bob);
    assert_eq!(
        events[0],
        Event::RoomClosed {
            room,
            reason: LeaveReason::Shutdown
        }
    );
    assert!(matches!(events[1], Event::Bye { .. }));
    assert!(w.closed.contains(&ann) && w.closed.contains(&bob));
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
    assert!(matches!(&w.events(c)[..], [Event::Bye { reason }] if reason.contains("no login")));
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
