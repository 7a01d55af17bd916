//! Resume tokens over the real server: a password login gives a token the
//! database knows only by its SHA-256; `resume` logs in with it, without
//! the password and without scrypt, and replaces it; a replaced token
//! revokes its device; expired, logged-out, unknown and malformed tokens
//! are refused; a flood of resumes from one address is throttled like one
//! of passwords, and touches nobody else.

use crate::kit::{self, Got, RawClient, TestServer, WAIT, client_at, dual_stack};
use chatapp::wire::msg::{ErrorCode, Event, Reply, Request, ServerFrame};
use sha2::{Digest, Sha256};

const NO_LONGER_VALID: &str = "your saved login is no longer valid: log in with your password";

fn resume(token: &str) -> Request {
    Request::Resume {
        token: token.to_string(),
    }
}

fn bytes_of(token: &str) -> Vec<u8> {
    (0..32)
        .map(|i| u8::from_str_radix(&token[2 * i..2 * i + 2], 16).expect("hex"))
        .collect()
}

/// The new token of a successful resume as `name`.
fn resumed(reply: Reply, name: &str) -> String {
    let token = kit::token_of(&reply);
    assert_eq!(kit::tokenless(reply), kit::logged_in(name, 0));
    token
}

/// The message of a `bad_credentials` refusal.
fn refused(reply: Reply) -> String {
    match reply {
        Reply::Error {
            code: ErrorCode::BadCredentials,
            message,
        } => message,
        other => panic!("expected bad_credentials, got {other:?}"),
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Every byte of every file in the data directory.
fn every_byte(server: &TestServer) -> Vec<u8> {
    let mut all = Vec::new();
    for entry in std::fs::read_dir(server.data_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            all.extend(std::fs::read(path).unwrap());
        }
    }
    all
}

#[test]
fn the_database_holds_only_the_hash_of_each_token() {
    let mut server = TestServer::start();
    let first = server.register_with_token("ann").1;
    let (_, second) = server.anonymous("ann").login_with_token();
    let tokens = [first, second];
    let files = every_byte(&server);
    server.stop();
    let after = every_byte(&server);
    for token in &tokens {
        for bytes in [&files, &after] {
            assert!(!contains(bytes, token.as_bytes()), "the token in hex");
            assert!(!contains(bytes, &bytes_of(token)), "the token's bytes");
        }
    }
    let db = kit::open_db(&server.db_path());
    let mut stmt = db
        .prepare("SELECT user, token_hash, previous_hash FROM devices ORDER BY id")
        .unwrap();
    let rows: Vec<(i64, Vec<u8>, Option<Vec<u8>>)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    // Registering logged in once, and the login once more.
    assert_eq!(rows.len(), 2, "{rows:?}");
    for token in &tokens {
        let hash = Sha256::digest(bytes_of(token)).to_vec();
        assert!(
            rows.iter()
                .any(|(user, h, previous)| *user == 1 && *h == hash && previous.is_none()),
            "token_hash is the SHA-256 of the token's bytes"
        );
    }
}

#[test]
fn a_resume_needs_no_password_and_no_scrypt_and_replaces_the_token() {
    let server = TestServer::start();
    let first = server.register_with_token("ann").1;
    let hashed = server.handle().password_jobs();
    assert_eq!(hashed, 1, "registering hashed one password");
    let mut conn = server.anonymous("ann");
    let second = resumed(conn.resume(&first), "ann");
    assert_ne!(second, first, "a new token with every resume");
    // A logged-in session, as after a password login.
    assert_eq!(conn.inbox(), Vec::new());
    let (mut replaced, mut token) = (first, second);
    for _ in 0..10 {
        let next = resumed(server.anonymous("ann").resume(&token), "ann");
        replaced = std::mem::replace(&mut token, next);
    }
    assert_eq!(
        server.handle().password_jobs(),
        hashed,
        "the scrypt threads did nothing for 11 resumes"
    );
    // The token just replaced comes back (a copy): refused, and the device
    // is revoked, so the newest token fails as well.
    assert_eq!(
        refused(server.anonymous("thief").resume(&replaced)),
        NO_LONGER_VALID
    );
    assert_eq!(
        refused(server.anonymous("ann").resume(&token)),
        NO_LONGER_VALID
    );
    // The password still works.
    server.login("ann");
}

#[test]
fn a_replaced_token_revokes_the_device_even_mid_session() {
    let server = TestServer::start();
    let first = server.register_with_token("ann").1;
    let mut owner = server.anonymous("ann");
    resumed(owner.resume(&first), "ann");
    assert_eq!(
        refused(server.anonymous("thief").resume(&first)),
        NO_LONGER_VALID
    );
    // The session the device served is ended and told why.
    let reason = owner.wait_for("bye", |e| match e {
        Event::Bye { reason, .. } => Some(reason.clone()),
        _ => None,
    });
    assert!(reason.contains("log in with your password"), "{reason}");
}

#[test]
fn an_expired_token_is_refused_and_forgotten() {
    let mut server = TestServer::start();
    let token = server.register_with_token("ann").1;
    server.stop();
    {
        let db = rusqlite::Connection::open(server.db_path()).unwrap();
        let old = chatapp::server::limits::DAY * 31;
        let changed = db
            .execute("UPDATE devices SET last_used = last_used - ?1", [old])
            .unwrap();
        assert_eq!(changed, 1);
    }
    server.restart();
    assert_eq!(
        refused(server.anonymous("ann").resume(&token)),
        NO_LONGER_VALID
    );
    server.stop();
    let db = kit::open_db(&server.db_path());
    let left: i64 = db
        .query_row("SELECT COUNT(*) FROM devices", [], |r| r.get(0))
        .unwrap();
    assert_eq!(left, 0, "the expired device is deleted");
}

#[test]
fn a_shorter_expiry_keeps_fresh_tokens() {
    let server = TestServer::start_with(|c| c.limits.resume_expiry = 60_000);
    let token = server.register_with_token("ann").1;
    resumed(server.anonymous("ann").resume(&token), "ann");
}

#[test]
fn a_logged_out_token_is_refused() {
    let server = TestServer::start();
    let mut ann = server.anonymous("ann");
    let token = ann.register();
    ann.ok(Request::Logout);
    assert_eq!(refused(ann.resume(&token)), NO_LONGER_VALID);
    assert_eq!(
        refused(server.anonymous("ann").resume(&token)),
        NO_LONGER_VALID
    );
}

#[test]
fn a_token_logs_in_as_its_own_user_whatever_the_request_says() {
    let server = TestServer::start();
    let ann = server.register_with_token("ann").1;
    server.register("bob");
    // A resume with a name beside the token (a key the server skips).
    let mut raw = RawClient::open(&server.addr());
    let mut plain = chatapp::wire::msg::encode(&chatapp::wire::msg::ClientFrame {
        id: 1,
        req: resume(&ann),
    })
    .unwrap();
    let req = plain
        .windows(4)
        .position(|w| w == b"\xa3req")
        .expect("the req key")
        + 4;
    assert_eq!(plain[req], 0x82, "a map of type and token");
    plain[req] = 0x83;
    plain.extend_from_slice(b"\xa4name\xa3bob");
    raw.send_plaintext(&plain);
    let reply = raw.reply_to(1);
    resumed(reply, "ann");
    // It is ann who is logged in: writing to bob is not writing to
    // oneself, which bob could not do.
    let text = Request::SendPrivate {
        to: "bob".into(),
        text: "from ann".into(),
        client_id: 0,
    };
    assert_eq!(raw.request(text), Reply::Ok);
}

#[test]
fn bad_tokens_are_refused_with_what_to_do_and_throttled_by_address() {
    let Some((_dir, handle)) = dual_stack(|_| {}) else {
        return;
    };
    let mut ann = client_at(&handle, "[::1]", "ann");
    let token = ann.register();
    let mut bob = client_at(&handle, "[::1]", "bob");
    bob.register();
    let port = handle.addr.port();
    let mut flood = RawClient::open(&format!("127.0.0.1:{port}"));
    let malformed = refused(flood.request(resume("let me in")));
    assert!(malformed.contains("64 hex characters"), "{malformed}");
    assert!(
        malformed.contains("log in with your password"),
        "{malformed}"
    );
    assert_eq!(
        refused(flood.request(resume(&"0".repeat(64)))),
        NO_LONGER_VALID
    );
    assert_eq!(
        refused(flood.request(resume(&"A".repeat(64)))),
        NO_LONGER_VALID
    );
    // Three failures from 127.0.0.1: the next resume from there waits
    // before its token is looked at, as a login would; meanwhile the
    // connection is checking a login, and says so.
    let held = flood.send(resume(&"1".repeat(64)));
    let asked = flood.send(Request::Inbox);
    let [held, asked] = <[Reply; 2]>::try_from(flood.replies(&[held, asked])).unwrap();
    assert!(
        matches!(&asked, Reply::Error { code: ErrorCode::NotAllowed, message } if message.contains("wait")),
        "{asked:?}"
    );
    assert_eq!(refused(held), NO_LONGER_VALID);
    // Its connection stays open, and nobody else noticed: ann, from ::1,
    // resumes at once (a request right behind it is answered as hers).
    assert_eq!(flood.request(Request::Ping), Reply::Pong);
    let mut again = RawClient::open(&format!("[::1]:{port}"));
    let resume_id = again.send(resume(&token));
    let inbox_id = again.send(Request::Inbox);
    let [resumed_reply, inbox] =
        <[Reply; 2]>::try_from(again.replies(&[resume_id, inbox_id])).unwrap();
    resumed(resumed_reply, "ann");
    assert_eq!(
        inbox,
        Reply::Inbox {
            conversations: vec![]
        }
    );
    // ...and bob's session goes on as before.
    bob.send_private("ann", "still here");
    match again.read(WAIT) {
        Got::Frame(ServerFrame::Event {
            event: Event::PrivateMessage { line },
        }) => assert_eq!(&*line.text, "still here"),
        other => panic!("ann waits for bob's message: {other:?}"),
    }
}

/// The next room line `client` hears; it must be `text`, from bob.
fn heard(client: &mut kit::Client, text: &str) {
    let line = client.wait_for("a room line", |e| match e {
        Event::RoomMessage { line, .. } => Some(line.clone()),
        _ => None,
    });
    assert_eq!((&*line.from, &*line.text), ("bob", text));
}

/// A line sent again after a dropped connection, with the same client id
/// from the same device: stored once, acknowledged both times, shown once;
/// and still recognised after a restart.
#[test]
fn a_message_sent_again_with_its_client_id_is_stored_once() {
    let mut server = TestServer::start();
    let mut ann = server.register("ann");
    let room = ann.create_room("Lobby", 5);
    let (mut bob, token) = server.register_with_token("bob");
    bob.join(room);
    let say = |text: &str, client_id: u64| Request::Say {
        text: text.into(),
        client_id,
    };
    bob.ok(say("only once", 7));
    heard(&mut ann, "only once");
    // The connection drops before bob saw the ok: the device resumes on a
    // new one and sends the line again, with its id.
    drop(bob);
    let mut bob = server.anonymous("bob");
    let token = resumed(bob.resume(&token), "bob");
    bob.join(room);
    bob.ok(say("only once", 7));
    // An older id is a repeat too; a newer one is a new line.
    bob.ok(say("older", 3));
    bob.ok(say("a new line", 8));
    heard(&mut ann, "a new line");
    // Another device of bob's numbers its own lines.
    let mut phone = server.anonymous("bob");
    phone.login_with_token();
    phone.ok(Request::SendPrivate {
        to: "ann".into(),
        text: "from the phone".into(),
        client_id: 7,
    });
    let pm = ann.wait_for("the phone's line", |e| match e {
        Event::PrivateMessage { line } => Some(line.text.to_string()),
        _ => None,
    });
    assert_eq!(pm, "from the phone");
    drop((bob, phone));

    // After a restart the device's last id comes from the database.
    server.restart();
    let mut bob = server.anonymous("bob");
    resumed(bob.resume(&token), "bob");
    bob.ok(Request::SendPrivate {
        to: "ann".into(),
        text: "a new line".into(),
        client_id: 8,
    });
    let (mut ann, _) = server.login("ann");
    let lines: Vec<String> = match ann.request(Request::OpenDialogue { with: "bob".into() }) {
        Reply::Dialogue { history, .. } => history.iter().map(|l| l.text.to_string()).collect(),
        other => panic!("{other:?}"),
    };
    assert_eq!(
        lines,
        ["from the phone"],
        "the repeat after the restart is not stored"
    );
    let db = kit::open_db(&server.db_path());
    let count = |text: &str| -> i64 {
        db.query_row(
            "SELECT COUNT(*) FROM messages WHERE body = ?1",
            [text],
            |row| row.get(0),
        )
        .unwrap()
    };
    assert_eq!(
        (count("only once"), count("older"), count("a new line")),
        (1, 0, 1)
    );
}
