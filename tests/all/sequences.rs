//! Sequence numbers over the real protocol and the real store: every
//! message carries its number in its room or dialogue, the numbers go on
//! after a restart, and `history` pages back by number, gap-free, from the
//! database.

use crate::kit::{Client, TestServer};
use chatapp::wire::msg::{ErrorCode, Event, PrivateLine, Reply, Request, RoomLine, Topic};

fn history(of: Topic, before: u64, limit: u32) -> Request {
    Request::History { of, before, limit }
}

fn room_page(client: &mut Client, room: u64, before: u64, limit: u32) -> Vec<RoomLine> {
    match client.request(history(Topic::Room { room }, before, limit)) {
        Reply::RoomHistory { room: r, history } if r == room => history,
        other => panic!("{}: history of room #{room}: {other:?}", client.name),
    }
}

fn dialogue_page(client: &mut Client, with: &str, before: u64, limit: u32) -> Vec<PrivateLine> {
    let of = Topic::Dialogue { with: with.into() };
    match client.request(history(of, before, limit)) {
        Reply::Dialogue { history, .. } => history,
        other => panic!("{}: history with {with}: {other:?}", client.name),
    }
}

fn numbers<T>(lines: &[T], seq: impl Fn(&T) -> u64) -> Vec<u64> {
    lines.iter().map(seq).collect()
}

#[test]
fn room_messages_are_numbered_and_paged_back_by_number() {
    let server = TestServer::start_with(|config| {
        config.limits.messages_per_second = 10_000;
        config.limits.message_burst = 10_000;
    });
    let (room, mut members) = server.room_with("ann", &["bob"], 10);
    let [ann, bob] = &mut members[..] else {
        unreachable!()
    };
    for i in 1..=25 {
        let (speaker, other) = if i % 2 == 0 {
            (&mut *ann, &mut *bob)
        } else {
            (&mut *bob, &mut *ann)
        };
        let text = format!("line {i}");
        speaker.say(&text);
        let line = other.expect_said(room, &speaker.name.clone(), &text);
        assert_eq!(line.seq, i, "{text}");
        assert_eq!(
            speaker.expect_said(room, &speaker.name.clone(), &text),
            line
        );
    }

    // The newest first, then back page by page: 25..16, 15..6, 5..1.
    let page = room_page(ann, room, 0, 10);
    assert_eq!(numbers(&page, |l| l.seq), (16..=25).collect::<Vec<_>>());
    assert_eq!(&*page[9].text, "line 25");
    let page = room_page(ann, room, 16, 10);
    assert_eq!(numbers(&page, |l| l.seq), (6..=15).collect::<Vec<_>>());
    let page = room_page(bob, room, 6, 10);
    assert_eq!(numbers(&page, |l| l.seq), (1..=5).collect::<Vec<_>>());
    assert_eq!((&*page[0].from, &*page[0].text), ("bob", "line 1"));
    assert!(room_page(bob, room, 1, 10).is_empty());
    // Past the end is just the newest; an absurd page size is capped.
    assert_eq!(room_page(bob, room, u64::MAX, 3).len(), 3);
    assert_eq!(room_page(bob, room, 0, u32::MAX).len(), 25);

    // Only the room one is in.
    let mut cat = server.register("cat");
    let of = Topic::Room { room };
    cat.refused(history(of, 0, 10), ErrorCode::NotMember);
}

#[test]
fn dialogues_are_numbered_both_ways_and_go_on_after_a_restart() {
    let mut server = TestServer::start();
    let mut ann = server.register("ann");
    let mut bob = server.register("bob");
    let mut cat = server.register("cat");
    // Each line reaches both ends (the sender's copy first here).
    ann.send_private("bob", "ab 1");
    assert_eq!(ann.expect_private("ann", "bob", "ab 1").seq, 1);
    assert_eq!(bob.expect_private("ann", "bob", "ab 1").seq, 1);
    bob.send_private("ann", "ab 2");
    assert_eq!(bob.expect_private("bob", "ann", "ab 2").seq, 2);
    assert_eq!(ann.expect_private("bob", "ann", "ab 2").seq, 2);
    cat.send_private("ann", "ac 1");
    assert_eq!(ann.expect_private("cat", "ann", "ac 1").seq, 1);
    drop((ann, bob, cat));

    server.restart();
    let (mut ann, _) = server.login("ann");
    let (mut bob, _) = server.login("bob");
    ann.send_private("bob", "ab 3");
    assert_eq!(bob.expect_private("ann", "bob", "ab 3").seq, 3);
    ann.expect_private("ann", "bob", "ab 3");
    let page = dialogue_page(&mut bob, "ann", 0, 10);
    assert_eq!(numbers(&page, |l| l.seq), [1, 2, 3]);
    assert_eq!(
        page.iter().map(|l| &*l.text).collect::<Vec<_>>(),
        ["ab 1", "ab 2", "ab 3"]
    );
    assert_eq!(
        numbers(&dialogue_page(&mut ann, "bob", 3, 1), |l| l.seq),
        [2]
    );
    let of = Topic::Dialogue {
        with: "nobody".into(),
    };
    ann.refused(history(of, 0, 10), ErrorCode::NoSuchUser);
}

#[test]
fn catch_up_sends_what_was_missed_in_order_and_says_what_it_left_out() {
    let server = TestServer::start_with(|config| {
        config.limits.messages_per_second = 10_000;
        config.limits.message_burst = 10_000;
    });
    let (room, mut members) = server.room_with("ann", &["bob"], 10);
    let mut bob = members.pop().unwrap();
    let mut ann = members.pop().unwrap();
    for i in 1..=5 {
        ann.say(&format!("before {i}"));
        bob.expect_said(room, "ann", &format!("before {i}"));
    }
    ann.send_private("bob", "pm 1");
    bob.expect_private("ann", "bob", "pm 1");
    // Bob drops with 5 and pm 1 seen; 30 lines and 3 messages come.
    drop(bob);
    ann.wait_for("bob's leaving", |e| {
        matches!(e, Event::Left { .. }).then_some(())
    });
    for i in 6..=35 {
        ann.say(&format!("while away {i}"));
    }
    for i in 2..=4 {
        ann.send_private("bob", &format!("pm {i}"));
    }

    let (mut bob, unread) = server.login("bob");
    assert_eq!(unread, 4, "pm 1 was shown, never marked read");
    bob.join(room);
    let catch_up = |of: Topic, after: u64, limit: u32| Request::CatchUp { of, after, limit };
    match bob.request(catch_up(Topic::Room { room }, 5, 20)) {
        Reply::RoomCaughtUp {
            room: r,
            skipped,
            history,
        } => {
            assert_eq!((r, skipped), (room, 10), "16..35 sent, 6..15 left out");
            assert_eq!(numbers(&history, |l| l.seq), (16..=35).collect::<Vec<_>>());
            assert_eq!(&*history[0].text, "while away 16");
        }
        other => panic!("{other:?}"),
    }
    let dialogue = Topic::Dialogue { with: "ANN".into() };
    match bob.request(catch_up(dialogue.clone(), 1, 20)) {
        Reply::DialogueCaughtUp {
            with,
            skipped,
            history,
        } => {
            assert_eq!((with.as_str(), skipped), ("ann", 0));
            assert_eq!(
                history.iter().map(|l| &*l.text).collect::<Vec<_>>(),
                ["pm 2", "pm 3", "pm 4"]
            );
        }
        other => panic!("{other:?}"),
    }
    // Up to date: nothing, at once. Past the end: refused, only this
    // request; the session goes on.
    assert_eq!(
        bob.request(catch_up(dialogue.clone(), 4, 20)),
        Reply::DialogueCaughtUp {
            with: "ann".into(),
            skipped: 0,
            history: vec![]
        }
    );
    let why = bob.refused(catch_up(dialogue, u64::MAX, 20), ErrorCode::NotAllowed);
    assert!(why.contains("has 4 messages so far"), "{why}");
    bob.say("back");
    let back = ann.wait_for("bob's line", |e| match e {
        Event::RoomMessage { line, .. } if &*line.from == "bob" => Some(line.seq),
        _ => None,
    });
    assert_eq!(back, 36);
}
