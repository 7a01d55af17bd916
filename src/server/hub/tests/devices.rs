//! Devices and resume tokens: a password login makes a device with a
//! token, a resume logs in with it (no scrypt) and replaces it, and a
//! replaced, expired, logged-out or unknown token is refused; copied
//! tokens revoke their device; resumes are throttled like logins.

use super::*;
use crate::model::DeviceId;
use crate::store::DeviceRow;
use sha2::{Digest, Sha256};

fn resume(token: &str) -> Request {
    Request::Resume {
        token: token.into(),
    }
}

fn token_of(reply: Option<Reply>) -> String {
    match reply {
        Some(Reply::LoggedIn { token, .. }) => token,
        other => panic!("expected logged_in, got {other:?}"),
    }
}

fn bytes_of(token: &str) -> [u8; 32] {
    let mut bytes = [0u8; 32];
    for (i, b) in bytes.iter_mut().enumerate() {
        *b = u8::from_str_radix(&token[2 * i..2 * i + 2], 16).unwrap();
    }
    bytes
}

fn refusal(reply: Option<Reply>) -> (ErrorCode, String) {
    match reply {
        Some(Reply::Error { code, message }) => (code, message),
        other => panic!("expected an error, got {other:?}"),
    }
}

const NO_LONGER_VALID: &str = "your saved login is no longer valid: log in with your password";

#[test]
fn a_password_login_stores_only_the_hash_of_a_fresh_token() {
    let mut w = World::new();
    let (_, first) = w.user_with_token("ann");
    let second = token_of(w.login("ann", PW));
    for token in [&first, &second] {
        assert_eq!(token.len(), 64);
        assert!(
            token
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        );
    }
    assert_ne!(first, second, "each login makes its own device");
    let hashes: Vec<[u8; 32]> = w
        .committed
        .iter()
        .filter_map(|write| match write {
            Write::Device {
                user, token_hash, ..
            } => {
                assert_eq!(*user, UserId(1));
                Some(*token_hash)
            }
            _ => None,
        })
        .collect();
    let expected: Vec<[u8; 32]> = [&first, &second]
        .iter()
        .map(|t| Sha256::digest(bytes_of(t)).into())
        .collect();
    assert_eq!(hashes, expected);
    // No write carries the token itself.
    let written = format!("{:?}", w.committed);
    assert!(!written.contains(&first) && !written.contains(&second));
}

#[test]
fn a_resume_logs_in_without_scrypt_and_replaces_the_token() {
    let mut w = World::new();
    let (ann, first) = w.user_with_token("ann");
    w.auto_answer = false;
    let c = w.connect();
    let second = match w.ask(c, resume(&first)) {
        Some(Reply::LoggedIn {
            name,
            unread: 0,
            token,
            node: None,
        }) if name == "ann" => token,
        other => panic!("{other:?}"),
    };
    assert!(w.jobs.is_empty(), "no password work for a resume");
    assert_ne!(second, first, "a new token for every use");
    assert!(matches!(
        w.committed.last(),
        Some(Write::RotateDevice { id: DeviceId(1), token_hash, previous_hash, .. })
            if *token_hash == <[u8; 32]>::from(Sha256::digest(bytes_of(&second)))
            && *previous_hash == <[u8; 32]>::from(Sha256::digest(bytes_of(&first)))
    ));
    // The device's session moves to the new connection: the old one, of
    // the same device, ends.
    assert!(w.closed.contains(&ann));
    w.auto_answer = true;
    assert_eq!(
        w.ask(c, Request::Inbox),
        Some(Reply::Inbox {
            conversations: vec![]
        })
    );
    // The new token works in turn.
    let third = token_of(w.login_with(&second));
    assert_ne!(third, second);
}

#[test]
fn a_replaced_token_is_refused_and_revokes_its_device() {
    let mut w = World::new();
    let (_, first) = w.user_with_token("ann");
    let c = w.connect();
    let second = token_of(w.ask(c, resume(&first)));
    w.events(c);
    // The copy comes back: refused, and the device is gone...
    let thief = w.connect();
    let (code, message) = refusal(w.ask(thief, resume(&first)));
    assert_eq!(code, ErrorCode::BadCredentials);
    assert_eq!(message, NO_LONGER_VALID);
    assert!(matches!(
        w.committed.last(),
        Some(Write::DeleteDevice { id: DeviceId(1) })
    ));
    // ...so the session it served ends, and the newest token fails too.
    assert!(w.closed.contains(&c));
    assert!(
        matches!(&w.events(c)[..], [Event::Bye { reason, resume: false }] if reason.contains("revoked"))
    );
    let owner = w.connect();
    assert_eq!(refusal(w.ask(owner, resume(&second))).1, NO_LONGER_VALID);
    assert_eq!(w.hub.devices(), 0);
    // The password still works.
    assert!(matches!(
        w.ask(
            owner,
            Request::Login {
                name: "ann".into(),
                password: PW.into()
            }
        ),
        Some(Reply::LoggedIn { .. })
    ));
}

#[test]
fn an_unused_token_expires() {
    let mut w = World::new();
    w.tick = 0;
    let (_, token) = w.user_with_token("ann");
    let expiry = Limits::default().resume_expiry;
    // Used just within the expiry: fine, and the clock starts again.
    w.now += expiry;
    let c = w.connect();
    let token = token_of(w.ask(c, resume(&token)));
    w.ask(c, Request::Logout);
    let c = w.connect();
    assert_eq!(
        refusal(w.ask(c, resume(&token))).1,
        NO_LONGER_VALID,
        "logged out"
    );

    let (_, token) = w.user_with_token("bob");
    w.now += expiry + 1;
    let c = w.connect();
    let (code, message) = refusal(w.ask(c, resume(&token)));
    assert_eq!(
        (code, message.as_str()),
        (ErrorCode::BadCredentials, NO_LONGER_VALID)
    );
    assert!(matches!(
        w.committed.last(),
        Some(Write::DeleteDevice { .. })
    ));
    assert_eq!(w.hub.devices(), 0);
}

#[test]
fn logging_out_revokes_the_sessions_device_only() {
    let mut w = World::new();
    let (ann, on_laptop) = w.user_with_token("ann");
    let on_phone = token_of(w.login("ann", PW));
    assert!(
        !w.closed.contains(&ann),
        "another device: both sessions go on"
    );
    let c = w.connect();
    let on_phone = token_of(w.ask(c, resume(&on_phone)));
    assert_eq!(w.ask(c, Request::Logout), Some(Reply::Ok));
    assert!(matches!(
        w.committed.last(),
        Some(Write::DeleteDevice { id: DeviceId(2) })
    ));
    assert_eq!(refusal(w.ask(c, resume(&on_phone))).1, NO_LONGER_VALID);
    // The other device keeps its token.
    assert!(matches!(
        w.ask(c, resume(&on_laptop)),
        Some(Reply::LoggedIn { .. })
    ));
}

#[test]
fn a_token_logs_in_as_its_own_user_only() {
    let mut w = World::new();
    let (_, ann) = w.user_with_token("ann");
    let (_, bob) = w.user_with_token("bob");
    for (token, name) in [(ann, "ann"), (bob, "bob")] {
        let c = w.connect();
        assert!(matches!(
            w.ask(c, resume(&token)),
            Some(Reply::LoggedIn { name: got, .. }) if got == name
        ));
    }
}

#[test]
fn resume_is_allowed_only_before_logging_in() {
    let mut w = World::new();
    let (ann, token) = w.user_with_token("ann");
    assert_eq!(w.error(ann, resume(&token)), ErrorCode::AlreadyLoggedIn);
    w.auto_answer = false;
    let c = w.connect();
    w.ask(
        c,
        Request::Login {
            name: "ann".into(),
            password: PW.into(),
        },
    );
    assert_eq!(w.error(c, resume(&token)), ErrorCode::NotAllowed);
}

#[test]
fn malformed_and_unknown_tokens_are_refused_and_throttled_by_address() {
    let mut w = World::new();
    let (_, good) = w.user_with_token("ann");
    let c = w.connect_from("198.51.100.7");
    let (code, message) = refusal(w.ask(c, resume("not a token")));
    assert_eq!(code, ErrorCode::BadCredentials);
    assert!(message.contains("64 hex characters"), "{message}");
    assert!(message.contains("log in with your password"), "{message}");
    assert_eq!(
        refusal(w.ask(c, resume(&"é".repeat(32)))).0,
        ErrorCode::BadCredentials
    );
    assert_eq!(
        refusal(w.ask(c, resume(&"0".repeat(64)))).1,
        NO_LONGER_VALID
    );
    // Three failures from this address: the next resume, even a good one,
    // waits a second before its token is looked at.
    let id = w.next_id;
    assert_eq!(w.ask(c, resume(&good)), None, "held back");
    let asked = w.now;
    assert_eq!(w.error(c, Request::Inbox), ErrorCode::NotAllowed);
    assert!(w.hub.poll_timeout().is_some_and(|t| t <= asked + 1000));
    w.now = asked + 999;
    w.timeout();
    assert_eq!(w.reply_to(c, id), None);
    w.now = asked + 1000;
    w.timeout();
    assert!(matches!(w.reply_to(c, id), Some(Reply::LoggedIn { .. })));
    // A password login from there is held back as well; another address is not.
    let d = w.connect_from("198.51.100.7");
    let login = Request::Login {
        name: "ann".into(),
        password: PW.into(),
    };
    let delay = w
        .hub
        .accounts
        .login_delay(w.now, "ann", "198.51.100.7", &Limits::default());
    assert_eq!(delay, 1000);
    assert_eq!(w.ask(d, login.clone()), None);
    let e = w.connect_from("203.0.113.9");
    assert_eq!(
        refusal(w.ask(e, resume(&"1".repeat(64)))).1,
        NO_LONGER_VALID
    );
    assert!(matches!(w.ask(e, login), Some(Reply::LoggedIn { .. })));
}

#[test]
fn a_password_login_past_the_cap_revokes_the_least_recently_used_device() {
    let limits = Limits {
        max_devices: 2,
        ..Limits::default()
    };
    let mut w = harness::Harness::build(harness::snapshot(Vec::new()), limits, ());
    let (_, first) = w.user_with_token("ann");
    let second = token_of(w.login("ann", PW));
    // Using the first makes the second the least recently used.
    let first = token_of(w.login_with(&first));
    let third = token_of(w.login("ann", PW));
    assert_eq!(w.hub.devices(), 2);
    assert!(
        w.committed
            .iter()
            .any(|x| matches!(x, Write::DeleteDevice { id: DeviceId(2) }))
    );
    assert_eq!(refusal(w.login_with(&second)).1, NO_LONGER_VALID);
    for token in [first, third] {
        assert!(matches!(w.login_with(&token), Some(Reply::LoggedIn { .. })));
    }
}

#[test]
fn devices_come_from_the_snapshot() {
    let token = "5a".repeat(32);
    let mut snapshot = harness::snapshot(vec![harness::account(1, "ann")]);
    snapshot.devices = vec![DeviceRow {
        id: DeviceId(41),
        user: UserId(1),
        token_hash: Sha256::digest(bytes_of(&token)).into(),
        previous_hash: None,
        created: 0,
        last_used: 500,
        last_client_id: 0,
    }];
    let mut w = World::with(snapshot);
    let next = token_of(w.login_with(&token));
    assert!(matches!(
        w.committed.last(),
        Some(Write::RotateDevice {
            id: DeviceId(41),
            ..
        })
    ));
    token_of(w.login("ann", PW));
    assert!(matches!(
        w.committed.last(),
        Some(Write::Device {
            id: DeviceId(42),
            ..
        })
    ));
    assert!(matches!(w.login_with(&next), Some(Reply::LoggedIn { .. })));
}

#[test]
fn a_resume_the_store_could_not_keep_is_undone() {
    let mut w = World::new();
    let (_, token) = w.user_with_token("ann");
    w.auto_commit = false;
    let c = w.connect();
    let id = w.next_id;
    assert_eq!(w.ask(c, resume(&token)), None, "answered once stored");
    w.commit(false);
    assert!(matches!(
        w.reply_to(c, id),
        Some(Reply::Error {
            code: ErrorCode::Unavailable,
            ..
        })
    ));
    assert_eq!(w.error(c, Request::Inbox), ErrorCode::NotAllowed);
    assert_eq!(
        w.hub.devices(),
        0,
        "revoked: the store may hold either token"
    );
    w.commit(true);
    assert!(matches!(
        w.committed.last(),
        Some(Write::DeleteDevice { id: DeviceId(1) })
    ));
}

#[test]
fn a_resume_held_past_the_login_deadline_leaves_the_token_as_it_was() {
    let mut w = World::new();
    let (_, token) = w.user_with_token("ann");
    for _ in 0..3 {
        let c = w.connect();
        w.ask(c, resume(&"0".repeat(64)));
    }
    let c = w.connect();
    let connected = w.now;
    let deadline = connected + Limits::default().login_timeout;
    w.now = deadline - 500;
    assert_eq!(w.ask(c, resume(&token)), None, "held back a second");
    w.now = deadline + 200;
    w.timeout();
    assert!(w.closed.contains(&c), "closed for being late");
    w.now = deadline + 600;
    w.timeout();
    assert!(w.reply_to(c, w.next_id - 1).is_none());
    // The token was not used up: it still works, from elsewhere.
    let d = w.connect_from("203.0.113.9");
    assert!(matches!(
        w.ask(d, resume(&token)),
        Some(Reply::LoggedIn { .. })
    ));
}

#[test]
fn devices_past_their_expiry_are_deleted_without_being_presented() {
    let mut w = World::new();
    let expiry = Limits::default().resume_expiry;
    let (_, ann) = w.user_with_token("ann");
    let registered = w.now;
    w.now += expiry / 2;
    let (_, bob) = w.user_with_token("bob");
    w.timeout();
    assert_eq!(w.hub.devices(), 2, "nothing expired yet");
    w.now = registered + expiry + crate::server::limits::DEVICE_PURGE;
    w.timeout();
    assert_eq!(w.hub.devices(), 1);
    assert!(matches!(
        w.committed.last(),
        Some(Write::DeleteDevice { id: DeviceId(1) })
    ));
    assert_eq!(refusal(w.login_with(&ann)).1, NO_LONGER_VALID);
    assert!(matches!(w.login_with(&bob), Some(Reply::LoggedIn { .. })));
}

#[test]
fn a_repeat_of_a_message_still_on_its_way_is_answered_after_its_commit() {
    let mut w = World::new();
    let (ann, bob) = (w.user("ann"), w.user("bob"));
    let room = w.create_room(ann, "Lobby", 5);
    w.join(bob, room);
    w.events(ann);
    let say = |client_id: u64| Request::Say {
        text: "hello".into(),
        client_id,
    };
    w.auto_commit = false;
    let first = w.request(bob, say(5));
    let again = w.request(bob, say(5));
    assert_eq!(
        w.reply_to(bob, again),
        None,
        "not before the first is stored"
    );
    w.commit(true);
    assert_eq!(w.reply_to(bob, first), Some(Reply::Ok));
    assert_eq!(w.reply_to(bob, again), Some(Reply::Ok));
    assert_eq!(texts(&w.events(ann)), ["bob: hello"]);
    let stored = w
        .committed
        .iter()
        .filter(|write| matches!(write, Write::RoomMessage { .. }))
        .count();
    assert_eq!(stored, 1);
    // With nothing on its way, a repeat is answered at once; no id is
    // never a repeat.
    assert_eq!(w.ask(bob, say(4)), Some(Reply::Ok));
    assert_eq!(w.ask(bob, say(0)), None, "stored, then answered");
    w.commit(true);
    assert_eq!(texts(&w.events(ann)), ["bob: hello"]);
}
