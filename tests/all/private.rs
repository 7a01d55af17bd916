//! Private messages: live delivery, the inbox and its unread counts, reading
//! a dialogue, and what survives a restart.

use crate::kit::TestServer;
use chatapp::wire::msg::{ErrorCode, Request};

#[test]
fn a_private_message_to_an_online_user_arrives_at_once() {
    let server = TestServer::start();
    let mut ann = server.register("ann");
    let mut bob = server.register("bob");
    // Bob is busy in a room: the message reaches him there too.
    bob.create_room("bob's den", 2);
    ann.send_private("bob", "psst, bob");
    let line = bob.expect_private("ann", "bob", "psst, bob");
    // The sender's conversation screen gets the same line.
    assert_eq!(ann.expect_private("ann", "bob", "psst, bob"), line);
    bob.expect_quiet();
}

#[test]
fn a_private_message_waits_for_an_offline_user_and_reading_it_persists() {
    let mut server = TestServer::start();
    let mut ann = server.register("ann");
    let mut bob = server.register("bob");
    bob.ok(Request::Logout);
    drop(bob);
    ann.send_private("bob", "call me when you are back");
    ann.expect_private("ann", "bob", "call me when you are back");

    let (mut bob, unread) = server.login("bob");
    assert_eq!(unread, 1, "the login says one message waits");
    let inbox = bob.inbox();
    assert_eq!(inbox.len(), 1, "{inbox:?}");
    let c = &inbox[0];
    assert_eq!(
        (
            c.with.as_str(),
            c.last_from.as_str(),
            c.last_text.as_str(),
            c.unread
        ),
        ("ann", "ann", "call me when you are back", 1)
    );

    let history = bob.open_dialogue("ann");
    assert_eq!(history.len(), 1, "{history:?}");
    assert_eq!(
        (&*history[0].from, &*history[0].to, &*history[0].text),
        ("ann", "bob", "call me when you are back")
    );
    assert_eq!(history[0].time, c.last_time);
    assert_eq!(bob.inbox()[0].unread, 0, "opening the dialogue read it");

    drop((ann, bob));
    server.restart();
    let (mut bob, unread) = server.login("bob");
    assert_eq!(unread, 0, "the read state survived the restart");
    let inbox = bob.inbox();
    assert_eq!(inbox.len(), 1, "{inbox:?}");
    assert_eq!((inbox[0].with.as_str(), inbox[0].unread), ("ann", 0));
}

#[test]
fn the_inbox_lists_conversations_newest_first_with_their_counts() {
    let server = TestServer::start();
    let mut bob = server.register("bob");
    bob.ok(Request::Logout);
    for (name, texts) in [("ann", &["a1", "a2"][..]), ("cat", &["c1"][..])] {
        let mut sender = server.register(name);
        for text in texts {
            sender.send_private("bob", text);
        }
    }
    assert_eq!(bob.login(), 3);
    let summary: Vec<(String, String, u32)> = bob
        .inbox()
        .into_iter()
        .map(|c| (c.with, c.last_text, c.unread))
        .collect();
    assert_eq!(
        summary,
        [
            ("cat".into(), "c1".into(), 1),
            ("ann".into(), "a2".into(), 2)
        ]
    );
}

#[test]
fn writing_to_yourself_or_to_no_one_is_refused_clearly() {
    let server = TestServer::start();
    let mut ann = server.register("ann");
    for to in ["ann", "ANN"] {
        let message = ann.refused(
            Request::SendPrivate {
                to: to.into(),
                text: "note to self".into(),
                client_id: 0,
            },
            ErrorCode::NotAllowed,
        );
        assert!(message.contains("you"), "{message}");
    }
    let message = ann.refused(
        Request::SendPrivate {
            to: "ghost".into(),
            text: "anyone?".into(),
            client_id: 0,
        },
        ErrorCode::NoSuchUser,
    );
    assert!(
        message.contains("ghost"),
        "the message names who was not found: {message}"
    );
    ann.refused(
        Request::OpenDialogue {
            with: "ghost".into(),
        },
        ErrorCode::NoSuchUser,
    );
    // Nothing was sent anywhere.
    assert_eq!(ann.inbox(), Vec::new());
    ann.expect_quiet();
}

#[test]
fn two_sessions_of_one_user_both_get_a_message_and_reading_on_one_clears_the_other() {
    use chatapp::wire::msg::Event;
    let server = TestServer::start();
    let mut ann = server.register("ann");
    let (mut laptop, _) = {
        server.register("bob").ok(Request::Logout);
        server.login("bob")
    };
    let (mut phone, _) = server.login("bob");
    ann.send_private("bob", "are you there?");
    ann.send_private("bob", "either device will do");
    for bob in [&mut laptop, &mut phone] {
        bob.expect_private("ann", "bob", "are you there?");
        bob.expect_private("ann", "bob", "either device will do");
    }
    // Both sessions count the same unread messages.
    let unread = |bob: &mut crate::kit::Client| bob.inbox()[0].unread;
    assert_eq!((unread(&mut laptop), unread(&mut phone)), (2, 2));

    // Reading on the phone: the laptop is told at once, and its count is 0.
    phone.ok(Request::MarkRead { with: "ann".into() });
    let left = laptop.wait_for("the read on the phone", |e| match e {
        Event::Read { with, unread } if with == "ann" => Some(*unread),
        _ => None,
    });
    assert_eq!(left, 0);
    assert_eq!(unread(&mut laptop), 0);
    phone.expect_quiet();
    // A third login sees nothing unread either.
    let (_, total) = server.login("bob");
    assert_eq!(total, 0);
}
