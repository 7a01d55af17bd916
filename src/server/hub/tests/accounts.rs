//! Accounts and logging in: registration, names, passwords, throttled
//! logins, a second login, and an account the store could not keep.

use super::*;

#[test]
fn register_logs_in_and_names_are_unique_without_regard_to_case() {
    let mut w = World::new();
    w.user("Alice");
    let c = w.connect();
    let reply = w.ask(
        c,
        Request::Register {
            name: "alice".into(),
            password: PW.into(),
        },
    );
    assert_eq!(
        reply,
        Some(Reply::Error {
            code: ErrorCode::NameTaken,
            message: "that name is taken".into()
        })
    );
    // The same connection may try again with another name.
    w.ask(
        c,
        Request::Register {
            name: "alice2".into(),
            password: PW.into(),
        },
    )
    .unwrap();
    // Each account, and the device its registration logged in from.
    assert!(matches!(
        &w.committed[..],
        [Write::User { name: a, .. }, Write::Device { .. }, Write::User { name: b, .. }, Write::Device { .. }]
            if a == "Alice" && b == "alice2"
    ));
}

#[test]
fn registration_refuses_bad_names_and_weak_passwords_with_reasons() {
    let mut w = World::new();
    let c = w.connect();
    for (name, password, code) in [
        ("a", PW, ErrorCode::InvalidName),
        ("no spaces", PW, ErrorCode::InvalidName),
        ("bob", "short", ErrorCode::WeakPassword),
        ("bob", "bob-is-my-name-1", ErrorCode::WeakPassword),
    ] {
        let req = Request::Register {
            name: name.into(),
            password: password.into(),
        };
        assert_eq!(w.error(c, req), code, "{name} / {password}");
    }
}

#[test]
fn wrong_password_and_unknown_user_get_the_same_reply() {
    let mut w = World::new();
    w.user("alice");
    let wrong = w.login("alice", "not the password at all");
    let unknown = w.login("nobody", PW);
    assert_eq!(wrong, unknown);
    assert!(matches!(
        wrong,
        Some(Reply::Error {
            code: ErrorCode::BadCredentials,
            ..
        })
    ));
    assert!(matches!(
        w.login("ALICE", PW),
        Some(Reply::LoggedIn { name, .. }) if name == "alice"
    ));
}

#[test]
fn nothing_but_login_is_allowed_before_it() {
    let mut w = World::new();
    let c = w.connect();
    for req in [
        Request::JoinRoom { room: 1 },
        Request::Say {
            text: "hi".into(),
            client_id: 0,
        },
        Request::Inbox,
        Request::SendPrivate {
            to: "x".into(),
            text: "y".into(),
            client_id: 0,
        },
    ] {
        assert_eq!(w.error(c, req), ErrorCode::NotAllowed);
    }
    assert_eq!(w.ask(c, Request::Ping), Some(Reply::Pong));
}

#[test]
fn a_second_login_is_another_session_of_the_same_user() {
    let mut w = World::new();
    let (ann, bob) = (w.user("ann"), w.user("bob"));
    let room = w.create_room(ann, "Lobby", 2);
    w.join(bob, room);
    w.events(ann);
    // Bob logs in from a second device: the first session goes on.
    assert!(matches!(w.login("bob", PW), Some(Reply::LoggedIn { .. })));
    let bob2 = ConnId(w.next_conn - 1);
    assert!(!w.closed.contains(&bob));
    assert!(w.events(bob).is_empty());
    assert!(w.events(ann).is_empty());
    // The second session joins the full room: bob counts once, and is not
    // announced again.
    assert!(matches!(
        w.join(bob2, room),
        Reply::Room { members, .. } if members == ["ann", "bob"]
    ));
    assert!(w.events(ann).is_empty());
    w.say(ann, "to both");
    assert_eq!(texts(&w.events(bob)), ["ann: to both"]);
    assert_eq!(texts(&w.events(bob2)), ["ann: to both"]);
    w.events(ann);
    // One session leaving is not bob leaving; the last one is.
    assert_eq!(w.ask(bob, Request::LeaveRoom), Some(Reply::Ok));
    assert!(w.events(ann).is_empty());
    w.say(ann, "still here?");
    assert_eq!(texts(&w.events(bob2)), ["ann: still here?"]);
    assert!(texts(&w.events(bob)).is_empty());
    w.events(ann);
    w.input(Input::Disconnected {
        conn: bob2,
        reason: "gone".into(),
    });
    assert_eq!(
        w.events(ann),
        vec![left(room, "bob", LeaveReason::Disconnected)]
    );
}

#[test]
fn a_kick_takes_every_session_of_the_user_out() {
    let mut w = World::new();
    let (ann, bob) = (w.user("ann"), w.user("bob"));
    let room = w.create_room(ann, "Lobby", 5);
    w.join(bob, room);
    w.login("bob", PW);
    let bob2 = ConnId(w.next_conn - 1);
    w.join(bob2, room);
    w.events(ann);
    assert_eq!(
        w.ask(ann, Request::Kick { name: "bob".into() }),
        Some(Reply::Ok)
    );
    for conn in [bob, bob2] {
        assert!(
            matches!(&w.events(conn)[..], [Event::Kicked { .. }]),
            "{conn:?}"
        );
    }
    assert_eq!(w.events(ann), vec![left(room, "bob", LeaveReason::Kicked)]);
}

#[test]
fn a_ninth_session_ends_the_oldest() {
    let mut w = World::new();
    let first = w.user("ann");
    for _ in 1..crate::server::hub::accounts::MAX_SESSIONS {
        assert!(matches!(w.login("ann", PW), Some(Reply::LoggedIn { .. })));
    }
    assert!(w.closed.is_empty(), "eight at once");
    assert!(matches!(w.login("ann", PW), Some(Reply::LoggedIn { .. })));
    assert_eq!(w.closed, [first]);
    assert!(matches!(
        &w.events(first)[..],
        [Event::Bye { reason, resume: false }] if reason.contains("more than 8 places")
    ));
}

#[test]
fn repeated_login_failures_are_held_back_longer_each_time() {
    let mut w = World::new();
    w.user("ann");
    let limits = Limits::default();
    for _ in 0..limits.free_login_failures {
        assert!(matches!(
            w.login("ann", "wrong password here"),
            Some(Reply::Error { .. })
        ));
    }
    // Now the attempt waits 1 s before it is even checked, whoever asks.
    let c = w.connect();
    let id = w.next_id;
    let login = Request::Login {
        name: "ann".into(),
        password: PW.into(),
    };
    assert_eq!(w.ask(c, login.clone()), None);
    let asked = w.now;
    assert!(w.hub.poll_timeout().is_some_and(|t| t <= asked + 1000));
    w.now = asked + 999;
    w.hub.handle_timeout(w.now);
    w.run_effects();
    assert_eq!(w.reply_to(c, id), None);
    w.now = asked + 1000;
    w.hub.handle_timeout(w.now);
    w.run_effects();
    assert!(matches!(w.reply_to(c, id), Some(Reply::LoggedIn { .. })));
    // The success cleared the account's count, but this address keeps its own.
    let again = w.connect();
    let id = w.next_id;
    assert_eq!(w.ask(again, login), None);
    assert_eq!(w.reply_to(again, id), None);
}

#[test]
fn unknown_names_are_throttled_like_real_ones() {
    let mut w = World::new();
    for _ in 0..3 {
        w.login("ghost", "wrong password here");
    }
    let c = w.connect();
    let id = w.next_id;
    w.ask(
        c,
        Request::Login {
            name: "ghost".into(),
            password: PW.into(),
        },
    );
    assert_eq!(w.reply_to(c, id), None, "held back");
}

#[test]
fn an_account_that_could_not_be_stored_is_undone() {
    let mut w = World::new();
    let c = w.connect();
    w.auto_commit = false;
    let id = w.next_id;
    let register = Request::Register {
        name: "ann".into(),
        password: PW.into(),
    };
    assert_eq!(w.ask(c, register.clone()), None, "answered before stored");
    w.commit(false);
    assert!(matches!(
        w.reply_to(c, id),
        Some(Reply::Error {
            code: ErrorCode::Unavailable,
            ..
        })
    ));
    // Logged out again, and the name is free once more.
    assert_eq!(w.error(c, Request::Inbox), ErrorCode::NotAllowed);
    w.auto_commit = true;
    assert!(matches!(
        w.ask(c, register),
        Some(Reply::LoggedIn { name, .. }) if name == "ann"
    ));
}
