//! Hostile and confused clients: each affects only its own connection,
//! while two others keep chatting in a room and the server keeps serving.

use crate::kit::{Client, RawClient, TestServer, WAIT, left, write_ignoring_close};
use chatapp::wire::msg::{ErrorCode, Event, LeaveReason, Request, ServerFrame};
use chatapp::wire::{frame, noise};
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::Instant;

/// Two members chat; `hostile` does its worst on connections of its own;
/// then the two still exchange messages and a newcomer can register.
fn survives(hostile: impl FnOnce(&TestServer, u64, &mut [Client])) {
    let server = TestServer::start();
    let (room, mut pair) = server.room_with("ann", &["bob"], 10);
    pair[0].say("before");
    for c in &mut pair {
        c.expect_said(room, "ann", "before");
    }

    hostile(&server, room, &mut pair);

    pair[0].say("after");
    pair[1].say("still here");
    for c in &mut pair {
        c.expect_said(room, "ann", "after");
        c.expect_said(room, "bob", "still here");
        c.expect_quiet();
    }
    let mut newcomer = server.register("newcomer");
    newcomer.join(room);
}

fn raw(server: &TestServer) -> TcpStream {
    let stream = TcpStream::connect(server.addr()).expect("a TCP connection");
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream
}

/// Reads until the server closes the connection; fails if it is still open
/// after [`WAIT`]. Returns whatever the server sent first.
fn expect_closed(stream: &mut TcpStream) -> Vec<u8> {
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let deadline = Instant::now() + WAIT;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::ConnectionReset) => return got,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                panic!(
                    "the server kept the connection open for {WAIT:?} (it sent {} bytes)",
                    got.len()
                )
            }
            Err(e) => panic!("reading: {e}"),
        }
        assert!(
            Instant::now() < deadline,
            "the server keeps sending and never closes"
        );
    }
}

/// Bytes from a fixed-seed xorshift generator: random-looking, repeatable.
fn junk(len: usize, mut seed: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed >> 24) as u8
        })
        .collect()
}

#[test]
fn random_bytes_instead_of_a_handshake_close_only_that_connection() {
    survives(|server, _, _| {
        // Enough for two whole frames whatever their length fields say: the
        // first is taken as the handshake, the second cannot decrypt.
        let bytes = 2 * (frame::HEADER + frame::MAX_FRAME);
        for seed in [1, 0x5eed, 0xdead_beef] {
            let mut stream = raw(server);
            write_ignoring_close(&mut stream, &junk(bytes, seed));
            expect_closed(&mut stream);
        }
        // A first message too short to hold a key fails the handshake.
        let mut stream = raw(server);
        let mut short = Vec::new();
        frame::push(&mut short, &junk(20, 7));
        write_ignoring_close(&mut stream, &short);
        let sent = expect_closed(&mut stream);
        assert!(
            sent.is_empty(),
            "nothing is answered to a failed handshake: {sent:?}"
        );
    });
}

#[test]
fn the_longest_frame_of_junk_closes_only_that_connection() {
    survives(|server, _, _| {
        let mut stream = raw(server);
        let mut bytes = vec![0xff, 0xff];
        bytes.extend(junk(0xffff, 42));
        write_ignoring_close(&mut stream, &bytes);
        // A first message is exactly 32 bytes (a key, an empty payload), so
        // this is refused at once, unanswered.
        let sent = expect_closed(&mut stream);
        assert!(sent.is_empty(), "junk was answered: {sent:?}");
    });
}

#[test]
fn a_truncated_frame_then_a_closed_socket_only_ends_that_member() {
    survives(|server, room, pair| {
        let mut eve = server.register("eve");
        eve.join(room);
        for c in pair.iter_mut() {
            c.expect_event(&Event::Joined {
                room,
                name: "eve".into(),
            });
        }
        // A frame header promising 300 bytes, and 10 of them.
        let mut stream = eve.conn.stream();
        stream.write_all(&[0x01, 0x2c]).unwrap();
        stream.write_all(&junk(10, 3)).unwrap();
        drop(eve);
        for c in pair.iter_mut() {
            c.expect_event(&left(room, "eve", LeaveReason::Disconnected));
        }
        // eve's account is intact: she logs in again.
        let (_eve, unread) = server.login("eve");
        assert_eq!(unread, 0);
    });
}

/// A Noise channel (the kit's raw client), to send plaintext the client
/// library never would; the handshake must have shown the server's key.
fn channel(server: &TestServer) -> RawClient {
    let raw = RawClient::open(&server.addr());
    assert_eq!(raw.fingerprint, server.handle().fingerprint);
    assert_eq!(noise::fingerprint(&raw.server_key), raw.fingerprint);
    raw
}

#[test]
fn bad_messagepack_in_a_good_channel_gets_a_bye_then_the_door() {
    survives(|server, _, _| {
        let garbage: [&[u8]; 3] = [
            b"\xc1",                                      // a byte MessagePack never uses
            b"\x82\xa2id\x01\xa3req\x81\xa4type\xa4nope", // an unknown request
            b"\x93\x01\x02",                              // an array, not a map
        ];
        for plaintext in garbage {
            let mut channel = channel(server);
            channel.send_plaintext(plaintext);
            match channel.next_or_closed() {
                Some(ServerFrame::Event {
                    event: Event::Bye { reason, .. },
                }) => assert!(reason.contains("malformed"), "{plaintext:?}: {reason}"),
                other => panic!("{plaintext:?}: expected a bye, got {other:?}"),
            }
            assert_eq!(
                channel.next_or_closed(),
                None,
                "{plaintext:?}: the connection closes"
            );
        }
    });
}

#[test]
fn a_request_out_of_turn_is_refused_and_the_connection_goes_on() {
    survives(|server, room, _| {
        let mut stranger = server.anonymous("stranger");
        let out_of_turn = [
            Request::JoinRoom { room },
            Request::CreateRoom {
                name: "mine".into(),
                capacity: 3,
            },
            Request::Say {
                text: "hello room".into(),
                client_id: 0,
            },
            Request::SendPrivate {
                to: "ann".into(),
                text: "hi".into(),
                client_id: 0,
            },
            Request::Inbox,
            Request::Logout,
        ];
        for req in out_of_turn {
            stranger.refused(req, ErrorCode::NotAllowed);
        }
        // The same connection may still do what is allowed.
        stranger.register();
        stranger.create_room("stranger's corner", 2);
    });
}
