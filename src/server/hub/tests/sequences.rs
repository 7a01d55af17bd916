//! Sequence numbers: every message is numbered in its conversation as it
//! is accepted (rooms and dialogues each count on their own, from where
//! the store left off), and `history` asks the store for a page below a
//! number, of a conversation the session may read.

use super::*;
use crate::store::Page;
use crate::wire::msg::Topic;

fn seqs(events: &[Event]) -> Vec<(String, u64)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::RoomMessage { line, .. } => Some((line.text.to_string(), line.seq)),
            Event::PrivateMessage { line } => Some((line.text.to_string(), line.seq)),
            _ => None,
        })
        .collect()
}

fn send(to: &str, text: &str) -> Request {
    Request::SendPrivate {
        to: to.into(),
        text: text.into(),
        client_id: 0,
    }
}

#[test]
fn each_room_numbers_its_messages_from_one_without_gaps() {
    let mut w = World::new();
    let (ann, bob, cat) = (w.user("ann"), w.user("bob"), w.user("cat"));
    let lobby = w.create_room(ann, "lobby", 10);
    let den = w.create_room(cat, "den", 10);
    w.join(bob, lobby);
    w.say(ann, "a1");
    w.say(cat, "d1");
    w.say(bob, "a2");
    // Refused messages take no number.
    assert_eq!(
        w.error(
            bob,
            Request::Say {
                text: " ".into(),
                client_id: 0
            }
        ),
        ErrorCode::Empty
    );
    w.say(ann, "a3");
    w.say(cat, "d2");
    assert_eq!(
        seqs(&w.events(bob)),
        [("a1".into(), 1), ("a2".into(), 2), ("a3".into(), 3)]
    );
    assert_eq!(seqs(&w.events(cat)), [("d1".into(), 1), ("d2".into(), 2)]);
    // What is stored carries the same numbers.
    let stored: Vec<(RoomId, u64)> = w
        .committed
        .iter()
        .filter_map(|write| match write {
            Write::RoomMessage { room, seq, .. } => Some((*room, *seq)),
            _ => None,
        })
        .collect();
    let (l, d) = (RoomId(lobby as i64), RoomId(den as i64));
    assert_eq!(stored, [(l, 1), (d, 1), (l, 2), (l, 3), (d, 2)]);
}

#[test]
fn each_dialogue_numbers_its_messages_in_both_directions() {
    let mut w = World::new();
    let (ann, bob, cat) = (w.user("ann"), w.user("bob"), w.user("cat"));
    w.ask(ann, send("bob", "ab1"));
    w.ask(bob, send("ann", "ab2"));
    w.ask(cat, send("ann", "ac1"));
    w.ask(ann, send("BOB", "ab3"));
    assert_eq!(
        seqs(&w.events(bob)),
        [("ab1".into(), 1), ("ab2".into(), 2), ("ab3".into(), 3)]
    );
    assert_eq!(seqs(&w.events(cat)), [("ac1".into(), 1)]);
}

#[test]
fn dialogues_go_on_from_the_numbers_the_store_holds() {
    let mut snapshot =
        harness::snapshot(vec![harness::account(1, "ann"), harness::account(2, "bob")]);
    snapshot.dialogue_seqs = vec![(UserId(1), UserId(2), 41)];
    let mut w = World::with(snapshot);
    w.login("ann", PW);
    let ann = ConnId(w.next_conn - 1);
    w.login("bob", PW);
    let bob = ConnId(w.next_conn - 1);
    w.ask(bob, send("ann", "next"));
    assert_eq!(seqs(&w.events(ann)), [("next".into(), 42)]);
}

#[test]
fn reading_marks_up_to_the_last_message_committed() {
    let mut w = World::new();
    let (ann, bob) = (w.user("ann"), w.user("bob"));
    w.ask(ann, send("bob", "one"));
    w.ask(ann, send("bob", "two"));
    // A third is accepted but not yet stored: bob has not seen it.
    w.auto_commit = false;
    w.request(ann, send("bob", "three"));
    w.ask(bob, Request::MarkRead { with: "ann".into() });
    w.commit(true);
    assert!(
        w.committed.iter().any(|write| matches!(
            write,
            Write::MarkRead {
                recipient: UserId(2),
                sender: UserId(1),
                upto: 2
            }
        )),
        "{:?}",
        w.committed
    );
}

#[test]
fn history_asks_the_store_for_a_page_of_a_readable_conversation() {
    let mut w = World::new();
    let (ann, bob, cat) = (w.user("ann"), w.user("bob"), w.user("cat"));
    let lobby = w.create_room(ann, "lobby", 10);
    w.auto_answer = false;
    let history = |of: Topic, before: u64, limit: u32| Request::History { of, before, limit };

    w.request(ann, history(Topic::Room { room: lobby }, 30, 10));
    w.request(ann, history(Topic::Dialogue { with: "BOB".into() }, 0, 0));
    w.request(
        ann,
        history(Topic::Dialogue { with: "cat".into() }, 5, 100_000),
    );
    let queries: Vec<Query> = w
        .jobs
        .drain(..)
        .map(|job| match job {
            harness::Job::Query { query, .. } => query,
            other => panic!("{other:?}"),
        })
        .collect();
    let (l, a) = (RoomId(lobby as i64), UserId(1));
    assert!(
        matches!(
            &queries[..],
            [
                Query::Room { room, page: Page::Before(30), limit: 10 },
                Query::Dialogue { user, other: UserId(2), page: Page::Before(u64::MAX), limit: 1 },
                Query::Dialogue { user: u2, other: UserId(3), page: Page::Before(5), limit: model::HISTORY_PAGE },
            ] if *room == l && *user == a && *u2 == a
        ),
        "{queries:?}"
    );

    // Not the room one is in, nobody, or oneself: refused, nothing asked.
    let other_room = Topic::Room { room: lobby + 1 };
    assert_eq!(
        w.error(bob, history(Topic::Room { room: lobby }, 0, 10)),
        ErrorCode::NotMember
    );
    assert_eq!(
        w.error(ann, history(other_room, 0, 10)),
        ErrorCode::NotMember
    );
    let nobody = Topic::Dialogue {
        with: "nobody".into(),
    };
    assert_eq!(w.error(cat, history(nobody, 0, 10)), ErrorCode::NoSuchUser);
    let me = Topic::Dialogue { with: "cat".into() };
    assert_eq!(w.error(cat, history(me, 0, 10)), ErrorCode::NotAllowed);
    assert!(w.jobs.is_empty());
}

#[test]
fn catch_up_asks_for_what_came_after_the_last_message_seen() {
    let mut w = World::new();
    let (ann, bob) = (w.user("ann"), w.user("bob"));
    let lobby = w.create_room(ann, "lobby", 10);
    w.join(bob, lobby);
    for text in ["one", "two", "three"] {
        w.say(ann, text);
    }
    w.ask(ann, send("bob", "psst"));
    let catch_up = |of: Topic, after: u64| Request::CatchUp {
        of,
        after,
        limit: 50,
    };
    let room = || Topic::Room { room: lobby };
    let bob_dialogue = || Topic::Dialogue { with: "bob".into() };

    // Seen everything: answered at once, nothing read.
    w.auto_answer = false;
    assert_eq!(
        w.ask(ann, catch_up(room(), 3)),
        Some(Reply::RoomCaughtUp {
            room: lobby,
            skipped: 0,
            history: vec![]
        })
    );
    assert_eq!(
        w.ask(ann, catch_up(bob_dialogue(), 1)),
        Some(Reply::DialogueCaughtUp {
            with: "bob".into(),
            skipped: 0,
            history: vec![]
        })
    );
    assert!(w.jobs.is_empty());

    // Behind: the store is asked for what is after.
    w.request(ann, catch_up(room(), 1));
    match w.jobs.pop() {
        Some(harness::Job::Query {
            query: Query::Room { page, limit, .. },
            ..
        }) => assert_eq!((page, limit), (Page::After(1), 50)),
        other => panic!("{other:?}"),
    }

    // Past the end, however far: refused, and says why.
    for absurd in [4, u64::MAX] {
        let reply = w.ask(ann, catch_up(room(), absurd));
        let Some(Reply::Error { code, message }) = reply else {
            panic!("{reply:?}")
        };
        assert_eq!(code, ErrorCode::NotAllowed);
        assert!(message.contains("has 3 messages so far"), "{message}");
    }
    assert_eq!(
        w.error(ann, catch_up(bob_dialogue(), 2)),
        ErrorCode::NotAllowed
    );
    assert!(w.jobs.is_empty());
}

#[test]
fn a_message_the_store_numbered_past_the_last_shown_waits_for_the_gap_to_be_read() {
    // A store shared by several servers numbers messages itself: here
    // other servers stored numbers 1 to 10 of the room and of the
    // dialogue first, and this server has not heard of them.
    let mut w = World::new();
    let (ann, bob) = (w.user("ann"), w.user("bob"));
    let lobby = w.create_room(ann, "lobby", 10);
    w.join(bob, lobby);
    w.auto_commit = false;
    let say = |text: &str| Request::Say {
        text: text.into(),
        client_id: 0,
    };
    w.request(ann, say("r"));
    w.request(ann, send("bob", "p"));
    w.commit_renumbered(|write| write.seq().map(|proposed| proposed + 10));
    assert_eq!(seqs(&w.events(bob)), [], "nothing shown out of order");
    // The missing ones may be on their way over the bus: the store is
    // not asked at once.
    let fill = |job: &harness::Job| matches!(job, harness::Job::Fill(_));
    assert!(!w.jobs.iter().any(fill), "{:?}", w.jobs);
    w.now += crate::server::hub::reorder::WAIT - 1;
    w.timeout();
    assert!(!w.jobs.iter().any(fill), "{:?}", w.jobs);
    // They did not come: the store is asked for what came after the last
    // shown, once per conversation, and what it holds is shown in order,
    // each once.
    w.now += 1;
    w.timeout();
    let gaps: Vec<Gap> = std::mem::take(&mut w.jobs)
        .into_iter()
        .filter_map(|job| match job {
            harness::Job::Fill(gap) => Some(gap),
            _ => None,
        })
        .collect();
    let (room, a, b) = (RoomId(lobby as i64), UserId(1), UserId(2));
    assert_eq!(
        gaps,
        [
            Gap::Room { room, after: 0 },
            Gap::Dialogue { a, b, after: 0 }
        ]
    );
    let room_rows = (1..=11)
        .map(|seq| crate::store::RoomRow {
            id: MessageId(100 + seq as i64),
            seq,
            sender: b,
            sender_name: "bob".into(),
            text: format!("r{seq}"),
            sent: 5,
        })
        .collect();
    let filled = Filled::Room(room_rows);
    w.handle(Input::Filled {
        gap: gaps[0],
        filled,
    });
    let private_rows = (1..=11)
        .map(|seq| crate::store::PrivateRow {
            id: MessageId(200 + seq as i64),
            seq,
            sender: a,
            sender_name: "ann".into(),
            recipient: b,
            text: format!("p{seq}"),
            sent: 5,
        })
        .collect();
    let filled = Filled::Dialogue(private_rows);
    w.handle(Input::Filled {
        gap: gaps[1],
        filled,
    });
    let shown = seqs(&w.events(bob));
    let room_shown: Vec<u64> = shown
        .iter()
        .filter(|(t, _)| t.starts_with('r'))
        .map(|l| l.1)
        .collect();
    let private_shown: Vec<u64> = shown
        .iter()
        .filter(|(t, _)| t.starts_with('p'))
        .map(|l| l.1)
        .collect();
    assert_eq!(room_shown, (1..=11).collect::<Vec<_>>());
    assert_eq!(private_shown, (1..=11).collect::<Vec<_>>());
    // The next proposals follow the store's numbers, and a store that
    // keeps them shows them at once.
    w.request(bob, say("r12"));
    w.request(bob, send("ann", "p12"));
    w.commit(true);
    assert_eq!(
        seqs(&w.events(ann))[22..],
        [("r12".into(), 12), ("p12".into(), 12)]
    );
}
