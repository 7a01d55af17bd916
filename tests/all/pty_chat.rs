//! The real `chatapp` binary in pseudo-terminals against a real server,
//! driven as people type: accounts, rooms, kicks, a closing room, private
//! messages and the inbox, a message arriving mid-typing, a dropped
//! server, Ctrl-C; and the defects found by using it that way (a taken
//! name found only after the passwords, the name rule's wording, `/q` in
//! a chat opened from the inbox, a member count that did not follow).

use crate::kit::pty::*;

#[test]
fn two_users_chat_in_a_room_list_it_and_the_admin_kicks() {
    let server = Server::start();
    let (mut alice, _a) = newcomer("alice", &server);
    let (mut bob, _b) = newcomer("bob", &server);

    let id = create_room(&mut alice, "Lobby");
    assert!(alice.transcript().contains("Admin: alice"));
    let top = join_room(&mut bob, "Lobby", &id);
    assert!(
        top.contains("Admin: alice\nMembers (2/10): alice (Admin), bob\n"),
        "{top}"
    );
    alice.expect("* bob joined the room");

    bob.line("hello alice");
    expect_message(&mut alice, "bob", "hello alice");
    expect_message(&mut bob, "bob", "hello alice");
    alice.line("hi bob, welcome");
    expect_message(&mut bob, "alice", "hi bob, welcome");

    alice.line("/l");
    alice.expect("Members (2/10): alice (Admin), bob");
    bob.line("/l");
    bob.expect("Members (2/10): alice (Admin), bob");

    // Only the admin kicks; a command nobody knows is not sent.
    bob.line("/kick alice");
    bob.expect("Only the room's admin can kick.");
    bob.line("/dance");
    bob.expect("Unknown command /dance: /help lists the commands. Nothing was sent");

    alice.line("/kick bob");
    bob.expect(&format!("alice kicked you out of Lobby (#{id})."));
    main_menu(&mut bob, "bob");
    alice.expect("* bob was kicked out by alice");
    assert!(
        !alice.transcript().contains("/dance"),
        "an unknown command reached the room"
    );

    // The kicked member is at the menu and can use it.
    bob.line("2");
    bob.expect("Room number");
    bob.line("#999");
    bob.expect("There is no room #999: check the number.");
    main_menu(&mut bob, "bob");
}

#[test]
fn a_list_of_addresses_reaches_the_first_server_that_answers() {
    let server = Server::start();
    let home = Home::new();
    // A deployment's servers, the first of them down.
    let down = format!("127.0.0.1:{}", crate::kit::free_port());
    let list = format!("{down},{}", server.addr());
    let mut ann = Client::spawn("ann", &home, &["connect", &list]);
    trust(&mut ann);
    register(&mut ann, "ann");
    create_room(&mut ann, "Lobby");
}

#[test]
fn the_admin_leaving_closes_the_room_and_returns_everyone_to_the_menu() {
    let server = Server::start();
    let (mut alice, _a) = newcomer("alice", &server);
    let (mut bob, _b) = newcomer("bob", &server);
    let (mut carol, _c) = newcomer("carol", &server);

    let id = create_room(&mut alice, "Kitchen");
    join_room(&mut bob, "Kitchen", &id);
    join_room(&mut carol, "Kitchen", &id);
    bob.expect("* carol joined the room");
    alice.expect("* carol joined the room");
    carol.line("/l");
    carol.expect("Members (3/10): alice (Admin), bob, carol");

    carol.line("/q");
    carol.expect(&format!("You left Kitchen (#{id})."));
    main_menu(&mut carol, "carol");
    alice.expect("* carol left the room");
    join_room(&mut carol, "Kitchen", &id);

    alice.line("/q");
    alice.expect(&format!(
        "You left Kitchen (#{id}); as its admin, leaving closed it."
    ));
    main_menu(&mut alice, "alice");
    for member in [&mut bob, &mut carol] {
        member.expect(&format!(
            "Kitchen (#{id}) was closed: its admin alice left."
        ));
        main_menu(member, &member.name.clone());
    }

    // A closed room cannot be joined; the user stays at the menu.
    bob.line("2");
    bob.expect("Room number");
    bob.line(&id);
    bob.expect(&format!("Room #{id} is closed"));
    main_menu(&mut bob, "bob");
}

#[test]
fn a_private_message_waits_for_an_offline_user_in_the_inbox() {
    let server = Server::start();
    account(&server, "bob");
    let (mut alice, _a) = newcomer("alice", &server);

    alice.line("3");
    alice.expect("Write to");
    alice.line("nobody");
    alice.expect("There is no user named \"nobody\"");
    alice.expect("Write to");
    alice.line("alice");
    alice.expect("That is you");
    alice.expect("Write to");
    alice.line("bob");
    alice.expect("Private chat with bob");
    alice.expect("No messages yet: write the first one.");
    alice.line("are you there, bob?");
    expect_message(&mut alice, "alice", "are you there, bob?");
    alice.line("/q");
    main_menu(&mut alice, "alice");

    // Bob logs in later and finds it.
    let home = Home::new();
    let mut bob = Client::connect("bob", &home, &server);
    trust(&mut bob);
    log_in(&mut bob, "bob");
    bob.expect("Main menu · logged in as bob · 1 unread private message");
    bob.expect("View private chats (1 unread)");
    bob.expect("-in opens your private chats");
    bob.line("-in");
    bob.expect("Private chats, newest first");
    bob.expect("alice");
    bob.expect("alice: are you there, bob?  (1 unread)");
    bob.expect("Esc goes back");
    bob.line("1");
    bob.expect("Private chat with alice");
    expect_message(&mut bob, "alice", "are you there, bob?");

    // Opening it read it; a reply reaches alice wherever she is.
    bob.line("yes, here now");
    expect_message(&mut bob, "bob", "yes, here now");
    alice.expect("* New private message from bob: \"yes, here now\"");
    bob.line("/q");
    bob.expect("Private chats, newest first");
    bob.expect("you: yes, here now");
    bob.send("\x1b");
    bob.expect("Main menu · logged in as bob · no unread private messages");
}

#[test]
fn a_private_message_reaches_a_user_in_a_room_as_a_one_line_notice() {
    let server = Server::start();
    let (mut alice, _a) = newcomer("alice", &server);
    account(&server, "dave");
    create_room(&mut alice, "Den");

    let mut dave = chatapp::client::proto::connect(&server.addr())
        .expect("connect")
        .accept();
    let reply = dave
        .request_within(
            chatapp::wire::msg::Request::Login {
                name: "dave".into(),
                password: PASSWORD.into(),
            },
            WAIT,
        )
        .expect("log in");
    assert!(matches!(reply, chatapp::wire::msg::Reply::LoggedIn { .. }));
    dave.request_within(
        chatapp::wire::msg::Request::SendPrivate {
            to: "alice".into(),
            text: "lunch?".into(),
            client_id: 0,
        },
        WAIT,
    )
    .expect("send");
    alice.expect("* New private message from dave: \"lunch?\" (-in at the main menu reads it)");
    // Still in the room, still typing.
    alice.line("back in a minute");
    expect_message(&mut alice, "alice", "back in a minute");
    alice.line("/q");
    alice.expect("Main menu · logged in as alice · 1 unread private message");
}

#[test]
fn a_message_arriving_mid_typing_leaves_the_typed_text_intact() {
    let server = Server::start();
    let (mut alice, _a) = newcomer("alice", &server);
    let (mut bob, _b) = newcomer("bob", &server);
    let id = create_room(&mut alice, "Lobby");
    join_room(&mut bob, "Lobby", &id);
    alice.expect("* bob joined the room");

    // Bob is half-way through a sentence when alice speaks.
    bob.send("half a sente");
    bob.expect("> half a sente");
    alice.line("sorry to interrupt");
    expect_message(&mut bob, "alice", "sorry to interrupt");
    bob.expect("> half a sente"); // drawn again after the message

    let (rows, (row, col)) = bob
        .wait_screen("the input line under the cursor", |rows, (row, _)| {
            rows[usize::from(row)].trim_end() == "> half a sente"
        });
    let row = usize::from(row);
    assert_eq!(usize::from(col), "> half a sente".len(), "cursor column");
    assert!(
        rows[row - 1].ends_with("alice: sorry to interrupt"),
        "the message goes above the input line:\n{}",
        bob.screen()
    );

    // The line goes on where it was and is sent whole.
    bob.line("nce");
    expect_message(&mut alice, "bob", "half a sentence");
}

#[test]
fn a_server_restart_is_ridden_out_in_the_room_with_the_typed_line_kept() {
    let mut server = Server::start_with_grace(60);
    // alice runs the room, through the protocol, so the test can make her
    // talk at the moment it needs.
    let mut alice = crate::kit::client_at(server.handle(), "127.0.0.1", "alice");
    alice.register();
    let room = alice.create_room("Lobby", 10);
    let (mut bob, _b) = newcomer("bob", &server);
    join_room(&mut bob, "Lobby", &room.to_string());
    bob.line("before");
    assert_eq!(bob_said(&mut alice), "before");
    expect_message(&mut bob, "bob", "before");

    server.stop();
    bob.expect("Connection lost: the server is restarting");
    bob.expect("what you type is kept.");
    bob.expect("Connection lost, reconnecting in ");
    bob.expect(", attempt 1; Ctrl-C to quit");
    // Said while the server is away: kept, shown as waiting.
    bob.line("queued while down");
    bob.expect("bob: queued while down (pending: sent when the connection is back)");
    bob.send("half a sen");
    // The fourth attempt waits 1.5 s or more: room for alice to talk first.
    bob.expect(", attempt 4; Ctrl-C to quit");
    let restarted_at = bob.transcript().len();

    server.restart();
    let mut alice = crate::kit::client_at(server.handle(), "127.0.0.1", "alice");
    alice.login();
    alice.join(room);
    for text in ["missed one", "missed two", "missed three"] {
        alice.say(text);
    }

    bob.expect("Connected again.");
    bob.expect("--- 3 new messages while you were away ---");
    for text in ["missed one", "missed two", "missed three"] {
        expect_message(&mut bob, "alice", text);
    }
    bob.expect("--- now ---");
    // The waiting line is sent once the session is back, exactly once.
    assert_eq!(bob_said(&mut alice), "queued while down");
    // Still in the room, the half-typed line where it was.
    bob.wait_screen("the typed line, kept", |rows, (row, _)| {
        rows.get(usize::from(row))
            .is_some_and(|r| r.starts_with("> half a sen"))
    });
    assert!(
        status_row(&bob).starts_with("Lobby (#"),
        "{}",
        status_row(&bob)
    );
    bob.line("tence");
    assert_eq!(bob_said(&mut alice), "half a sentence");
    alice.expect_quiet();

    let after = &bob.transcript()[restarted_at..];
    for text in ["missed one", "missed two", "missed three"] {
        let seen = after.matches(&format!("alice: {text}")).count();
        assert_eq!(seen, 1, "{text:?} shown {seen} times:\n{after}");
    }
    assert!(!after.contains("Password"), "no password asked:\n{after}");
}

/// The next room message from bob that alice gets (joins and her own
/// lines are passed over), so that a repeat would be the next one.
fn bob_said(alice: &mut crate::kit::Client) -> String {
    use chatapp::wire::msg::Event;
    alice.wait_for("a line from bob", |e| match e {
        Event::RoomMessage { line, .. } if &*line.from == "bob" => Some(line.text.to_string()),
        _ => None,
    })
}

/// The saved-logins file's line for the server, if any.
fn saved_login(home: &Home, server: &Server) -> Option<String> {
    let text = std::fs::read_to_string(home.path().join("saved_logins")).unwrap_or_default();
    text.lines()
        .find(|l| l.starts_with(&format!("{} ", server.addr())))
        .map(|l| l.split_whitespace().nth(1).unwrap_or_default().to_string())
}

#[test]
fn a_saved_login_spares_the_password_next_time_until_logging_out() {
    let server = Server::start();
    let (mut ann, home) = newcomer("ann", &server);
    ann.send("\x03");
    ann.expect("Bye.");
    assert_eq!(ann.exit_code(), 130);
    let token = saved_login(&home, &server).expect("a saved login");
    assert_eq!(token.len(), 64, "{token}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(home.path().join("saved_logins")).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    }

    // Started again: straight to the main menu, no password asked.
    let mut again = Client::connect("ann", &home, &server);
    again.expect("Welcome back, ann.");
    main_menu(&mut again, "ann");
    assert!(!again.transcript().contains("Password"));
    let next = saved_login(&home, &server).expect("a saved login");
    assert_ne!(next, token, "the used token was replaced");

    // Logging out forgets it: the next start asks for the password.
    again.line("5");
    again.expect("ann logged out.");
    again.expect("What would you like to do?");
    assert_eq!(saved_login(&home, &server), None);
    let mut third = Client::connect("ann", &home, &server);
    log_in(&mut third, "ann");
    main_menu(&mut third, "ann");
}

#[test]
fn a_refused_saved_login_is_forgotten_and_the_start_menu_shown() {
    let server = Server::start();
    let (mut ann, home) = newcomer("ann", &server);
    ann.send("\x03");
    ann.expect("Bye.");
    let path = home.path().join("saved_logins");
    let text = std::fs::read_to_string(&path).unwrap();
    let token = saved_login(&home, &server).unwrap();
    std::fs::write(&path, text.replace(&token, &"0".repeat(64))).unwrap();

    let mut again = Client::connect("ann", &home, &server);
    again.expect("Your saved login is no longer valid: log in with your password.");
    // Forgotten before the line was shown.
    assert_eq!(saved_login(&home, &server), None);
    log_in(&mut again, "ann");
    assert_ne!(saved_login(&home, &server), Some("0".repeat(64)));
    main_menu(&mut again, "ann");
}

#[test]
fn ctrl_c_leaves_cleanly() {
    let server = Server::start();
    let (mut alice, _a) = newcomer("alice", &server);
    create_room(&mut alice, "Lobby");
    alice.send("half typed");
    alice.expect("> half typed");
    alice.send("\x03");
    alice.expect("Bye.");
    assert_eq!(alice.exit_code(), 130);
    let raw = String::from_utf8_lossy(&alice.raw()).replace('\r', "");
    assert!(
        raw.ends_with("\x1b[?25h\nBye.\n"),
        "the cursor is shown again and the goodbye ends the output: {:?}",
        &raw[raw.len().saturating_sub(60)..]
    );
    assert!(!alice.transcript().contains("panicked"));
}

#[test]
fn quitting_from_the_start_menu_says_bye() {
    let server = Server::start();
    let home = Home::new();
    let mut c = Client::connect("someone", &home, &server);
    trust(&mut c);
    c.expect("What would you like to do?");
    c.arrow_down();
    c.arrow_down();
    c.send("\r");
    c.expect("Bye.");
    assert_eq!(c.exit_code(), 0);
}

#[test]
fn account_refusals_say_why_and_let_the_user_try_again() {
    let server = Server::start();
    account(&server, "alice");
    let home = Home::new();
    let mut c = Client::connect("newbie", &home, &server);
    trust(&mut c);
    c.expect("What would you like to do?");
    c.arrow_down();
    c.send("\r");
    // The standard is shown before any password is asked for.
    c.expect("Passwords need 12 to 256 characters");
    c.expect("User name");
    c.line("Alice");
    // The name is checked before any password is typed.
    let taken = c.expect("That name is taken: choose another name.");
    assert!(!taken.contains("Password"), "{taken}");
    c.expect("User name");
    c.line("frank");
    c.expect("Password (hidden):");
    c.line("1qaz2wsx3edc");
    c.expect("That password is on the list of commonly used passwords: choose another.");
    c.expect("Password (hidden):");
    c.line("frank in wonderland");
    c.expect("That password contains your user name: choose another.");
    c.expect("Password (hidden):");
    c.line(PASSWORD);
    c.expect("Password again (hidden):");
    c.line("something else entirely");
    c.expect("The two passwords differ: type the password twice again.");
    c.expect("Password (hidden):");
    c.line(PASSWORD);
    c.expect("Password again (hidden):");
    c.line(PASSWORD);
    c.expect("Welcome, frank: your account is ready.");
    main_menu(&mut c, "frank");

    // Arrows work at the main menu: down four times is "Log out / quit".
    for _ in 0..4 {
        c.arrow_down();
    }
    c.send("\r");
    c.expect("frank logged out.");
    c.expect("What would you like to do?");
}

/// Whether the output holds an SGR sequence (colour or bold).
fn has_sgr(raw: &[u8]) -> bool {
    let text = String::from_utf8_lossy(raw);
    text.split("\x1b[").skip(1).any(|rest| {
        let params = rest
            .find(|c: char| !(c.is_ascii_digit() || c == ';'))
            .map(|end| &rest[end..]);
        params.is_some_and(|tail| tail.starts_with('m'))
    })
}

#[test]
fn colour_in_a_terminal_and_none_with_no_color() {
    let server = Server::start();
    let home = Home::new();
    let args = ["connect", "--accept-new-server", &server.addr()];
    let mut cmd = home.command(&args);
    cmd.env_remove("NO_COLOR");
    let mut colourful = Client::spawn_command("colourful", cmd);
    colourful.expect("What would you like to do?");
    assert!(has_sgr(&colourful.raw()), "no colour in a terminal");

    let mut plain = Client::spawn("plain", &home, &args);
    register(&mut plain, "grace");
    create_room(&mut plain, "Plain");
    assert!(
        !has_sgr(&plain.raw()),
        "colour despite NO_COLOR: {:?}",
        String::from_utf8_lossy(&plain.raw())
    );
}

/// Starts creating an account: the start menu's second entry.
fn start_registering(c: &mut Client) {
    c.expect("What would you like to do?");
    c.arrow_down();
    c.send("\r");
    c.expect("Create an account");
}

#[test]
fn a_taken_name_is_refused_before_the_passwords_and_a_new_name_gets_new_ones() {
    let server = Server::start();
    account(&server, "alice");
    let home = Home::new();
    let mut c = Client::connect("newbie", &home, &server);
    trust(&mut c);
    start_registering(&mut c);
    c.expect("User name");
    c.line("ALICE");
    let taken = c.expect("That name is taken: choose another name.");
    assert!(
        !taken.contains("Password"),
        "a password was asked for a taken name: {taken}"
    );
    c.expect("User name");
    c.line("alicia");
    // The new name's passwords are asked for, not silently reused.
    c.expect("Password (hidden):");
    c.line(PASSWORD);
    c.expect("Password again (hidden):");
    c.line(PASSWORD);
    c.expect("Welcome, alicia: your account is ready.");
    main_menu(&mut c, "alicia");
}

#[test]
fn the_name_rule_says_what_is_accepted_capitals_included() {
    let server = Server::start();
    let home = Home::new();
    let mut c = Client::connect("newbie", &home, &server);
    trust(&mut c);
    start_registering(&mut c);
    // Wrapped or not, the words are the same.
    let rules = c.expect("User name").replace('\n', " ");
    assert!(
        rules.contains("letters (a-z, A-Z), digits, '_', '-' or '.'"),
        "{rules}"
    );
    assert!(rules.contains("unique without regard to case"), "{rules}");
    assert!(!rules.contains("letters a-z,"), "{rules}");
    c.line("GRACE");
    c.expect("Password (hidden):");
    c.line(PASSWORD);
    c.expect("Password again (hidden):");
    c.line(PASSWORD);
    c.expect("Welcome, GRACE: your account is ready.");
}

#[test]
fn q_in_a_chat_opened_from_the_inbox_goes_where_the_screen_says() {
    let server = Server::start();
    account(&server, "alice");
    let (mut bob, _b) = newcomer("bob", &server);
    bob.line("3");
    bob.expect("Write to");
    bob.line("alice");
    // Opened with "Compose": /q goes to the main menu, as the screen says.
    bob.expect("/q back to the menu · /help");
    bob.line("first note");
    expect_message(&mut bob, "bob", "first note");
    bob.line("/q");
    main_menu(&mut bob, "bob");

    // Opened from the list of chats: /q goes back to the list, and the
    // screen says so.
    bob.line("-in");
    bob.expect("Private chats, newest first");
    bob.expect("Esc goes back");
    bob.line("1");
    bob.expect("Private chat with alice");
    let top = bob.expect("/help");
    assert!(top.contains("/q back to your private chats"), "{top}");
    assert!(!top.contains("/q back to the menu"), "{top}");
    bob.line("/help");
    bob.expect("/q          back to your private chats");
    bob.line("/q");
    bob.expect("Left the private chat with alice.");
    bob.expect("Private chats, newest first");
    bob.expect("Esc goes back");
    bob.send("\x1b");
    main_menu(&mut bob, "bob");
}

/// The row under the cursor: where the room's status line is drawn.
fn status_row(c: &Client) -> String {
    let (rows, (row, _)) = c.rows_and_cursor();
    rows.get(usize::from(row) + 1).cloned().unwrap_or_default()
}

/// Waits for the room's status line to show `count` members.
fn expect_count(c: &mut Client, room: &str, count: &str) {
    c.expect(&format!("{room} · Members ({count}) · /l lists them"));
    let row = status_row(c);
    assert!(
        row.contains(&format!("Members ({count})")),
        "{}: the line under the input should count {count}: {row:?}\n{}",
        c.name,
        c.screen()
    );
}

#[test]
fn the_member_count_follows_joins_leaves_and_kicks() {
    let server = Server::start();
    let (mut alice, _a) = newcomer("alice", &server);
    let (mut bob, _b) = newcomer("bob", &server);
    let (mut carol, _c) = newcomer("carol", &server);
    let id = create_room(&mut alice, "Lobby");
    let room = format!("Lobby (#{id})");
    expect_count(&mut alice, &room, "1/10");

    join_room(&mut bob, "Lobby", &id);
    alice.expect("* bob joined the room");
    expect_count(&mut alice, &room, "2/10");
    join_room(&mut carol, "Lobby", &id);
    alice.expect("* carol joined the room");
    expect_count(&mut alice, &room, "3/10");
    bob.expect("* carol joined the room");
    expect_count(&mut bob, &room, "3/10");

    alice.line("/kick bob");
    alice.expect("* bob was kicked out by alice");
    expect_count(&mut alice, &room, "2/10");
    carol.expect("* bob was kicked out by alice");
    expect_count(&mut carol, &room, "2/10");

    carol.line("/q");
    alice.expect("* carol left the room");
    expect_count(&mut alice, &room, "1/10");
}

#[test]
fn more_shows_a_room_s_earlier_messages_once_and_says_where_they_begin() {
    use chatapp::client::proto;
    use chatapp::wire::msg::{Reply, Request};
    let server = Server::start();
    // Three people fill a room with 25 lines before bob comes: a joiner is
    // shown the last 20.
    let mut room = 0;
    let mut talkers = Vec::new();
    for (i, name) in ["ann", "cat", "dan"].into_iter().enumerate() {
        account(&server, name);
        let mut conn = proto::connect(&server.addr()).expect("connect").accept();
        let login = Request::Login {
            name: name.into(),
            password: PASSWORD.into(),
        };
        let reply = conn.request_within(login, WAIT).expect("log in");
        assert!(matches!(reply, Reply::LoggedIn { .. }), "{reply:?}");
        let req = if i == 0 {
            Request::CreateRoom {
                name: "Archive".into(),
                capacity: 10,
            }
        } else {
            Request::JoinRoom { room }
        };
        match conn.request_within(req, WAIT).expect("enter the room") {
            Reply::Room { room: info, .. } => room = info.id,
            other => panic!("{other:?}"),
        }
        talkers.push(conn);
    }
    for n in 1..=25 {
        let conn = &mut talkers[n % 3];
        let say = Request::Say {
            text: format!("line number {n}"),
            client_id: 0,
        };
        assert_eq!(conn.request_within(say, WAIT).expect("say"), Reply::Ok);
    }

    let (mut bob, _home) = newcomer("bob", &server);
    join_room(&mut bob, "Archive", &room.to_string());
    bob.expect("--- the last 20 messages ---");
    bob.expect("line number 6\n");
    bob.expect("line number 25\n");
    assert!(!bob.transcript().contains("line number 5\n"));

    // Page Up, halfway through a line, does what /more does and leaves the
    // typed text as it was.
    bob.send("thanks for ");
    bob.send("\x1b[5~");
    bob.expect("--- earlier: 5 messages ---");
    for n in 1..=5 {
        bob.expect(&format!("line number {n}\n"));
    }
    bob.expect("--- end of the earlier messages: that is the beginning ---");
    bob.line("the backlog");
    expect_message(&mut bob, "bob", "thanks for the backlog");
    bob.line("/more");
    bob.expect("No earlier messages: that is the beginning.");
    // Still in the room: a line is said there.
    bob.line("and bye");
    expect_message(&mut bob, "bob", "and bye");
    let shown = bob.transcript();
    assert_eq!(shown.matches("line number 3\n").count(), 1, "{shown}");
}
