//! The store's commits: nothing is shown before it is committed, what
//! waits is counted, and what a failed commit undoes.

use super::*;

#[test]
fn room_messages_are_delivered_only_after_they_are_committed() {
    let mut w = World::new();
    let (ann, bob) = (w.user("ann"), w.user("bob"));
    let room = w.create_room(ann, "Lobby", 10);
    assert!(matches!(w.join(bob, room), Reply::Room { members, .. } if members == ["ann", "bob"]));
    assert_eq!(
        w.events(ann),
        vec![Event::Joined {
            room,
            name: "bob".into()
        }]
    );

    w.auto_commit = false;
    assert_eq!(w.say(bob, "hello"), None, "acknowledged before stored");
    assert!(texts(&w.events(ann)).is_empty(), "delivered before stored");
    assert!(matches!(
        &w.uncommitted[..],
        [(_, Write::RoomMessage { text, .. })] if &**text == "hello"
    ));
    w.commit(true);
    assert_eq!(w.reply_to(bob, w.next_id - 1), Some(Reply::Ok));
    assert_eq!(texts(&w.events(ann)), ["bob: hello"]);
    assert_eq!(texts(&w.events(bob)), ["bob: hello"]);
}

#[test]
fn uncommitted_counts_the_messages_waiting_for_the_store() {
    let mut w = World::new();
    let (ann, bob, cat) = (w.user("ann"), w.user("bob"), w.user("cat"));
    let room = w.create_room(ann, "Lobby", 10);
    w.join(bob, room);
    assert_eq!(w.hub.uncommitted(), 0);
    w.auto_commit = false;
    w.say(bob, "hello");
    let one = w.hub.uncommitted();
    let room_one = w.hub.room_uncommitted(bob);
    assert!(
        room_one > "hello".len() && room_one < one,
        "{room_one} {one}"
    );
    assert!(one > "hello".len(), "{one}");
    w.say(bob, &"x".repeat(1000));
    assert_eq!(w.hub.uncommitted(), 2 * one + 1000 - "hello".len());
    w.ask(
        ann,
        Request::SendPrivate {
            to: "bob".into(),
            text: "psst".into(),
            client_id: 0,
        },
    );
    assert!(w.hub.uncommitted() > 2 * one + 1000);
    // The room's share: ann and bob are in it (and see the two lines);
    // the private message is not the room's.
    assert_eq!(
        w.hub.room_uncommitted(bob),
        2 * room_one + 1000 - "hello".len()
    );
    assert_eq!(w.hub.room_uncommitted(ann), w.hub.room_uncommitted(bob));
    assert_eq!(w.hub.room_uncommitted(cat), 0, "cat is in no room");
    w.commit(true);
    assert_eq!(w.hub.uncommitted(), 0, "a commit releases them all");
    assert_eq!(w.hub.room_uncommitted(bob), 0);
    w.say(bob, "lost");
    w.commit(false);
    assert_eq!(w.hub.uncommitted(), 0, "and so does a failed one");
}

#[test]
fn a_failed_commit_is_reported_and_nothing_is_delivered() {
    let mut w = World::new();
    let (ann, bob) = (w.user("ann"), w.user("bob"));
    let room = w.create_room(ann, "Lobby", 10);
    w.join(bob, room);
    w.events(ann);
    w.auto_commit = false;
    w.say(bob, "lost");
    assert!(w.hub.halted().is_none());
    w.commit(false);
    assert!(matches!(
        w.reply_to(bob, w.next_id - 1),
        Some(Reply::Error {
            code: ErrorCode::Unavailable,
            ..
        })
    ));
    assert!(texts(&w.events(ann)).is_empty());
    // Its number is taken: the server must stop rather than store the
    // next message of the room with a gap before it.
    assert!(
        w.hub
            .halted()
            .unwrap()
            .contains("could not store a message")
    );
}

#[test]
fn a_room_that_could_not_be_stored_is_closed() {
    let mut w = World::new();
    let (ann, bob) = (w.user("ann"), w.user("bob"));
    w.auto_commit = false;
    let id = w.next_id;
    let create = Request::CreateRoom {
        name: "Lobby".into(),
        capacity: 5,
    };
    assert_eq!(w.ask(ann, create.clone()), None);
    // Someone joins before the room's row is committed.
    assert!(matches!(w.join(bob, 1), Reply::Room { .. }));
    w.commit(false);
    assert!(matches!(
        w.reply_to(ann, id),
        Some(Reply::Error {
            code: ErrorCode::Unavailable,
            ..
        })
    ));
    assert_eq!(
        w.events(bob),
        vec![Event::RoomClosed {
            room: 1,
            reason: LeaveReason::StoreFailed
        }]
    );
    // Nothing about the failed room is written again, and its name is free.
    assert!(w.uncommitted.is_empty());
    assert!(
        w.hub.halted().is_none(),
        "no message was lost: the server goes on"
    );
    w.auto_commit = true;
    assert!(matches!(w.ask(ann, create), Some(Reply::Room { .. })));
}
