//! Rules of `docs/PROTOCOL.md` that a client written from the document
//! alone depends on and that are easy to get wrong: what the server does
//! after a `logout`, what counts as white space, that refused messages use
//! up the message budget, and that chat text reaches others as it was
//! typed, control characters included (which is why every client must
//! clean it before showing it). Real server, real protocol.

use crate::kit;
use crate::kit::{Got, RawClient, TestServer, WAIT, shorten};
use chatapp::wire::msg::{ErrorCode, Event, Reply, Request, ServerFrame};
use std::time::Instant;

#[test]
fn after_logout_the_idle_rules_apply_not_the_login_deadline() {
    // If the login deadline applied again after a logout, the `bye` for it
    // would come well before the idle `ping`.
    let (login, ping, close) = (500, 1500, 60_000);
    let server = TestServer::start_with(move |c| shorten(c, login, ping, close));
    // A raw client: it does not answer pings, so every frame is seen.
    let mut ann = RawClient::open(&server.addr());
    let reply = ann.request(Request::Register {
        name: "ann".into(),
        password: kit::PASSWORD.into(),
    });
    assert!(matches!(reply, Reply::LoggedIn { .. }), "{reply:?}");
    assert_eq!(ann.request(Request::Logout), Reply::Ok);

    // The first thing the server sends after the logout is the idle ping.
    let wait = WAIT + std::time::Duration::from_millis(ping as u64);
    match ann.read(wait) {
        Got::Frame(ServerFrame::Event { event: Event::Ping }) => {}
        other => panic!("after a logout the first frame is a ping, got {other:?}"),
    }
    // The connection is still open and can log in again.
    let reply = ann.request(Request::Login {
        name: "ann".into(),
        password: kit::PASSWORD.into(),
    });
    assert_eq!(kit::tokenless(reply), kit::logged_in("ann", 0));
}

#[test]
fn white_space_is_unicode_white_space_and_nothing_else() {
    let server = TestServer::start();
    let (room, mut clients) = server.room_with("ann", &["bob"], 2);
    // Only White_Space characters: refused as empty, nothing sent.
    for text in ["", " ", "\t\n\r", "\u{3000}\u{2028}\u{a0}\u{85}\u{205f}"] {
        clients[0].refused(
            Request::Say {
                text: text.into(),
                client_id: 0,
            },
            ErrorCode::Empty,
        );
    }
    // Invisible, but not white space: sent as any text.
    for text in ["\u{200b}", "\u{2060}", "\u{feff}", "\u{180e}"] {
        clients[0].ok(Request::Say {
            text: text.into(),
            client_id: 0,
        });
        for c in &mut clients {
            c.expect_said(room, "ann", text);
        }
    }
    clients[1].expect_quiet();
}

#[test]
fn control_characters_reach_others_as_they_were_sent() {
    let server = TestServer::start();
    let (room, mut clients) = server.room_with("ann", &["bob"], 2);
    let text = "\u{1b}]0;owned\u{7}\u{1b}[2J\rhi\u{8}\u{9b}31m";
    clients[0].ok(Request::Say {
        text: text.into(),
        client_id: 0,
    });
    for c in &mut clients {
        c.expect_said(room, "ann", text);
    }
    clients[0].ok(Request::SendPrivate {
        to: "bob".into(),
        text: text.into(),
        client_id: 0,
    });
    for c in &mut clients {
        c.expect_private("ann", "bob", text);
    }
}

#[test]
fn refused_messages_use_up_the_message_budget() {
    // No message token ever comes back, so that the outcome does not
    // depend on how fast the requests below are handled.
    let server = TestServer::start_with(|c| c.limits.messages_per_second = 0);
    let mut ann = server.register("ann");
    let mut bob = server.register("bob");
    let burst = ann_burst();
    assert_eq!(burst.len(), 10, "as many as the message burst");
    let ids: Vec<u32> = burst
        .iter()
        .cloned()
        .chain([Request::SendPrivate {
            to: "bob".into(),
            text: "a good message".into(),
            client_id: 0,
        }])
        .map(|req| ann.conn.send(req).expect("send"))
        .collect();
    let mut replies = vec![None; ids.len()];
    let deadline = Instant::now() + WAIT;
    while replies.iter().any(Option::is_none) {
        let left = deadline.saturating_duration_since(Instant::now());
        match ann.conn.next_frame(left) {
            Ok(Some(ServerFrame::Reply { id, result })) => {
                let at = ids.iter().position(|&i| i == id).expect("a reply to ours");
                replies[at] = Some(result);
            }
            Ok(Some(ServerFrame::Event { event })) => panic!("unexpected {event:?}"),
            Ok(None) => panic!("replies missing after {WAIT:?}: {replies:?}"),
            Err(e) => panic!("{e}"),
        }
    }
    let codes: Vec<ErrorCode> = replies
        .iter()
        .map(|r| match r {
            Some(Reply::Error { code, .. }) => *code,
            other => panic!("every request is refused, got {other:?}"),
        })
        .collect();
    use ErrorCode::*;
    assert_eq!(
        codes,
        [
            NotMember,
            NotMember,
            NotMember,
            NotMember,
            NoSuchUser,
            NoSuchUser,
            NotAllowed,
            Empty,
            Empty,
            TooLong,
            RateLimited,
        ]
    );
    bob.expect_quiet();
}

/// Ten messages from a logged-in user in no room, each refused for a
/// reason of its own.
fn ann_burst() -> Vec<Request> {
    let say = |text: &str| Request::Say {
        text: text.into(),
        client_id: 0,
    };
    let private = |to: &str, text: &str| Request::SendPrivate {
        to: to.into(),
        text: text.into(),
        client_id: 0,
    };
    vec![
        say("in no room"),
        say("still in no room"),
        say(""),
        say(&"x".repeat(5000)),
        private("nobody", "hello"),
        private("nobody", "hello again"),
        private("ann", "to myself"),
        private("bob", " "),
        private("bob", "\u{3000}"),
        private("bob", &"x".repeat(4097)),
    ]
}
