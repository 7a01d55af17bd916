//! Private messages: delivery to whoever of the two is online, unread
//! counts and reading them.

use super::*;

#[test]
fn private_messages_reach_online_users_and_wait_for_offline_ones() {
    let mut w = World::new();
    let (ann, bob) = (w.user("ann"), w.user("bob"));
    let send = |to: &str, text: &str| Request::SendPrivate {
        to: to.into(),
        text: text.into(),
        client_id: 0,
    };
    assert_eq!(w.ask(ann, send("BOB", "hi bob")), Some(Reply::Ok));
    let got = w.events(bob);
    assert!(
        matches!(&got[..], [Event::PrivateMessage { line }] if &*line.from == "ann" && &*line.to == "bob")
    );

    w.input(Input::Disconnected {
        conn: bob,
        reason: "bye".into(),
    });
    w.ask(ann, send("bob", "while you were out"));
    // One from while bob was online and still unread, one while offline.
    assert!(matches!(
        w.login("bob", PW),
        Some(Reply::LoggedIn { unread: 2, .. })
    ));
    assert_eq!(w.error(ann, send("ann", "me")), ErrorCode::NotAllowed);
    assert_eq!(w.error(ann, send("nobody", "x")), ErrorCode::NoSuchUser);
    // Longer than any name, or not ASCII: nobody, as with any unknown name.
    let long = format!("bob{}", "b".repeat(model::MAX_USER_NAME));
    assert_eq!(w.error(ann, send(&long, "x")), ErrorCode::NoSuchUser);
    assert_eq!(w.error(ann, send("bØb", "x")), ErrorCode::NoSuchUser);
    let too_long = "x".repeat(MAX_TEXT_BYTES + 1);
    assert_eq!(w.error(ann, send("bob", &too_long)), ErrorCode::TooLong);
}

#[test]
fn a_private_message_is_addressed_to_its_two_users_and_reaches_their_connections() {
    let mut w = World::new();
    let (ann, bob, cat) = (w.user("ann"), w.user("bob"), w.user("cat"));
    // Bob logs in again elsewhere: both of his sessions get the message.
    assert!(matches!(w.login("bob", PW), Some(Reply::LoggedIn { .. })));
    let bob2 = ConnId(w.next_conn - 1);
    let send = Request::SendPrivate {
        to: "bob".into(),
        text: "hi".into(),
        client_id: 0,
    };
    w.audiences.clear();
    assert_eq!(w.ask(ann, send), Some(Reply::Ok));
    assert_eq!(w.audiences, [Audience::Users([UserId(1), UserId(2)])]);
    assert!(w.events(cat).is_empty());
    assert_eq!(w.events(bob).len(), 1);
    assert_eq!(w.events(bob2).len(), 1);
    assert_eq!(w.events(ann).len(), 1, "the sender's copy");
}

#[test]
fn reading_on_one_session_clears_the_count_on_the_others() {
    let mut w = World::new();
    let (ann, bob) = (w.user("ann"), w.user("bob"));
    w.login("bob", PW);
    let bob2 = ConnId(w.next_conn - 1);
    for text in ["one", "two"] {
        let send = Request::SendPrivate {
            to: "bob".into(),
            text: text.into(),
            client_id: 0,
        };
        w.ask(ann, send);
    }
    w.events(bob);
    w.events(bob2);
    w.ask(bob, Request::MarkRead { with: "ANN".into() });
    assert_eq!(
        w.events(bob2),
        [Event::Read {
            with: "ann".into(),
            unread: 0
        }]
    );
    assert!(w.events(bob).is_empty(), "the reader knows");
    // Nothing more to read: nobody is told again.
    w.ask(bob2, Request::MarkRead { with: "ann".into() });
    assert!(w.events(bob).is_empty());
    assert!(matches!(
        w.login("bob", PW),
        Some(Reply::LoggedIn { unread: 0, .. })
    ));
}

#[test]
fn opening_a_dialogue_marks_it_read() {
    let mut w = World::new();
    let (ann, bob) = (w.user("ann"), w.user("bob"));
    w.ask(
        ann,
        Request::SendPrivate {
            to: "bob".into(),
            text: "one".into(),
            client_id: 0,
        },
    );
    let reply = w.ask(bob, Request::OpenDialogue { with: "ann".into() });
    assert!(matches!(reply, Some(Reply::Dialogue { with, .. }) if with == "ann"));
    assert!(matches!(
        w.committed.last(),
        Some(Write::MarkRead { recipient, sender, upto: 1 }) if *recipient == UserId(2) && *sender == UserId(1)
    ));
    assert!(matches!(
        w.login("bob", PW),
        Some(Reply::LoggedIn { unread: 0, .. })
    ));
}

#[test]
fn unread_counts_come_from_the_snapshot() {
    let mut w = World::with(Snapshot {
        users: vec![
            UserRow {
                id: UserId(1),
                name: "ann".into(),
                password_hash: fake_hash(PW),
            },
            UserRow {
                id: UserId(2),
                name: "bob".into(),
                password_hash: fake_hash(PW),
            },
        ],
        unread: vec![(UserId(2), UserId(1), 3)],
        dialogue_seqs: vec![(UserId(1), UserId(2), 3)],
        next_user: UserId(3),
        next_room: RoomId(7),
        next_message: MessageId(50),
        devices: Vec::new(),
    });
    assert!(matches!(
        w.login("bob", PW),
        Some(Reply::LoggedIn { unread: 3, .. })
    ));
    let ann = w.connect();
    w.ask(
        ann,
        Request::Login {
            name: "ann".into(),
            password: PW.into(),
        },
    );
    assert_eq!(w.create_room(ann, "Seven", 2), 7);
    assert_eq!(
        w.error(ann, Request::JoinRoom { room: 6 }),
        ErrorCode::NotAllowed
    );
}
