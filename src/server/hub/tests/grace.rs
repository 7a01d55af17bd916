//! A blip is not a departure: a member whose connection drops keeps their
//! place for the grace period; the room hears of it only after a while,
//! and hears them come back; an admin's room stays open until the grace
//! period ends without them.

use super::*;

const GRACE: Millis = 60_000;
const QUIET: Millis = 10_000;

fn world() -> World {
    // Nobody is pinged for silence while the clock jumps a minute.
    let limits = Limits {
        grace: GRACE,
        quiet_blip: QUIET,
        idle_ping: 10 * GRACE,
        idle_close: 20 * GRACE,
        ..Limits::default()
    };
    harness::Harness::build(harness::snapshot(Vec::new()), limits, ())
}

fn drop_conn(w: &mut World, conn: ConnId) {
    w.input(Input::Disconnected {
        conn,
        reason: "connection reset".into(),
    });
}

/// Moves the clock to `at` ms after `since`, playing out the deadlines.
fn wait_until(w: &mut World, since: Millis, at: Millis) {
    w.now = since + at;
    w.timeout();
}

fn away(room: u64, name: &str) -> Event {
    Event::Away {
        room,
        name: name.into(),
    }
}

#[test]
fn a_short_blip_goes_untold_and_the_member_is_back_in_their_place() {
    let mut w = world();
    let (ann, bob) = (w.user("ann"), w.user("bob"));
    let room = w.create_room(ann, "Lobby", 2);
    w.join(bob, room);
    w.events(ann);
    drop_conn(&mut w, bob);
    let dropped = w.now;
    wait_until(&mut w, dropped, QUIET - 1);
    assert!(w.events(ann).is_empty(), "nothing told within the blip");
    // The place is kept: the room, of 2, is full.
    let cat = w.user("cat");
    assert!(matches!(
        w.join(cat, room),
        Reply::Error {
            code: ErrorCode::RoomFull,
            ..
        }
    ));
    // Bob is back: in the room again, nothing told, no capacity needed.
    w.login("bob", PW);
    let bob = ConnId(w.next_conn - 1);
    assert!(matches!(
        w.join(bob, room),
        Reply::Room { members, .. } if members == ["ann", "bob"]
    ));
    assert!(w.events(ann).is_empty());
    w.say(ann, "welcome back");
    assert_eq!(texts(&w.events(bob)), ["ann: welcome back"]);
}

#[test]
fn a_longer_absence_is_told_and_so_is_the_return() {
    let mut w = world();
    let (ann, bob) = (w.user("ann"), w.user("bob"));
    let room = w.create_room(ann, "Lobby", 5);
    w.join(bob, room);
    w.events(ann);
    drop_conn(&mut w, bob);
    let dropped = w.now;
    assert!(w.hub.poll_timeout().is_some_and(|t| t <= dropped + QUIET));
    wait_until(&mut w, dropped, QUIET);
    assert_eq!(w.events(ann), [away(room, "bob")]);
    wait_until(&mut w, dropped, GRACE - 1);
    assert!(w.events(ann).is_empty(), "told once");
    w.login("bob", PW);
    let bob = ConnId(w.next_conn - 1);
    w.join(bob, room);
    assert_eq!(
        w.events(ann),
        [Event::Back {
            room,
            name: "bob".into()
        }]
    );
}

#[test]
fn past_the_grace_period_the_member_has_left() {
    let mut w = world();
    let (ann, bob) = (w.user("ann"), w.user("bob"));
    let room = w.create_room(ann, "Lobby", 5);
    w.join(bob, room);
    w.events(ann);
    drop_conn(&mut w, bob);
    let dropped = w.now;
    wait_until(&mut w, dropped, QUIET);
    wait_until(&mut w, dropped, GRACE);
    assert_eq!(
        w.events(ann),
        [
            away(room, "bob"),
            left(room, "bob", LeaveReason::Disconnected)
        ]
    );
    // Coming back now is joining anew.
    w.login("bob", PW);
    let bob = ConnId(w.next_conn - 1);
    w.join(bob, room);
    assert_eq!(
        w.events(ann),
        [Event::Joined {
            room,
            name: "bob".into()
        }]
    );
}

#[test]
fn an_admin_who_drops_keeps_the_room_open_until_the_grace_period_ends() {
    let mut w = world();
    let (ann, bob) = (w.user("ann"), w.user("bob"));
    let room = w.create_room(ann, "Lobby", 5);
    w.join(bob, room);
    drop_conn(&mut w, ann);
    let dropped = w.now;
    // The room goes on without her.
    w.say(bob, "ann?");
    assert_eq!(texts(&w.events(bob)), ["bob: ann?"]);
    wait_until(&mut w, dropped, QUIET);
    assert_eq!(w.events(bob), [away(room, "ann")]);
    wait_until(&mut w, dropped, GRACE);
    assert_eq!(
        w.events(bob),
        [Event::RoomClosed {
            room,
            reason: LeaveReason::AdminDisconnected
        }]
    );
    assert!(matches!(w.committed.last(), Some(Write::CloseRoom { .. })));
}

#[test]
fn an_admin_back_in_time_keeps_the_room_and_a_room_of_absent_members_is_quiet() {
    let mut w = world();
    let (ann, bob) = (w.user("ann"), w.user("bob"));
    let room = w.create_room(ann, "Lobby", 5);
    w.join(bob, room);
    drop_conn(&mut w, ann);
    drop_conn(&mut w, bob);
    let dropped = w.now;
    // Nobody is connected: nothing is told to anyone (the harness fails
    // a broadcast to nobody).
    wait_until(&mut w, dropped, QUIET);
    w.login("ann", PW);
    let ann = ConnId(w.next_conn - 1);
    assert!(matches!(w.join(ann, room), Reply::Room { .. }));
    wait_until(&mut w, dropped, GRACE);
    assert_eq!(
        w.events(ann),
        [left(room, "bob", LeaveReason::Disconnected)]
    );
    w.say(ann, "still open");
    assert_eq!(texts(&w.events(ann)), ["ann: still open"]);
}

#[test]
fn leaving_on_purpose_is_at_once_and_a_kick_reaches_a_held_member() {
    let mut w = world();
    let (ann, bob, cat) = (w.user("ann"), w.user("bob"), w.user("cat"));
    let room = w.create_room(ann, "Lobby", 5);
    w.join(bob, room);
    w.join(cat, room);
    w.events(ann);
    assert_eq!(w.ask(cat, Request::LeaveRoom), Some(Reply::Ok));
    assert_eq!(w.events(ann), [left(room, "cat", LeaveReason::Left)]);
    drop_conn(&mut w, bob);
    assert_eq!(
        w.ask(ann, Request::Kick { name: "bob".into() }),
        Some(Reply::Ok)
    );
    assert_eq!(w.events(ann), [left(room, "bob", LeaveReason::Kicked)]);
    // Nothing more about bob when his grace period would have ended.
    let kicked = w.now;
    wait_until(&mut w, kicked, GRACE);
    assert!(w.events(ann).is_empty());
}
