//! What replies and events show, as text. Times are 2023-11-14 22:13 UTC
//! and the offset is fixed, so every expected screen is exact.

use super::*;
use crate::wire::msg::{Conversation, Event, LeaveReason, PrivateLine, RoomInfo, RoomLine};

const T: i64 = 1_700_000_000_000; // 2023-11-14 22:13:20 UTC

fn utc(_: i64) -> i32 {
    0
}

fn plus_two_hours(_: i64) -> i32 {
    7200
}

/// The room the client tests sit in (the core's tests use it too).
pub(in crate::client) fn lobby() -> RoomInfo {
    RoomInfo {
        id: 3,
        name: "Lobby".into(),
        admin: "alice".into(),
        capacity: 10,
    }
}

fn room_line(from: &str, text: &str, time: i64) -> RoomLine {
    RoomLine {
        id: 1,
        seq: 1,
        from: from.into(),
        text: text.into(),
        time,
    }
}

fn pm(from: &str, to: &str, text: &str) -> PrivateLine {
    PrivateLine {
        id: 1,
        seq: 1,
        from: from.into(),
        to: to.into(),
        text: text.into(),
        time: T,
    }
}

/// Bob, in the Lobby with alice (its admin).
fn bob_in_lobby() -> Session {
    let mut s = Session::new("bob", 0, utc);
    s.enter_room(lobby(), vec!["alice".into(), "bob".into()], &[]);
    s
}

fn check(shown: Shown, expect: &str) {
    assert_eq!(text_of(&shown.lines), expect);
}

#[test]
fn the_room_screen_opens_with_welcome_admin_members_commands_and_history() {
    let mut s = Session::new("bob", 0, utc);
    let lines = s.enter_room(
        lobby(),
        vec!["alice".into(), "bob".into()],
        &[
            room_line("alice", "hi all", T),
            room_line("bob", "hello", T + 60_000),
        ],
    );
    assert_eq!(
        text_of(&lines),
        "Welcome to Lobby (#3)\n\
         Admin: alice\n\
         Members (2/10): alice (Admin), bob\n\
         Commands: /q leave · /l members · /kick NAME (admin only) · /help\n\
         --- the last 2 messages ---\n\
         [22:13] alice: hi all\n\
         [22:14] bob: hello\n\
         --- now ---\n"
    );
}

#[test]
fn an_empty_room_says_so() {
    let mut s = Session::new("alice", 0, utc);
    let lines = s.enter_room(lobby(), vec!["alice".into()], &[]);
    assert!(
        text_of(&lines).ends_with("No messages yet: say hello.\n"),
        "{}",
        text_of(&lines)
    );
}

#[test]
fn messages_show_local_time_and_sender() {
    let mut s = Session::new("bob", 0, plus_two_hours);
    s.enter_room(lobby(), vec!["alice".into(), "bob".into()], &[]);
    check(
        s.on_event(Event::RoomMessage {
            room: 3,
            line: room_line("alice", "see you", T),
        }),
        "[00:13] alice: see you\n",
    );
}

#[test]
fn a_message_of_several_lines_continues_indented() {
    let s = bob_in_lobby();
    assert_eq!(
        text_of(&s.message(T, "alice", "one\ntwo")),
        format!("[22:13] alice: one\n{}two\n", " ".repeat(15))
    );
}

#[test]
fn control_characters_cannot_steer_the_terminal() {
    let s = bob_in_lobby();
    let text = text_of(&s.message(T, "alice", "\u{1b}[2Jgotcha"));
    assert_eq!(text, "[22:13] alice: \u{FFFD}[2Jgotcha\n");
}

#[test]
fn messages_for_another_room_are_not_shown() {
    let mut s = bob_in_lobby();
    check(
        s.on_event(Event::RoomMessage {
            room: 4,
            line: room_line("x", "y", T),
        }),
        "",
    );
}

#[test]
fn joins_and_leaves_are_announced_and_tracked() {
    let mut s = bob_in_lobby();
    check(
        s.on_event(Event::Joined {
            room: 3,
            name: "carol".into(),
        }),
        "* carol joined the room\n",
    );
    assert_eq!(
        s.members_line().text(),
        "Members (3/10): alice (Admin), bob, carol"
    );
    check(
        s.on_event(Event::Left {
            room: 3,
            name: "carol".into(),
            reason: LeaveReason::Disconnected,
        }),
        "* carol disconnected\n",
    );
    s.on_event(Event::Joined {
        room: 3,
        name: "dave".into(),
    });
    check(
        s.on_event(Event::Left {
            room: 3,
            name: "dave".into(),
            reason: LeaveReason::Kicked,
        }),
        "* dave was kicked out by alice\n",
    );
    s.on_event(Event::Joined {
        room: 3,
        name: "erin".into(),
    });
    check(
        s.on_event(Event::Left {
            room: 3,
            name: "erin".into(),
            reason: LeaveReason::Left,
        }),
        "* erin left the room\n",
    );
    assert_eq!(
        s.members_line().text(),
        "Members (2/10): alice (Admin), bob"
    );
}

#[test]
fn a_kicked_member_goes_back_to_the_menu_told_by_whom() {
    let mut s = bob_in_lobby();
    let shown = s.on_event(Event::Kicked {
        room: 3,
        by: "alice".into(),
    });
    assert_eq!(shown.next, Next::ToMenu);
    check(shown, "alice kicked you out of Lobby (#3).\n");
    assert_eq!(s.place(), &Place::Menu);
}

#[test]
fn a_closed_room_sends_everyone_back_saying_why() {
    for (reason, why) in [
        (LeaveReason::AdminLeft, "its admin alice left"),
        (
            LeaveReason::AdminDisconnected,
            "its admin alice lost their connection",
        ),
        (LeaveReason::Shutdown, "the server is shutting down"),
    ] {
        let mut s = bob_in_lobby();
        let shown = s.on_event(Event::RoomClosed { room: 3, reason });
        assert_eq!(shown.next, Next::ToMenu);
        check(shown, &format!("Lobby (#3) was closed: {why}.\n"));
    }
}

#[test]
fn leaving_says_whether_it_closed_the_room() {
    let mut bob = bob_in_lobby();
    assert_eq!(bob.left_room().text(), "You left Lobby (#3).");
    let mut alice = Session::new("alice", 0, utc);
    alice.enter_room(lobby(), vec!["alice".into()], &[]);
    assert_eq!(
        alice.left_room().text(),
        "You left Lobby (#3); as its admin, leaving closed it."
    );
}

#[test]
fn a_private_message_elsewhere_is_a_one_line_notice_and_counts_unread() {
    let mut s = bob_in_lobby();
    let shown = s.on_event(Event::PrivateMessage {
        line: pm("carol", "bob", "are you coming tonight?"),
    });
    assert_eq!(shown.mark_read, None);
    check(
        shown,
        "* New private message from carol: \"are you coming tonight?\" (-in at the main menu reads it)\n",
    );
    assert_eq!(s.unread(), 1);
    assert_eq!(s.menu_items()[3], "View private chats (1 unread)");
}

#[test]
fn in_the_conversation_a_private_message_is_shown_and_marked_read() {
    let mut s = Session::new("bob", 0, utc);
    s.enter_chat("carol", &[]);
    let shown = s.on_event(Event::PrivateMessage {
        line: pm("carol", "bob", "hi"),
    });
    assert_eq!(shown.mark_read, Some("carol".into()));
    check(shown, "[22:13] carol: hi\n");
    let mine = s.on_event(Event::PrivateMessage {
        line: PrivateLine {
            seq: 2,
            ..pm("bob", "carol", "hey")
        },
    });
    // The same message again (live after a catch-up) is not shown twice.
    let again = s.on_event(Event::PrivateMessage {
        line: pm("carol", "bob", "hi"),
    });
    assert!(again.lines.is_empty());
    assert_eq!(mine.mark_read, None);
    check(mine, "[22:13] bob: hey\n");
    assert_eq!(s.unread(), 0);
}

#[test]
fn the_conversation_screen_shows_its_history() {
    let mut s = Session::new("bob", 0, utc);
    let lines = s.enter_chat(
        "carol",
        &[pm("carol", "bob", "hi"), pm("bob", "carol", "yo")],
    );
    assert_eq!(
        text_of(&lines),
        "Private chat with carol\n\
         --- the last 2 messages ---\n\
         [22:13] carol: hi\n\
         [22:13] bob: yo\n\
         --- now ---\n\
         Type and press Enter to send to carol · /q back to the menu · /help\n"
    );
}

#[test]
fn the_inbox_lists_who_when_what_and_unread() {
    let s = Session::new("bob", 3, utc);
    let convs = vec![
        Conversation {
            with: "carol".into(),
            last_from: "carol".into(),
            last_text: "see you\nthen".into(),
            last_time: T,
            unread: 2,
        },
        Conversation {
            with: "al".into(),
            last_from: "bob".into(),
            last_text: "ok".into(),
            last_time: T - 2 * 86_400_000,
            unread: 0,
        },
    ];
    assert_eq!(
        s.inbox_items(&convs, T + 60_000),
        vec![
            "carol  22:13  carol: see you then  (2 unread)".to_string(),
            "al     2023-11-12 22:13  you: ok".to_string(),
        ]
    );
}

#[test]
fn the_main_menu_shows_name_and_unread() {
    let s = Session::new("bob", 2, utc);
    assert_eq!(
        s.menu_header().text(),
        "Main menu · logged in as bob · 2 unread private messages"
    );
    assert_eq!(
        s.menu_items(),
        vec![
            "Create a chat room",
            "Join a chat room",
            "Compose a private message",
            "View private chats (2 unread)",
            "Log out / quit",
        ]
    );
    assert_eq!(
        Session::new("bob", 0, utc).menu_header().text(),
        "Main menu · logged in as bob · no unread private messages"
    );
}

#[test]
fn bye_ends_the_session_with_the_reason_and_whether_to_resume() {
    let mut s = bob_in_lobby();
    for resume in [false, true] {
        let shown = s.on_event(Event::Bye {
            reason: "you logged in from another place".into(),
            resume,
        });
        assert_eq!(
            shown.next,
            Next::Disconnected {
                reason: "you logged in from another place".into(),
                resume
            }
        );
        // The core says it, with what follows.
        assert!(shown.lines.is_empty());
    }
}

#[test]
fn room_commands_are_parsed_and_unknown_ones_are_not_sent() {
    assert_eq!(
        parse_room_input("hello /q"),
        Command::Say("hello /q".into())
    );
    assert_eq!(parse_room_input("  hi  "), Command::Say("  hi".into()));
    assert_eq!(parse_room_input("/q"), Command::Quit);
    assert_eq!(parse_room_input("/L"), Command::List);
    assert_eq!(parse_room_input("/kick bob"), Command::Kick("bob".into()));
    assert_eq!(parse_room_input("/help"), Command::Help);
    assert_eq!(parse_room_input("   "), Command::Nothing);
    assert_eq!(parse_room_input("//shrug"), Command::Say("/shrug".into()));
    let Command::Refused(line) = parse_room_input("/dance now") else {
        panic!("an unknown command must be refused");
    };
    assert_eq!(
        line.text(),
        "Unknown command /dance: /help lists the commands. Nothing was sent (to send a line starting with /, type //)."
    );
    let Command::Refused(line) = parse_room_input("/kick") else {
        panic!("/kick without a name must be refused");
    };
    assert_eq!(
        line.text(),
        "Who? Type /kick and a member's name, as in /kick bob."
    );
}

#[test]
fn room_commands_in_a_private_chat_get_a_hint() {
    assert_eq!(parse_chat_input("/q"), Command::Quit);
    let Command::Refused(line) = parse_chat_input("/l") else {
        panic!("/l is for rooms");
    };
    assert_eq!(
        line.text(),
        "/l works in chat rooms; here /q goes back and /help lists the commands. Nothing was sent."
    );
}

#[test]
fn menu_choices_by_number_or_shortcut() {
    assert_eq!(parse_menu_choice("2", 5, true), MenuPick::Item(1));
    assert_eq!(parse_menu_choice(" 5. ", 5, true), MenuPick::Item(4));
    assert_eq!(parse_menu_choice("-in", 5, true), MenuPick::Inbox);
    assert_eq!(parse_menu_choice("", 5, true), MenuPick::Highlighted);
    assert_eq!(
        parse_menu_choice("9", 5, true),
        MenuPick::Invalid(
            "\"9\" is not a choice: type a number from 1 to 5, or -in for the inbox, or use the arrow keys and Enter.".into()
        )
    );
    assert!(matches!(
        parse_menu_choice("-in", 3, false),
        MenuPick::Invalid(_)
    ));
}

#[test]
fn room_numbers_and_capacities() {
    assert_eq!(parse_room_id("#12"), Ok(12));
    assert_eq!(parse_room_id(" 7 "), Ok(7));
    assert!(
        parse_room_id("lobby")
            .unwrap_err()
            .contains("like #12 or 12")
    );
    assert!(parse_room_id("#0").is_err());
    assert_eq!(parse_capacity("", 10), Ok(10));
    assert_eq!(parse_capacity("2", 10), Ok(2));
    assert_eq!(
        parse_capacity("1", 10),
        Err("A room holds 2 to 1000 people: type a number in that range.".into())
    );
}

#[test]
fn server_errors_read_as_sentences() {
    assert_eq!(
        error_line("there is no room #9: check the number").text(),
        "There is no room #9: check the number."
    );
    assert_eq!(sentence("done!"), "Done!");
}

#[test]
fn times_and_dates() {
    assert_eq!(clock(T, 0), "22:13");
    assert_eq!(clock(T, 3600 + 1800), "23:43");
    assert_eq!(clock(T, -23 * 3600), "23:13");
    assert_eq!(when(T, T, 0, 0), "22:13");
    assert_eq!(when(0, T, 0, 0), "1970-01-01 00:00");
    assert_eq!(when(T, T + 86_400_000, 0, 0), "2023-11-14 22:13");
    assert_eq!(civil_from_days(19_782), (2024, 2, 29));
}

#[test]
fn long_lines_wrap_at_spaces_under_the_first_word() {
    let s = bob_in_lobby();
    let lines = s.message(T, "alice", "the quick brown fox jumps over the lazy dog");
    let wrapped = wrap(&lines[0], 30);
    assert_eq!(
        text_of(&wrapped),
        "[22:13] alice: the quick brown\n\
         \x20              fox jumps over\n\
         \x20              the lazy dog\n"
    );
    // Colours survive the cut: the name keeps its tone.
    assert_eq!(wrapped[0].spans[1].tone, Tone::Name);
}

#[test]
fn a_word_longer_than_a_row_is_cut() {
    let line = Line::plain("see https://example.org/a/very/long/path ok");
    assert_eq!(
        text_of(&wrap(&line, 12)),
        "see\nhttps://exam\nple.org/a/ve\nry/long/path\nok\n"
    );
    assert_eq!(wrap(&Line::plain("short"), 12), vec![Line::plain("short")]);
}
