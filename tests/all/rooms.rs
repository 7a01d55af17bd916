//! Rooms: capacity, rooms that do not exist or are closed, kicking, and the
//! room closing with its admin.

use crate::kit;
use crate::kit::{TestServer, left};
use chatapp::wire::msg::{ErrorCode, Event, LeaveReason, Reply, Request};

#[test]
fn a_full_room_refuses_one_more() {
    let server = TestServer::start();
    let (room, mut clients) = server.room_with("ann", &["bob", "cat"], 3);
    let mut dan = server.register("dan");
    let message = dan.refused(Request::JoinRoom { room }, ErrorCode::RoomFull);
    assert!(message.contains(&format!("#{room}")), "{message}");
    // Nobody inside heard of dan, and a place freed by a leaver can be taken.
    clients[2].ok(Request::LeaveRoom);
    for member in &mut clients[..2] {
        member.expect_event(&left(room, "cat", LeaveReason::Left));
    }
    dan.join(room);
}

#[test]
fn a_room_that_does_not_exist_cannot_be_joined() {
    let server = TestServer::start();
    let mut ann = server.register("ann");
    for room in [0, 1, 999, u64::MAX] {
        ann.refused(Request::JoinRoom { room }, ErrorCode::NoSuchRoom);
    }
    // Refused, ann is still at the menu and may create one.
    ann.create_room("lobby", 2);
}

#[test]
fn a_closed_room_cannot_be_joined() {
    let server = TestServer::start();
    let mut ann = server.register("ann");
    let room = ann.create_room("short-lived", 4);
    ann.ok(Request::LeaveRoom);
    let mut bob = server.register("bob");
    bob.refused(Request::JoinRoom { room }, ErrorCode::RoomClosed);
}

#[test]
fn only_the_admin_may_kick() {
    let server = TestServer::start();
    let (room, mut clients) = server.room_with("ann", &["bob", "cat"], 5);
    clients[1].refused(Request::Kick { name: "cat".into() }, ErrorCode::NotAdmin);
    clients[1].refused(Request::Kick { name: "ann".into() }, ErrorCode::NotAdmin);
    // Nothing happened: everyone is still there and nobody was told otherwise.
    clients[2].say("still in");
    for member in &mut clients {
        member.expect_said(room, "cat", "still in");
    }
}

#[test]
fn a_kicked_member_is_told_and_hears_nothing_more_from_the_room() {
    let server = TestServer::start();
    let (room, mut clients) = server.room_with("ann", &["bob", "cat"], 5);
    let mut bob = clients.remove(1);
    clients[0].ok(Request::Kick { name: "bob".into() });
    bob.expect_event(&Event::Kicked {
        room,
        by: "ann".into(),
    });
    for member in &mut clients {
        member.expect_event(&left(room, "bob", LeaveReason::Kicked));
    }
    // The others keep chatting; bob is out of it.
    clients[0].say("bye bob");
    clients[1].say("carry on");
    for member in &mut clients {
        member.expect_said(room, "ann", "bye bob");
        member.expect_said(room, "cat", "carry on");
    }
    bob.expect_quiet();
    bob.refused(
        Request::Say {
            text: "let me back".into(),
            client_id: 0,
        },
        ErrorCode::NotMember,
    );
    match clients[0].request(Request::Members) {
        Reply::Members { members } => assert_eq!(members, ["ann", "cat"]),
        other => panic!("members: {other:?}"),
    }
}

#[test]
fn the_admin_leaving_closes_the_room_for_everyone() {
    let server = TestServer::start();
    let (room, mut clients) = server.room_with("ann", &["bob", "cat"], 5);
    clients[0].ok(Request::LeaveRoom);
    for member in &mut clients[1..] {
        member.expect_event(&Event::RoomClosed {
            room,
            reason: LeaveReason::AdminLeft,
        });
    }
    assert_everyone_is_out(&mut clients[1..], room);
}

#[test]
fn the_admin_dropping_closes_the_room_for_everyone() {
    let server = TestServer::start();
    let (room, mut clients) = server.room_with("ann", &["bob", "cat"], 5);
    drop(clients.remove(0));
    for member in &mut clients {
        member.expect_event(&Event::RoomClosed {
            room,
            reason: LeaveReason::AdminDisconnected,
        });
    }
    assert_everyone_is_out(&mut clients, room);
}

/// After a room closed: its former members are at the menu (not in a room),
/// the room cannot be joined again, and they may start rooms of their own.
fn assert_everyone_is_out(members: &mut [kit::Client], room: u64) {
    for member in members.iter_mut() {
        member.refused(
            Request::Say {
                text: "hello?".into(),
                client_id: 0,
            },
            ErrorCode::NotMember,
        );
        member.refused(Request::JoinRoom { room }, ErrorCode::RoomClosed);
    }
    let name = format!("{}'s new room", members[0].name);
    members[0].create_room(&name, 2);
    members[0].expect_quiet();
}

#[test]
fn a_room_name_is_free_again_once_its_room_closed() {
    let server = TestServer::start();
    let mut ann = server.register("ann");
    let mut bob = server.register("bob");
    let first = ann.create_room("Book Club", 5);
    // Unique among open rooms, without regard to case.
    let message = bob.refused(
        Request::CreateRoom {
            name: "book club".into(),
            capacity: 5,
        },
        ErrorCode::RoomNameTaken,
    );
    assert!(message.contains("book club"), "{message}");
    ann.ok(Request::LeaveRoom);
    let second = bob.create_room("book club", 5);
    assert_ne!(first, second, "a new room, not the old one reopened");
    // The new room works: it stores and delivers messages.
    bob.say("new season");
    bob.expect_said(second, "bob", "new season");
}

#[test]
fn room_names_and_capacities_out_of_bounds_are_refused() {
    let server = TestServer::start();
    let mut ann = server.register("ann");
    let long_name = "r".repeat(51);
    let cases = [
        ("", 5, ErrorCode::InvalidName),
        ("   ", 5, ErrorCode::InvalidName),
        (long_name.as_str(), 5, ErrorCode::InvalidName),
        ("bell\u{7}", 5, ErrorCode::InvalidName),
        ("tiny", 1, ErrorCode::InvalidCapacity),
        ("huge", 1001, ErrorCode::InvalidCapacity),
        ("none", 0, ErrorCode::InvalidCapacity),
    ];
    for (name, capacity, code) in cases {
        ann.refused(
            Request::CreateRoom {
                name: name.into(),
                capacity,
            },
            code,
        );
    }
    // Refused, ann is in no room: the largest legal room is hers to make.
    ann.create_room(&"r".repeat(50), 1000);
    // And while in it she may not make or join another.
    ann.refused(
        Request::CreateRoom {
            name: "second".into(),
            capacity: 2,
        },
        ErrorCode::NotAllowed,
    );
}

#[test]
fn chat_text_past_the_limit_or_empty_is_refused_and_not_sent() {
    let server = TestServer::start();
    let (room, mut clients) = server.room_with("ann", &["bob"], 2);
    let longest = "é".repeat(2048); // 4096 bytes
    let cases = [
        (format!("{longest}!"), ErrorCode::TooLong),
        (String::new(), ErrorCode::Empty),
        (" \n\t ".to_string(), ErrorCode::Empty),
    ];
    for (text, code) in cases {
        clients[0].refused(Request::Say { text, client_id: 0 }, code);
    }
    clients[0].say(&longest);
    for member in &mut clients {
        member.expect_said(room, "ann", &longest);
        member.expect_quiet();
    }
}

#[test]
fn a_newcomer_sees_the_last_twenty_messages() {
    let server = TestServer::start();
    let (room, mut clients) = server.room_with("ann", &["bob", "cat"], 5);
    let mut said = Vec::new();
    // 24 messages, 8 each, within everyone's burst allowance.
    for n in 0..8 {
        for speaker in 0..3 {
            let text = format!("line {n} from {}", clients[speaker].name);
            clients[speaker].say(&text);
            let from = clients[speaker].name.clone();
            for member in &mut clients {
                member.expect_said(room, &from, &text);
            }
            said.push((from, text));
        }
    }
    let mut dan = server.register("dan");
    let (_, members, history) = dan.join(room);
    assert_eq!(members, ["ann", "bob", "cat", "dan"]);
    let shown: Vec<(String, String)> = history
        .into_iter()
        .map(|l| (l.from.to_string(), l.text.to_string()))
        .collect();
    assert_eq!(shown, said[said.len() - 20..], "the last 20, oldest first");
}

/// A server whose grace period is short enough to see end in a test.
fn with_grace(quiet_ms: i64, grace_ms: i64) -> TestServer {
    TestServer::start_with(move |config| {
        config.limits.quiet_blip = quiet_ms;
        config.limits.grace = grace_ms;
        config.limits.sweep = 50;
    })
}

#[test]
fn a_dropped_member_keeps_their_place_is_told_away_and_back() {
    let server = with_grace(300, 60_000);
    let (room, mut members) = server.room_with("ann", &["bob"], 2);
    let bob = members.pop().unwrap();
    let mut ann = members.pop().unwrap();
    drop(bob);
    let away = Event::Away {
        room,
        name: "bob".into(),
    };
    ann.expect_event(&away);
    // His place is kept: the room of 2 is full.
    let mut cat = server.register("cat");
    cat.refused(Request::JoinRoom { room }, ErrorCode::RoomFull);
    let (mut bob, _) = server.login("bob");
    let (_, members, _) = bob.join(room);
    assert_eq!(members, ["ann", "bob"]);
    ann.expect_event(&Event::Back {
        room,
        name: "bob".into(),
    });
    ann.say("welcome back");
    bob.expect_said(room, "ann", "welcome back");
}

#[test]
fn an_admin_who_drops_closes_the_room_only_when_the_grace_period_ends() {
    let server = with_grace(100, 3_000);
    let (room, mut members) = server.room_with("ann", &["bob"], 5);
    let mut bob = members.pop().unwrap();
    drop(members);
    bob.expect_event(&Event::Away {
        room,
        name: "ann".into(),
    });
    // The room goes on meanwhile.
    bob.say("is she gone?");
    bob.expect_said(room, "bob", "is she gone?");
    bob.expect_event(&Event::RoomClosed {
        room,
        reason: LeaveReason::AdminDisconnected,
    });
}
