//! Rooms: creating, joining, kicking, leaving and closing, who hears
//! what, and the history a joiner is shown.

use super::*;

#[test]
fn only_members_receive_a_rooms_messages() {
    let mut w = World::new();
    let (ann, bob, cat) = (w.user("ann"), w.user("bob"), w.user("cat"));
    let lobby = w.create_room(ann, "Lobby", 10);
    let other = w.create_room(cat, "Other", 10);
    w.join(bob, lobby);
    w.say(ann, "for the lobby");
    w.say(cat, "for the other room");
    assert_eq!(texts(&w.events(bob)), ["ann: for the lobby"]);
    assert_eq!(texts(&w.events(cat)), ["cat: for the other room"]);
    assert_ne!(lobby, other);
}

#[test]
fn a_joiner_sees_the_last_20_messages() {
    let mut w = World::new();
    let (ann, bob) = (w.user("ann"), w.user("bob"));
    let room = w.create_room(ann, "Lobby", 10);
    for i in 0..25 {
        w.now += 200; // within the message budget of 5 a second
        w.say(ann, &format!("m{i}"));
    }
    let Reply::Room {
        history,
        room: info,
        ..
    } = w.join(bob, room)
    else {
        panic!("no room reply");
    };
    assert_eq!(info.admin, "ann");
    let got: Vec<&str> = history.iter().map(|l| &*l.text).collect();
    let want: Vec<String> = (5..25).map(|i| format!("m{i}")).collect();
    assert_eq!(got, want);
}

#[test]
fn capacity_missing_and_closed_rooms_are_refused_clearly() {
    let mut w = World::new();
    let (ann, bob, cat) = (w.user("ann"), w.user("bob"), w.user("cat"));
    let room = w.create_room(ann, "Pair", 2);
    w.join(bob, room);
    assert_eq!(
        w.error(cat, Request::JoinRoom { room }),
        ErrorCode::RoomFull
    );
    assert_eq!(
        w.error(cat, Request::JoinRoom { room: 99 }),
        ErrorCode::NoSuchRoom
    );
    w.ask(ann, Request::LeaveRoom);
    assert_eq!(
        w.error(cat, Request::JoinRoom { room }),
        ErrorCode::RoomClosed
    );
    assert_eq!(
        w.error(
            cat,
            Request::CreateRoom {
                name: "x".into(),
                capacity: 1
            }
        ),
        ErrorCode::InvalidCapacity
    );
}

#[test]
fn open_room_names_are_unique_until_the_room_closes() {
    let mut w = World::new();
    let (ann, bob) = (w.user("ann"), w.user("bob"));
    w.create_room(ann, "Lobby", 5);
    let taken = Request::CreateRoom {
        name: " LOBBY ".into(),
        capacity: 5,
    };
    assert_eq!(w.error(bob, taken), ErrorCode::RoomNameTaken);
    w.ask(ann, Request::LeaveRoom);
    w.create_room(bob, "lobby", 5);
}

#[test]
fn only_the_admin_kicks_and_the_kicked_hear_nothing_more() {
    let mut w = World::new();
    let (ann, bob, cat) = (w.user("ann"), w.user("bob"), w.user("cat"));
    let room = w.create_room(ann, "Lobby", 10);
    w.join(bob, room);
    w.join(cat, room);
    assert_eq!(
        w.error(bob, Request::Kick { name: "cat".into() }),
        ErrorCode::NotAdmin
    );
    w.events(bob);
    w.events(ann);
    assert_eq!(
        w.ask(ann, Request::Kick { name: "Bob".into() }),
        Some(Reply::Ok)
    );
    assert_eq!(
        w.events(bob),
        vec![Event::Kicked {
            room,
            by: "ann".into()
        }]
    );
    let left = left(room, "bob", LeaveReason::Kicked);
    assert_eq!(w.events(cat), vec![left.clone()]);
    assert_eq!(w.events(ann), vec![left]);
    w.say(ann, "after the kick");
    assert!(w.events(bob).is_empty());
    assert_eq!(texts(&w.events(cat)), ["ann: after the kick"]);
    assert_eq!(
        w.error(
            bob,
            Request::Say {
                text: "hi".into(),
                client_id: 0
            }
        ),
        ErrorCode::NotMember
    );
}

#[test]
fn the_admin_leaving_or_dropping_closes_the_room_for_everyone() {
    for dropped in [false, true] {
        let mut w = World::new();
        let (ann, bob, cat) = (w.user("ann"), w.user("bob"), w.user("cat"));
        let room = w.create_room(ann, "Lobby", 10);
        w.join(bob, room);
        w.join(cat, room);
        w.events(bob);
        if dropped {
            w.input(Input::Disconnected {
                conn: ann,
                reason: "reset".into(),
            });
        } else {
            w.ask(ann, Request::LeaveRoom);
        }
        let reason = if dropped {
            LeaveReason::AdminDisconnected
        } else {
            LeaveReason::AdminLeft
        };
        let closed = Event::RoomClosed { room, reason };
        assert_eq!(w.events(bob), vec![closed.clone()]);
        assert_eq!(w.events(cat), vec![closed]);
        assert!(matches!(w.committed.last(), Some(Write::CloseRoom { .. })));
        // Back at the menu: they may create or join rooms again.
        w.create_room(bob, "Next", 3);
    }
}

#[test]
fn a_member_dropping_is_announced() {
    let mut w = World::new();
    let (ann, bob) = (w.user("ann"), w.user("bob"));
    let room = w.create_room(ann, "Lobby", 10);
    w.join(bob, room);
    w.events(ann);
    w.input(Input::Disconnected {
        conn: bob,
        reason: "closed by the client".into(),
    });
    assert_eq!(
        w.events(ann),
        vec![left(room, "bob", LeaveReason::Disconnected)]
    );
}

#[test]
fn history_is_trimmed_to_fit_a_frame() {
    let lines: Vec<usize> = (0..20).collect();
    let kept = fit_newest(lines, |_| 4096 + 32);
    assert_eq!(kept, (15..20).collect::<Vec<_>>());
    assert_eq!(
        crate::server::hub::private::preview(&"é".repeat(150))
            .chars()
            .count(),
        PREVIEW_CHARS + 1
    );
}

#[test]
fn room_events_are_addressed_to_the_room_as_it_stands() {
    let mut w = World::new();
    let (ann, bob, cat) = (w.user("ann"), w.user("bob"), w.user("cat"));
    let room = w.create_room(ann, "Lobby", 10);
    let lobby = RoomId(room as i64);
    w.audiences.clear();
    w.join(bob, room);
    w.join(cat, room);
    assert_eq!(w.audiences, [Audience::Room(lobby); 2]);
    // Each joiner hears of those who come after, not of themselves.
    let joined = |name: &str| Event::Joined {
        room,
        name: name.into(),
    };
    assert_eq!(w.events(ann), [joined("bob"), joined("cat")]);
    assert_eq!(w.events(bob), [joined("cat")]);
    assert!(w.events(cat).is_empty());
    assert_eq!(w.directory.room(lobby), [ann, bob, cat]);
    // The admin who closes the room is not told it closed; the rest are,
    // and then nobody is in it any more.
    w.audiences.clear();
    w.ask(ann, Request::LeaveRoom);
    assert_eq!(w.audiences, [Audience::Room(lobby)]);
    let closed = Event::RoomClosed {
        room,
        reason: LeaveReason::AdminLeft,
    };
    assert!(w.events(ann).is_empty());
    assert_eq!(w.events(bob), vec![closed.clone()]);
    assert_eq!(w.events(cat), vec![closed]);
    assert!(w.directory.room(lobby).is_empty());
}

#[test]
fn an_admin_alone_closing_a_room_addresses_nobody() {
    let mut w = World::new();
    let ann = w.user("ann");
    w.create_room(ann, "Lobby", 10);
    w.audiences.clear();
    w.ask(ann, Request::LeaveRoom);
    assert!(w.audiences.is_empty(), "{:?}", w.audiences);
}
