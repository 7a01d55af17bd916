//! The client's flow as scripts: feed what the person and the network
//! did, check what the core asks for. Effects are compared in a short
//! text form (`show: …`, `ask line: …`, `call: Inbox`) so that a script
//! reads like the screen.

use super::*;
use crate::client::session::tests::lobby;
use crate::wire::msg::{LeaveReason, RoomLine};

const T: i64 = 1_700_000_000_000;
const PASSWORD: &str = "violet tractor anthem 1987";
/// A resume token as the server gives one.
const TOKEN: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn now() -> i64 {
    T
}

fn utc(_: i64) -> i32 {
    0
}

/// One effect as a line of text.
fn describe(e: &Effect) -> String {
    match e {
        Effect::Show(lines) => format!("show: {}", session::text_of(lines).trim_end()),
        Effect::ClearScreen => "clear".to_string(),
        Effect::Ask(Ask::Pick { prompt, items }) => {
            let labels: Vec<&str> = items.iter().map(|i| i.label.as_str()).collect();
            format!("ask pick: {prompt} {labels:?}")
        }
        Effect::Ask(Ask::Text { prompt, initial }) => format!("ask text: {prompt} [{initial}]"),
        Effect::Ask(Ask::Secret { prompt }) => format!("ask secret: {prompt}"),
        Effect::Ask(Ask::Confirm { prompt, .. }) => format!("ask confirm: {prompt}"),
        Effect::Ask(Ask::Menu { kind, items, .. }) => {
            let labels: Vec<&str> = items.iter().map(|i| i.label.as_str()).collect();
            format!("ask menu {kind:?}: {labels:?}")
        }
        Effect::Ask(Ask::Line { label, chat }) => {
            format!("ask {}: {label}", if *chat { "chat" } else { "line" })
        }
        Effect::Status(Some(line)) => format!("status: {}", line.text()),
        Effect::Status(None) => "status: none".to_string(),
        Effect::Open => "open".to_string(),
        Effect::Call(req) => format!("call: {req:?}"),
        Effect::Send(req) => format!("send: {req:?}"),
        Effect::Close => "close".to_string(),
        Effect::SaveToken { token, .. } => format!("save token: {token}"),
        Effect::Dial => "dial".to_string(),
        Effect::Timer(ms) => format!("timer: {ms} ms"),
        Effect::Banner(Some(line)) => format!("banner: {}", line.text()),
        Effect::Banner(None) => "banner: none".to_string(),
        Effect::ForgetToken => "forget token".to_string(),
        Effect::Quit => "quit".to_string(),
    }
}

struct Script {
    core: Core,
}

impl Script {
    fn new() -> Script {
        let mut core = Core::new("127.0.0.1:7878", now, utc);
        core.start();
        let mut s = Script { core };
        s.drain();
        s
    }

    fn drain(&mut self) -> Vec<String> {
        std::iter::from_fn(|| self.core.poll_effect())
            .map(|e| describe(&e))
            .collect()
    }

    fn user(&mut self, input: UserInput) -> Vec<String> {
        self.core.handle(Input::User(input));
        self.drain()
    }

    fn net(&mut self, input: NetInput) -> Vec<String> {
        self.core.handle(Input::Net(input));
        self.drain()
    }

    fn text(&mut self, text: &str) -> Vec<String> {
        self.user(UserInput::Text(text.to_string()))
    }

    fn choose(&mut self, choice: Choice) -> Vec<String> {
        self.user(UserInput::Chose(choice))
    }

    fn reply(&mut self, reply: Reply) -> Vec<String> {
        self.net(NetInput::Reply(reply))
    }

    fn event(&mut self, event: Event) -> Vec<String> {
        self.net(NetInput::Event(event))
    }

    fn core_input(&mut self, input: Input) -> Vec<String> {
        self.core.handle(input);
        self.drain()
    }

    /// Logged in as `name` with nothing unread, at the main menu.
    fn logged_in(name: &str) -> Script {
        let mut s = Script::new();
        s.choose(Choice::Start(StartChoice::LogIn));
        s.text(name);
        s.text(PASSWORD);
        s.net(NetInput::Opened);
        s.reply(Reply::LoggedIn {
            name: name.to_string(),
            unread: 0,
            token: TOKEN.into(),
            node: None,
        });
        s.reply(inbox(vec![]));
        s
    }

    /// At the main menu, in room #3 "Lobby" run by alice, with `members`.
    fn in_room(me: &str, members: &[&str]) -> Script {
        let mut s = Script::logged_in(me);
        s.choose(Choice::Main(MainChoice::JoinRoom));
        s.text("#3");
        s.reply(Reply::Room {
            room: lobby(),
            members: members.iter().map(|m| m.to_string()).collect(),
            history: vec![],
        });
        s
    }
}

fn inbox(conversations: Vec<Conversation>) -> Reply {
    Reply::Inbox { conversations }
}

fn error(code: ErrorCode, message: &str) -> Reply {
    Reply::Error {
        code,
        message: message.to_string(),
    }
}

fn has(effects: &[String], wanted: &str) -> bool {
    effects.iter().any(|e| e.contains(wanted))
}

#[test]
fn the_start_menu_offers_its_choices_as_an_enum() {
    let mut core = Core::new("127.0.0.1:7878", now, utc);
    core.start();
    let effects: Vec<Effect> = std::iter::from_fn(|| core.poll_effect()).collect();
    let Some(Effect::Ask(Ask::Pick { items, .. })) = effects.last() else {
        panic!("{effects:?}");
    };
    let choices: Vec<&Choice> = items.iter().map(|i| &i.choice).collect();
    assert_eq!(
        choices,
        [
            &Choice::Start(StartChoice::LogIn),
            &Choice::Start(StartChoice::CreateAccount),
            &Choice::Start(StartChoice::Quit),
        ]
    );
    let mut s = Script { core };
    assert_eq!(
        s.choose(Choice::Start(StartChoice::Quit)),
        ["show: Bye.", "quit"]
    );
}

#[test]
fn a_login_opens_a_connection_only_when_the_password_is_typed() {
    let mut s = Script::new();
    assert_eq!(
        s.choose(Choice::Start(StartChoice::LogIn)),
        [
            "show: Log in\nLeave the name empty to go back.",
            "ask text: User name []"
        ]
    );
    assert_eq!(s.text("bob"), ["ask secret: Password"]);
    assert_eq!(s.text(PASSWORD), ["show: Checking…", "open"]);
    assert_eq!(
        s.net(NetInput::Opened),
        [format!(
            "call: Login {{ name: \"bob\", password: \"{PASSWORD}\" }}"
        )]
    );
    // A refusal closes the connection and asks again, the name kept.
    assert_eq!(
        s.reply(error(
            ErrorCode::BadCredentials,
            "wrong user name or password"
        )),
        [
            "show: Wrong user name or password.",
            "close",
            "ask text: User name [bob]"
        ]
    );
    s.text("bob");
    s.text(PASSWORD);
    s.net(NetInput::Opened);
    assert_eq!(
        s.reply(Reply::LoggedIn {
            name: "bob".into(),
            unread: 2,
            token: TOKEN.into(),
            node: None,
        }),
        [
            format!("save token: {TOKEN}"),
            "show: Welcome back, bob.".to_string(),
            "call: Inbox".to_string()
        ]
    );
    let menu = s.reply(inbox(vec![]));
    assert_eq!(
        menu,
        [
            "ask menu Main: [\"Create a chat room\", \"Join a chat room\", \"Compose a private message\", \"View private chats\", \"Log out / quit\"]"
        ]
    );
}

#[test]
fn the_name_rule_says_either_case_and_unique_in_any_case() {
    let mut s = Script::new();
    let shown = s.choose(Choice::Start(StartChoice::CreateAccount));
    assert!(
        has(
            &shown,
            "letters (a-z, A-Z), digits, '_', '-' or '.', unique without regard to case."
        ),
        "{shown:?}"
    );
    assert!(!has(&shown, "letters a-z,"), "{shown:?}");
    // What the rule says is what the check does: capitals are accepted.
    assert_eq!(s.text("ALICE"), ["open"]);
}

#[test]
fn a_taken_name_is_said_before_any_password_is_asked() {
    let mut s = Script::new();
    s.choose(Choice::Start(StartChoice::CreateAccount));
    assert_eq!(s.text("Alice"), ["open"]);
    assert_eq!(
        s.net(NetInput::Opened),
        ["call: Register { name: \"Alice\", password: \"\" }"]
    );
    assert_eq!(
        s.reply(error(ErrorCode::NameTaken, "that name is taken")),
        [
            "close",
            "show: That name is taken: choose another name.",
            "ask text: User name []"
        ]
    );
    // A free name: the server refuses the empty password, so the name is
    // free, and only now are the passwords asked.
    s.text("frank");
    s.net(NetInput::Opened);
    assert_eq!(
        s.reply(error(ErrorCode::WeakPassword, "that password is too short")),
        ["close", "ask secret: Password"]
    );
    assert_eq!(
        s.text("frank and friends"),
        [
            "show: That password contains your user name: choose another.",
            "ask secret: Password"
        ]
    );
    assert_eq!(s.text(PASSWORD), ["ask secret: Password again"]);
    assert_eq!(s.text(PASSWORD), ["show: Creating the account…", "open"]);
    assert_eq!(
        s.net(NetInput::Opened),
        [format!(
            "call: Register {{ name: \"frank\", password: \"{PASSWORD}\" }}"
        )]
    );
    // Taken meanwhile by someone else: a new name, and new passwords for it.
    assert_eq!(
        s.reply(error(ErrorCode::NameTaken, "that name is taken")),
        [
            "close",
            "show: That name is taken: choose another name.",
            "ask text: User name []"
        ]
    );
    s.text("frank2");
    s.net(NetInput::Opened);
    assert_eq!(
        s.reply(error(ErrorCode::WeakPassword, "that password is too short")),
        ["close", "ask secret: Password"]
    );
}

#[test]
fn a_session_ended_for_good_leads_to_a_reconnect_offer_without_the_token() {
    let mut s = Script::in_room("bob", &["alice", "bob"]);
    let replaced = "this device resumed its session on a new connection";
    assert_eq!(
        s.event(Event::Bye {
            reason: replaced.into(),
            resume: false,
        }),
        [
            "close".to_string(),
            format!("show: The server ended the session: {replaced}."),
            "ask confirm: Reconnect to 127.0.0.1:7878?".to_string()
        ]
    );
    assert!(s.core.session().is_none());
    assert_eq!(s.user(UserInput::Confirmed(true)), ["open"]);
    assert_eq!(
        s.net(NetInput::OpenFailed("could not reach it".into())),
        [
            "show: Could not reach it.",
            "ask confirm: Reconnect to 127.0.0.1:7878?"
        ]
    );
    s.user(UserInput::Confirmed(true));
    // The token went to the new connection: presenting it again would
    // revoke the device, so the start menu asks for the password.
    let again = s.net(NetInput::Opened);
    assert_eq!(again[..2], ["close", "show: 127.0.0.1:7878 answers again."]);
    assert!(!has(&again, "Resume"), "{again:?}");
    assert!(
        has(&again, "ask pick: What would you like to do?"),
        "{again:?}"
    );
    assert_eq!(
        s.user(UserInput::Chose(Choice::Start(StartChoice::Quit))),
        ["show: Bye.", "quit"]
    );
}

/// The effects of a lost connection under a session that resumes, up to
/// the first attempt's timer, with the waits the script's seed gives.
fn drop_connection(s: &mut Script, why: Lost) -> Vec<String> {
    s.net(NetInput::Lost(why))
}

/// Alice's room message numbered `seq`, as an event.
fn said(seq: u64, from: &str, text: &str) -> Event {
    Event::RoomMessage {
        room: 3,
        line: room_line(seq, from, text),
    }
}

#[test]
fn a_dropped_connection_is_reconnected_by_itself_on_the_same_screen() {
    let mut s = Script::in_room("bob", &["alice", "bob"]);
    s.event(said(7, "alice", "seven"));
    assert_eq!(
        s.text("sent"),
        ["send: Say { text: \"sent\", client_id: 1 }"]
    );
    // The line went out; its "ok" never came.
    let lost = drop_connection(&mut s, Lost::Closed("connection reset".into()));
    assert_eq!(lost[0], "close");
    assert_eq!(
        lost[1],
        "show: Connection lost: connection reset. Reconnecting by itself; what you type is kept."
    );
    assert!(lost[2].starts_with("timer: "), "{lost:?}");
    assert!(
        lost[3].starts_with("banner: Connection lost, reconnecting in 0.")
            && lost[3].ends_with(" s, attempt 1; Ctrl-C to quit"),
        "{lost:?}"
    );
    assert_eq!(
        lost.len(),
        4,
        "the room screen and its typed line stay: {lost:?}"
    );
    // Typed while away: shown as pending, kept for later.
    assert_eq!(
        s.text("while away"),
        ["show: [22:13] bob: while away (pending: sent when the connection is back)"]
    );
    assert_eq!(s.text("/l"), [format!("show: {OFFLINE}")]);
    assert!(has(&s.text("/help"), "/q          leave the room"));
    // The timer: an attempt, in the background.
    assert_eq!(
        s.core_input(Input::Timer),
        [
            "banner: Connection lost, reconnecting now, attempt 1; Ctrl-C to quit",
            "dial"
        ]
    );
    let failed = s.net(NetInput::OpenFailed("connection refused".into()));
    assert!(failed[0].starts_with("timer: "), "{failed:?}");
    assert!(has(&failed, "attempt 2; Ctrl-C to quit"), "{failed:?}");
    assert_eq!(s.core_input(Input::Timer)[1], "dial");
    // Connected: the token, not the password.
    assert_eq!(
        s.net(NetInput::Opened),
        [format!("call: Resume {{ token: {TOKEN:?} }}")]
    );
    let next = "ee".repeat(32);
    assert_eq!(
        s.reply(Reply::LoggedIn {
            name: "bob".into(),
            unread: 0,
            token: next.clone(),
            node: None,
        }),
        [
            format!("save token: {next}"),
            "banner: none".to_string(),
            "show: Connected again.".to_string(),
            "call: JoinRoom { room: 3 }".to_string()
        ]
    );
    // Back in the room, then what it missed after the last one shown.
    assert_eq!(
        s.reply(Reply::Room {
            room: lobby(),
            members: vec!["alice".into(), "bob".into(), "carol".into()],
            history: vec![room_line(7, "alice", "seven")],
        }),
        [
            "status: Lobby (#3) · Members (3/10) · /l lists them · /help",
            "call: CatchUp { of: Room { room: 3 }, after: 7, limit: 200 }"
        ]
    );
    let caught_up = s.reply(Reply::RoomCaughtUp {
        room: 3,
        skipped: 0,
        history: vec![room_line(8, "alice", "eight"), room_line(9, "bob", "sent")],
    });
    assert_eq!(
        caught_up,
        [
            "show: --- 2 new messages while you were away ---\n\
             [22:13] alice: eight\n\
             [22:13] bob: sent\n\
             --- now ---",
            "status: Lobby (#3) · Members (3/10) · /l lists them · /help",
            // Both again, with their ids: the first is stored already and
            // is not stored twice; the second is new.
            "send: Say { text: \"sent\", client_id: 1 }",
            "send: Say { text: \"while away\", client_id: 2 }"
        ]
    );
    // Live again: what was shown is not shown twice.
    assert!(
        s.event(said(9, "bob", "sent"))
            .iter()
            .all(|e| !e.starts_with("show"))
    );
    assert_eq!(
        s.event(said(10, "bob", "while away"))[0],
        "show: [22:13] bob: while away"
    );
    s.net(NetInput::Answer {
        client_id: 1,
        reply: Reply::Ok,
    });
    s.net(NetInput::Answer {
        client_id: 2,
        reply: Reply::Ok,
    });
    assert!(s.core.outbox.is_empty());
}

#[test]
fn a_private_chat_catches_up_and_marks_what_it_shows_read() {
    let mut s = Script::logged_in("bob");
    s.choose(Choice::Main(MainChoice::Compose));
    s.text("alice");
    s.reply(Reply::Dialogue {
        with: "alice".into(),
        history: vec![pm_line(4, "alice", "bob", "four")],
    });
    s.event(Event::Bye {
        reason: "the server is restarting".into(),
        resume: true,
    });
    s.core_input(Input::Timer);
    s.net(NetInput::Opened);
    let back = s.reply(Reply::LoggedIn {
        name: "bob".into(),
        unread: 1,
        token: TOKEN.into(),
        node: None,
    });
    assert_eq!(
        back.last().unwrap(),
        "call: CatchUp { of: Dialogue { with: \"alice\" }, after: 4, limit: 200 }"
    );
    let caught_up = s.reply(Reply::DialogueCaughtUp {
        with: "alice".into(),
        skipped: 3,
        history: vec![pm_line(8, "alice", "bob", "eight")],
    });
    assert_eq!(
        caught_up,
        [
            "show: --- 1 new message while you were away ---\n\
             (3 more messages before these are not shown: the conversation's history has them)\n\
             [22:13] alice: eight\n\
             --- now ---",
            "send: MarkRead { with: \"alice\" }"
        ]
    );
}

#[test]
fn nothing_missed_is_said_and_a_closed_room_sends_back_to_the_menu() {
    let mut s = Script::in_room("bob", &["alice", "bob"]);
    drop_connection(&mut s, Lost::Timeout);
    s.text("for nobody");
    s.core_input(Input::Timer);
    s.net(NetInput::Opened);
    s.reply(Reply::LoggedIn {
        name: "bob".into(),
        unread: 0,
        token: TOKEN.into(),
        node: None,
    });
    let closed = s.reply(error(ErrorCode::NoSuchRoom, "room #3 is closed"));
    assert_eq!(
        closed,
        [
            "show: You are no longer in the room: room #3 is closed.",
            "show: Not sent (you are no longer in that room): \"for nobody\".",
            "call: Inbox"
        ]
    );
    // Another time, in a room where nothing happened meanwhile.
    let mut s = Script::in_room("bob", &["alice", "bob"]);
    drop_connection(&mut s, Lost::Timeout);
    s.core_input(Input::Timer);
    s.net(NetInput::Opened);
    s.reply(Reply::LoggedIn {
        name: "bob".into(),
        unread: 0,
        token: TOKEN.into(),
        node: None,
    });
    s.reply(Reply::Room {
        room: lobby(),
        members: vec!["alice".into(), "bob".into()],
        history: vec![],
    });
    let nothing = s.reply(Reply::RoomCaughtUp {
        room: 3,
        skipped: 0,
        history: vec![],
    });
    assert_eq!(nothing[0], "show: No new messages while you were away.");
}

#[test]
fn a_refused_token_while_reconnecting_leads_to_the_start_menu() {
    let mut s = Script::in_room("bob", &["alice", "bob"]);
    drop_connection(&mut s, Lost::Closed("reset".into()));
    s.text("lost line");
    s.core_input(Input::Timer);
    s.net(NetInput::Opened);
    let message = "your saved login is no longer valid: log in with your password";
    let refused = s.reply(error(ErrorCode::BadCredentials, message));
    assert_eq!(refused[0], "banner: none");
    assert_eq!(refused[1], "forget token");
    assert!(has(
        &refused,
        "Not sent (the saved login was refused): \"lost line\""
    ));
    assert!(
        has(&refused, "ask pick: What would you like to do?"),
        "{refused:?}"
    );
}

#[test]
fn what_needs_the_server_waits_at_the_menu_too() {
    let mut s = Script::logged_in("bob");
    let lost = drop_connection(&mut s, Lost::Closed("reset".into()));
    assert!(has(&lost, "ask menu Main"), "the menu stays: {lost:?}");
    assert_eq!(
        s.choose(Choice::Main(MainChoice::Inbox)),
        [format!("show: {OFFLINE}")]
    );
    // The timer of a finished reconnect changes nothing.
    s.core_input(Input::Timer);
    s.net(NetInput::Opened);
    // It came back through another server of several, which says so.
    let back = s.reply(Reply::LoggedIn {
        name: "bob".into(),
        unread: 2,
        token: TOKEN.into(),
        node: Some(3),
    });
    assert!(
        has(&back, "show: Connected again. (server node 3)"),
        "{back:?}"
    );
    assert_eq!(back.last().unwrap(), "call: Inbox");
    assert!(s.core_input(Input::Timer).is_empty());
}

#[test]
fn reconnect_waits_double_from_half_a_second_to_thirty_with_jitter() {
    for random in [0, 1, 12_345, u64::MAX] {
        let waits: Vec<u64> = (1..=10).map(|n| backoff(n, random)).collect();
        for (n, wait) in (1..=10).zip(&waits) {
            let base = (500u64 << (n - 1)).min(30_000);
            assert!(*wait >= base * 3 / 4, "attempt {n}: {wait} ms");
            assert!(
                *wait <= (base * 5 / 4).min(30_000),
                "attempt {n}: {wait} ms"
            );
        }
        assert!(waits[9] >= 22_500);
    }
    assert_ne!(backoff(3, 0), backoff(3, 777), "spread by the random part");
}

#[test]
fn client_ids_rise_and_the_saved_login_always_names_a_higher_one() {
    let mut core = Core::new("127.0.0.1:7878", now, utc).with_token(Some(TOKEN.into()), 5000);
    core.start();
    let mut s = Script { core };
    s.drain();
    s.net(NetInput::Opened);
    let saved = |s: &mut Script, reply: Reply| -> Vec<u64> {
        s.core.handle(Input::Net(NetInput::Reply(reply)));
        std::iter::from_fn(|| s.core.poll_effect())
            .filter_map(|e| match e {
                Effect::SaveToken { next_id, .. } => Some(next_id),
                _ => None,
            })
            .collect()
    };
    let logged_in = Reply::LoggedIn {
        name: "bob".into(),
        unread: 0,
        token: TOKEN.into(),
        node: None,
    };
    assert_eq!(saved(&mut s, logged_in), [6000]);
    s.reply(inbox(vec![]));
    s.choose(Choice::Main(MainChoice::Compose));
    s.text("alice");
    s.reply(Reply::Dialogue {
        with: "alice".into(),
        history: vec![],
    });
    let mut floors = Vec::new();
    for n in 0..1001 {
        s.core
            .handle(Input::User(UserInput::Text(format!("line {n}"))));
        while let Some(e) = s.core.poll_effect() {
            match e {
                Effect::SaveToken { next_id, .. } => floors.push(next_id),
                Effect::Send(Request::SendPrivate { client_id, .. }) => {
                    assert_eq!(client_id, 5000 + n);
                    assert!(client_id < *floors.last().unwrap_or(&6000));
                }
                _ => {}
            }
        }
    }
    assert_eq!(floors, [7001], "one more write per thousand messages");
}

#[test]
fn the_member_count_follows_joins_leaves_and_kicks() {
    let mut s = Script::logged_in("alice");
    s.choose(Choice::Main(MainChoice::JoinRoom));
    s.text("3");
    let entered = s.reply(Reply::Room {
        room: lobby(),
        members: vec!["alice".into(), "bob".into()],
        history: vec![],
    });
    assert_eq!(entered[0], "clear");
    assert!(has(&entered, "Members (2/10): alice (Admin), bob"));
    assert_eq!(
        entered.last().unwrap(),
        "status: Lobby (#3) · Members (2/10) · /l lists them · /help"
    );
    let joined = s.event(Event::Joined {
        room: 3,
        name: "carol".into(),
    });
    assert_eq!(
        joined,
        [
            "show: * carol joined the room",
            "status: Lobby (#3) · Members (3/10) · /l lists them · /help"
        ]
    );
    let left = s.event(Event::Left {
        room: 3,
        name: "bob".into(),
        reason: LeaveReason::Left,
    });
    assert_eq!(
        left.last().unwrap(),
        "status: Lobby (#3) · Members (2/10) · /l lists them · /help"
    );
    let kicked = s.event(Event::Left {
        room: 3,
        name: "carol".into(),
        reason: LeaveReason::Kicked,
    });
    assert_eq!(
        kicked,
        [
            "show: * carol was kicked out by alice",
            "status: Lobby (#3) · Members (1/10) · /l lists them · /help"
        ]
    );
    // Another room's news changes nothing here.
    let elsewhere = s.event(Event::Joined {
        room: 4,
        name: "dave".into(),
    });
    assert_eq!(
        elsewhere,
        ["status: Lobby (#3) · Members (1/10) · /l lists them · /help"]
    );
}

#[test]
fn room_commands_become_requests_and_q_returns_to_the_menu() {
    let mut s = Script::in_room("bob", &["alice", "bob"]);
    assert_eq!(
        s.text("hello"),
        ["send: Say { text: \"hello\", client_id: 1 }"]
    );
    assert_eq!(s.text("/l"), ["call: Members"]);
    let listed = s.reply(Reply::Members {
        members: vec!["alice".into(), "bob".into(), "carol".into()],
    });
    assert_eq!(listed[0], "show: Members (3/10): alice (Admin), bob, carol");
    assert_eq!(s.text("/kick alice"), ["call: Kick { name: \"alice\" }"]);
    assert_eq!(
        s.reply(error(ErrorCode::NotAdmin, "only the room's admin can kick")),
        ["show: Only the room's admin can kick."]
    );
    assert_eq!(
        s.user(UserInput::Cancel),
        ["show: Type /q to leave the room, /help for the commands."]
    );
    assert_eq!(s.text("/q"), ["call: LeaveRoom"]);
    assert_eq!(
        s.reply(Reply::Ok),
        ["show: You left Lobby (#3).", "call: Inbox"]
    );
}

#[test]
fn a_kick_ends_the_room_screen_at_once() {
    let mut s = Script::in_room("bob", &["alice", "bob"]);
    assert_eq!(
        s.event(Event::Kicked {
            room: 3,
            by: "alice".into()
        }),
        ["show: alice kicked you out of Lobby (#3).", "call: Inbox"]
    );
    assert!(s.reply(inbox(vec![]))[0].starts_with("ask menu Main"));
}

fn conversation(with: &str) -> Conversation {
    Conversation {
        with: with.into(),
        last_from: with.into(),
        last_text: "hi".into(),
        last_time: T,
        unread: 1,
    }
}

#[test]
fn q_in_a_chat_goes_where_the_screen_says() {
    // Opened from the inbox: /q goes back to the list, and says so.
    let mut s = Script::logged_in("bob");
    assert_eq!(
        s.user(UserInput::InboxShortcut),
        ["show: Main menu › View private chats", "call: Inbox"]
    );
    let list = s.reply(inbox(vec![conversation("alice")]));
    assert!(list[0].starts_with("ask menu Inbox"), "{list:?}");
    assert_eq!(
        s.choose(Choice::Open("alice".into())),
        ["call: OpenDialogue { with: \"alice\" }"]
    );
    let opened = s.reply(Reply::Dialogue {
        with: "alice".into(),
        history: vec![],
    });
    assert!(
        has(&opened, "/q back to your private chats · /help"),
        "{opened:?}"
    );
    let help = s.text("/help");
    assert!(
        has(&help, "/q          back to your private chats"),
        "{help:?}"
    );
    assert_eq!(
        s.text("/q"),
        ["show: Left the private chat with alice.", "call: Inbox"]
    );
    assert!(s.reply(inbox(vec![conversation("alice")]))[0].starts_with("ask menu Inbox"));

    // Opened with "Compose": /q goes back to the main menu, and says so.
    let mut s = Script::logged_in("bob");
    s.choose(Choice::Main(MainChoice::Compose));
    assert_eq!(s.text("alice"), ["call: OpenDialogue { with: \"alice\" }"]);
    let opened = s.reply(Reply::Dialogue {
        with: "alice".into(),
        history: vec![],
    });
    assert!(has(&opened, "/q back to the menu · /help"), "{opened:?}");
    s.text("/q");
    assert!(s.reply(inbox(vec![]))[0].starts_with("ask menu Main"));
}

#[test]
fn a_message_in_the_open_chat_is_marked_read_and_others_update_the_menu() {
    let mut s = Script::logged_in("bob");
    let pm = |from: &str, to: &str| Event::PrivateMessage {
        line: PrivateLine {
            id: 1,
            seq: 1,
            from: from.into(),
            to: to.into(),
            text: "hi".into(),
            time: T,
        },
    };
    // At the main menu a new message is shown and the count redrawn.
    let at_menu = s.event(pm("alice", "bob"));
    assert!(at_menu[0].starts_with("show: * New private message from alice"));
    assert!(
        at_menu[1].contains("View private chats (1 unread)"),
        "{at_menu:?}"
    );
    s.choose(Choice::Main(MainChoice::Compose));
    s.text("alice");
    s.reply(Reply::Dialogue {
        with: "alice".into(),
        history: vec![],
    });
    let in_chat = s.event(pm("alice", "bob"));
    assert_eq!(
        in_chat,
        [
            "show: [22:13] alice: hi",
            "send: MarkRead { with: \"alice\" }"
        ]
    );
    assert_eq!(
        s.net(NetInput::Answer {
            client_id: 0,
            reply: error(ErrorCode::TooLong, "that message is too long")
        }),
        ["show: That message is too long."]
    );
}

#[test]
fn creating_a_room_asks_the_name_then_the_capacity() {
    let mut s = Script::logged_in("alice");
    let asked = s.choose(Choice::Main(MainChoice::CreateRoom));
    assert_eq!(asked.last().unwrap(), "ask line: Room name: ");
    assert_eq!(
        s.text("Lobby"),
        ["ask line: Most participants, 2 to 1000 [10]: "]
    );
    assert_eq!(
        s.text("1"),
        [
            "show: A room holds 2 to 1000 people: type a number in that range.",
            "ask line: Most participants, 2 to 1000 [10]: "
        ]
    );
    assert_eq!(
        s.text(""),
        ["call: CreateRoom { name: \"Lobby\", capacity: 10 }"]
    );
    assert_eq!(
        s.reply(error(
            ErrorCode::RoomNameTaken,
            "an open room has that name"
        )),
        ["show: An open room has that name.", "ask line: Room name: "]
    );
    // Esc goes back to the menu.
    assert_eq!(s.user(UserInput::Cancel), ["call: Inbox"]);
}

#[test]
fn without_a_saved_login_a_reconnect_leads_to_the_start_menu() {
    let mut s = Script::new();
    s.choose(Choice::Start(StartChoice::LogIn));
    s.text("bob");
    assert_eq!(s.text(PASSWORD), ["show: Checking…", "open"]);
    s.net(NetInput::OpenFailed("could not reach it".into()));
    assert_eq!(s.user(UserInput::Confirmed(true)), ["open"]);
    let back = s.net(NetInput::Opened);
    assert_eq!(back[0], "close");
    assert_eq!(back[1], "show: 127.0.0.1:7878 answers again.");
    assert!(back[2].starts_with("ask pick: What would you like to do?"));
}

/// A core started with a saved token, its first effects drained.
fn with_saved_login() -> (Script, Vec<String>) {
    let mut core = Core::new("127.0.0.1:7878", now, utc).with_token(Some(TOKEN.into()), 1);
    core.start();
    let mut s = Script { core };
    let first = s.drain();
    (s, first)
}

#[test]
fn a_saved_login_is_sent_before_the_start_menu_and_replaced() {
    let (mut s, first) = with_saved_login();
    assert_eq!(
        first,
        [
            "show: Connected to 127.0.0.1:7878.",
            "show: Logging in with your saved login…",
            "open"
        ]
    );
    assert_eq!(
        s.net(NetInput::Opened),
        [format!("call: Resume {{ token: {TOKEN:?} }}")]
    );
    let next = "ee".repeat(32);
    assert_eq!(
        s.reply(Reply::LoggedIn {
            name: "ann".into(),
            unread: 0,
            token: next.clone(),
            node: None,
        }),
        [
            format!("save token: {next}"),
            "show: Welcome back, ann.".to_string(),
            "call: Inbox".to_string()
        ]
    );
    assert!(has(&s.reply(inbox(vec![])), "ask menu Main"));
}

#[test]
fn a_refused_saved_login_is_forgotten_and_the_start_menu_shown() {
    let (mut s, _) = with_saved_login();
    s.net(NetInput::Opened);
    let message = "your saved login is no longer valid: log in with your password";
    let effects = s.reply(error(ErrorCode::BadCredentials, message));
    assert_eq!(effects[0], "forget token");
    assert_eq!(effects[1], format!("show: {}", error_line(message).text()));
    assert_eq!(effects[2], "close");
    assert!(effects[3].starts_with("ask pick: What would you like to do?"));
    assert_eq!(effects.len(), 4, "{effects:?}");
}

#[test]
fn logging_out_forgets_the_saved_login() {
    let mut s = Script::logged_in("bob");
    let effects = s.choose(Choice::Main(MainChoice::LogOut));
    assert_eq!(
        effects,
        [
            "show: Main menu › Log out / quit",
            "forget token",
            "call: Logout"
        ]
    );
    s.reply(Reply::Ok);
    // Logged out, nothing to forget any more.
    s.choose(Choice::Start(StartChoice::LogIn));
    s.text("bob");
    s.text(PASSWORD);
    let again = s.net(NetInput::Opened);
    assert!(!has(&again, "forget token"), "{again:?}");
}

fn room_line(seq: u64, from: &str, text: &str) -> RoomLine {
    RoomLine {
        id: 100 + seq,
        seq,
        from: from.into(),
        text: text.into(),
        time: T,
    }
}

#[test]
fn more_pages_back_through_a_room_by_sequence_number() {
    let mut s = Script::in_room("bob", &["alice", "bob"]);
    // Joined with nothing shown yet: the first page is the newest.
    assert_eq!(
        s.text("/more"),
        ["call: History { of: Room { room: 3 }, before: 0, limit: 20 }"]
    );
    let page = s.reply(Reply::RoomHistory {
        room: 3,
        history: vec![
            room_line(41, "alice", "forty-one"),
            room_line(42, "bob", "forty-two"),
        ],
    });
    assert_eq!(
        page,
        ["show: --- earlier: 2 messages ---\n\
          [22:13] alice: forty-one\n\
          [22:13] bob: forty-two\n\
          --- end of the earlier messages: /more shows more ---"]
    );
    // Back on the room screen: the next page is before the oldest shown.
    assert_eq!(s.text("hi"), ["send: Say { text: \"hi\", client_id: 1 }"]);
    assert_eq!(
        s.text("/m"),
        ["call: History { of: Room { room: 3 }, before: 41, limit: 20 }"]
    );
    let page = s.reply(Reply::RoomHistory {
        room: 3,
        history: vec![room_line(1, "alice", "first")],
    });
    assert!(has(&page, "that is the beginning ---"), "{page:?}");
    // Nothing is asked once the beginning is shown.
    assert_eq!(
        s.text("/more"),
        ["show: No earlier messages: that is the beginning."]
    );
}

#[test]
fn more_in_a_chat_asks_for_the_dialogue_before_its_history() {
    let mut s = Script::logged_in("bob");
    s.choose(Choice::Main(MainChoice::Compose));
    s.text("alice");
    let pm = |seq: u64| PrivateLine {
        id: seq,
        seq,
        from: "alice".into(),
        to: "bob".into(),
        text: format!("pm {seq}").into(),
        time: T,
    };
    s.reply(Reply::Dialogue {
        with: "alice".into(),
        history: vec![pm(7), pm(8)],
    });
    let help = s.text("/help");
    assert!(
        has(&help, "/more       show earlier messages (or Page Up)"),
        "{help:?}"
    );
    let with = "with: \"alice\"";
    // Page Up asks what /more asks.
    assert_eq!(
        s.user(UserInput::PageUp),
        [format!(
            "call: History {{ of: Dialogue {{ {with} }}, before: 7, limit: 20 }}"
        )]
    );
    let page = s.reply(Reply::Dialogue {
        with: "alice".into(),
        history: vec![],
    });
    assert_eq!(page, ["show: No earlier messages: that is the beginning."]);
    // Still in the chat: a line goes to alice.
    assert_eq!(
        s.text("hello"),
        ["send: SendPrivate { to: \"alice\", text: \"hello\", client_id: 1 }"]
    );
}

fn pm_line(seq: u64, from: &str, to: &str, text: &str) -> PrivateLine {
    PrivateLine {
        id: 100 + seq,
        seq,
        from: from.into(),
        to: to.into(),
        text: text.into(),
        time: T,
    }
}
