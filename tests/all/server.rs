//! The seed list, through the library: a real server on 127.0.0.1:0, the
//! real protocol, a real SQLite file. (The command-line items are in cli.rs,
//! the thousand clients in load.rs.)

use crate::kit;
use crate::kit::{Client, TestServer, left, open_db};
use chatapp::client::proto;
use chatapp::wire::msg::{ErrorCode, Event, LeaveReason, Request};
use std::net::TcpListener;

#[test]
fn a_single_message_is_acknowledged_and_echoed_to_its_sender() {
    let server = TestServer::start();
    let (room, mut clients) = server.room_with("ann", &[], 2);
    let ann = &mut clients[0];
    ann.say("hello, anyone?");
    let line = ann.expect_said(room, "ann", "hello, anyone?");
    assert!(line.time > 0, "the message carries its time");
    ann.expect_quiet();
}

/// Protocol 2: what the server has for a client in one turn is sealed as
/// one frame, here the acknowledgement of a line and the line itself.
#[test]
fn a_reply_and_the_event_it_releases_arrive_packed_in_one_frame() {
    use chatapp::wire::msg::{Reply, ServerFrame};
    let server = TestServer::start();
    let mut raw = kit::RawClient::open(&server.addr());
    let reply = raw.request(Request::Register {
        name: "ann".into(),
        password: kit::PASSWORD.into(),
    });
    assert!(matches!(reply, Reply::LoggedIn { .. }), "{reply:?}");
    let room = match raw.request(Request::CreateRoom {
        name: "packed".into(),
        capacity: 2,
    }) {
        Reply::Room { room, .. } => room.id,
        other => panic!("{other:?}"),
    };
    let id = raw.send(Request::Say {
        text: "hi".into(),
        client_id: 0,
    });
    let frame = raw.read_packed(kit::WAIT);
    assert_eq!(frame.len(), 2, "{frame:?}");
    assert!(frame.iter().any(|f| matches!(
        f,
        ServerFrame::Event {
            event: Event::RoomMessage { room: r, line }
        } if *r == room && &*line.text == "hi"
    )));
    assert!(frame.contains(&ServerFrame::Reply {
        id,
        result: Reply::Ok
    }));
}

#[test]
fn a_room_message_reaches_every_member_and_no_one_outside() {
    let server = TestServer::start();
    let (room, mut members) = server.room_with("ann", &["bob", "cat"], 10);
    let mut outsider = server.register("dan");
    // Another room next door, whose member must not hear it either.
    let mut neighbour = server.register("eve");
    neighbour.create_room("next door", 5);

    members[1].say("hi all");
    let mut ids = Vec::new();
    for member in &mut members {
        ids.push(member.expect_said(room, "bob", "hi all").id);
    }
    assert!(
        ids.windows(2).all(|w| w[0] == w[1]),
        "one message, one id: {ids:?}"
    );
    outsider.expect_quiet();
    neighbour.expect_quiet();
    for member in &mut members {
        member.expect_quiet();
    }
}

#[test]
fn a_dropped_member_is_announced_as_disconnected() {
    let server = TestServer::start();
    let (room, mut clients) = server.room_with("ann", &["bob", "cat"], 10);
    let bob = clients.remove(1);
    drop(bob);
    for other in &mut clients {
        other.expect_event(&left(room, "bob", LeaveReason::Disconnected));
    }
    // The room goes on without bob.
    clients[1].say("still here");
    for other in &mut clients {
        other.expect_said(room, "cat", "still here");
    }
    match clients[0].request(Request::Members) {
        chatapp::wire::msg::Reply::Members { members } => assert_eq!(members, ["ann", "cat"]),
        other => panic!("members: {other:?}"),
    }
}

#[test]
fn several_rooms_chat_in_parallel_without_cross_talk() {
    const ROOMS: usize = 4;
    const PER_ROOM: usize = 3;
    const MESSAGES: usize = 5;
    let server = TestServer::start();
    let rooms: Vec<(u64, Vec<Client>)> = (0..ROOMS)
        .map(|r| {
            let names: Vec<String> = (1..PER_ROOM).map(|m| format!("r{r}m{m}")).collect();
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            server.room_with(&format!("r{r}admin"), &names, 10)
        })
        .collect();

    let threads: Vec<_> = rooms
        .into_iter()
        .map(|(room, mut clients)| {
            std::thread::spawn(move || {
                // Members take turns, so every room is busy at the same time
                // as the others.
                let mut sent = Vec::new();
                for n in 0..MESSAGES {
                    for client in &mut clients {
                        let text = format!("#{room} {} says {n}", client.name);
                        client.say(&text);
                        sent.push(text);
                    }
                }
                // Every member sees exactly its room's messages, in the same
                // order as every other member.
                let mut orders = Vec::new();
                for client in &mut clients {
                    let mut seen = Vec::new();
                    while seen.len() < sent.len() {
                        match client.next_event() {
                            Event::RoomMessage { room: got, line } => {
                                assert_eq!(
                                    got, room,
                                    "{}: a message from another room",
                                    client.name
                                );
                                seen.push(line.text.to_string());
                            }
                            other => panic!("{}: unexpected {other:?}", client.name),
                        }
                    }
                    let mut sorted = seen.clone();
                    sorted.sort();
                    let mut expected = sent.clone();
                    expected.sort();
                    assert_eq!(sorted, expected, "{}: the room's messages", client.name);
                    client.expect_quiet();
                    orders.push(seen);
                }
                assert!(
                    orders.windows(2).all(|w| w[0] == w[1]),
                    "one order per room"
                );
            })
        })
        .collect();
    for t in threads {
        t.join().expect("a room's thread passed");
    }
}

#[test]
fn users_and_messages_survive_a_restart() {
    let mut server = TestServer::start();
    let (room, mut clients) = server.room_with("ann", &["bob"], 5);
    let said = [(0, "first"), (1, "second"), (0, "third")];
    for (speaker, text) in said {
        clients[speaker].say(text);
        let from = clients[speaker].name.clone();
        for client in &mut clients {
            client.expect_said(room, &from, text);
        }
    }
    let mut cat = server.register("cat");
    cat.ok(Request::Logout);
    drop(cat);
    clients[0].send_private("cat", "read this when you are back");
    drop(clients);

    server.restart();

    let (mut cat, unread) = server.login("cat");
    assert_eq!(unread, 1, "the private message waits, unread");
    let inbox = cat.inbox();
    assert_eq!(inbox.len(), 1, "{inbox:?}");
    assert_eq!(
        (
            inbox[0].with.as_str(),
            inbox[0].last_from.as_str(),
            inbox[0].last_text.as_str(),
            inbox[0].unread
        ),
        ("ann", "ann", "read this when you are back", 1)
    );
    let (mut bob, unread) = server.login("bob");
    assert_eq!(unread, 0);
    // Rooms do not outlive the run that held them; their names do not block.
    bob.refused(Request::JoinRoom { room }, ErrorCode::RoomClosed);
    let new_room = bob.create_room("ann's room", 3);
    assert!(
        new_room > room,
        "room ids are not reused: {new_room} after {room}"
    );
    // Accounts are still there: their names are still taken.
    let mut again = server.anonymous("ANN");
    again.refused(
        Request::Register {
            name: "ANN".into(),
            password: kit::PASSWORD.into(),
        },
        ErrorCode::NameTaken,
    );

    server.stop();
    let db = open_db(&server.db_path());
    let texts: Vec<String> = db
        .prepare("SELECT body FROM messages WHERE room = ?1 ORDER BY id")
        .unwrap()
        .query_map([room as i64], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let expected: Vec<&str> = said.iter().map(|(_, text)| *text).collect();
    assert_eq!(texts, expected, "the room's messages are in the database");
    let users: i64 = db
        .query_row("SELECT COUNT(*) FROM users", [], |row| row.get(0))
        .unwrap();
    assert_eq!(users, 3);
    let closed: Option<i64> = db
        .query_row(
            "SELECT closed FROM rooms WHERE id = ?1",
            [room as i64],
            |row| row.get(0),
        )
        .unwrap();
    assert!(
        closed.is_some(),
        "the first run's room is recorded as closed"
    );
}

#[test]
fn connecting_to_a_port_with_no_server_says_so() {
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let addr = format!("127.0.0.1:{port}");
    let err = match proto::connect(&addr) {
        Ok(_) => panic!("connected to {addr}, where nothing listens"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("connection refused"), "{err}");
    assert!(err.contains("chatapp serve"), "{err}");
    assert!(err.contains(&addr), "the message names the address: {err}");
}
