//! The client's screens in the order a person meets them: connect and
//! check the server's key, the start menu (log in, create an account,
//! quit), then the main menu with its room, private-chat and inbox
//! screens. This module decides what happens next; [`super::session`]
//! words it and [`super::ui`] draws it.

use super::ConnectArgs;
use super::editor::LineBuffer;
use super::link::{CallError, Link, NetEvent};
use super::proto::{self, ClientError, Connection};
use super::session::{self, Command, Line, Next, Session, Tone, error_line};
use super::trust::{KnownServers, Verdict};
use super::ui::{self, Input, Menu, Mode, Pick, Terminal};
use crate::model;
use crate::password;
use crate::wire::msg::{ErrorCode, Event, PrivateLine, Reply, Request, RoomInfo, RoomLine};
use std::io;
use std::path::Path;
use std::time::Duration;

/// How long an ordinary request may take.
const CALL: Duration = Duration::from_secs(15);
/// Login and registration run scrypt and may be slowed after failures.
const AUTH_CALL: Duration = Duration::from_secs(60);
/// Capacity offered when the creator just presses Enter.
const DEFAULT_CAPACITY: u32 = 10;
const MENU_HINT: &str = "A number or the arrows, then Enter";

/// Why a screen stopped early.
#[derive(Debug)]
enum Stop {
    /// The connection is gone; the sentence says why.
    Lost(String),
    /// Ctrl-C.
    Interrupted,
    Fatal(anyhow::Error),
}

impl From<io::Error> for Stop {
    fn from(e: io::Error) -> Stop {
        if e.kind() == io::ErrorKind::Interrupted {
            Stop::Interrupted
        } else {
            Stop::Fatal(anyhow::Error::new(e).context("the terminal failed"))
        }
    }
}

type Step<T = ()> = Result<T, Stop>;

/// Why a connection could not be opened.
enum OpenError {
    /// Unreachable, or not our protocol: worth another try later.
    Net(ClientError),
    /// The server is not trusted, or the trust file failed: never retried.
    Refused(anyhow::Error),
}

/// The server this run talks to, and how to decide whether to trust it.
struct Target<'a> {
    addr: &'a str,
    args: &'a ConnectArgs,
    known: &'a Path,
}

/// Runs the client until the user quits. Connection trouble at the start
/// is an error (a non-zero exit); later, the user is offered a reconnect.
pub fn run(args: ConnectArgs) -> anyhow::Result<()> {
    let addr = super::normalize_addr(&args.server());
    let Some(known) = super::trust::default_path() else {
        anyhow::bail!(
            "cannot find a configuration directory for the known-servers file: set {} to one",
            super::trust::CONFIG_DIR_ENV
        );
    };
    let target = Target {
        addr: &addr,
        args: &args,
        known: &known,
    };
    let mut term = Terminal::new();
    let result = sessions(&mut term, &target);
    term.restore();
    match result {
        Ok(()) => Ok(()),
        Err(Stop::Interrupted) => {
            drop(term);
            ui::leave(130, true)
        }
        Err(Stop::Lost(why)) => Err(anyhow::anyhow!("{why}")),
        Err(Stop::Fatal(e)) => Err(e),
    }
}

/// The server closes a connection that does not log in within seconds, so
/// a connection is opened only when a login or registration is ready to be
/// sent, and closed at logout. This first one only meets the server: an
/// unreachable or untrusted server ends the run before any question.
fn sessions(term: &mut Terminal, target: &Target) -> Step {
    match open(term, target) {
        Ok(conn) => drop(conn),
        Err(OpenError::Net(e)) => return Err(Stop::Fatal(e.into())),
        Err(OpenError::Refused(e)) => return Err(Stop::Fatal(e)),
    }
    if !ui::is_interactive() {
        return Err(Stop::Fatal(anyhow::anyhow!(
            "the chat client needs a terminal: run `chatapp connect {}` in one",
            target.addr
        )));
    }
    term.say(Tone::Good, format!("Connected to {}.", target.addr))?;
    loop {
        match start_menu(term, target) {
            Ok(()) => {
                term.say(Tone::Dim, "Bye.")?;
                return Ok(());
            }
            Err(Stop::Lost(why)) => {
                term.line(Line::of(Tone::Error, why))?;
                if !reconnect(term, target)? {
                    term.say(Tone::Dim, "Bye.")?;
                    return Ok(());
                }
            }
            Err(other) => return Err(other),
        }
    }
}

/// Offers to reconnect until the server answers or the user declines.
fn reconnect(term: &mut Terminal, target: &Target) -> Step<bool> {
    loop {
        if !term.confirm(&format!("Reconnect to {}?", target.addr), true)? {
            return Ok(false);
        }
        match open(term, target) {
            Ok(conn) => {
                drop(conn);
                term.say(Tone::Good, format!("{} answers again.", target.addr))?;
                return Ok(true);
            }
            Err(OpenError::Net(e)) => term.line(error_line(&e.to_string()))?,
            Err(OpenError::Refused(e)) => return Err(Stop::Fatal(e)),
        }
    }
}

/// A fresh, trusted connection with its network thread.
fn link_up(term: &mut Terminal, target: &Target) -> Step<Link> {
    match open(term, target) {
        Ok(conn) => Ok(Link::start(conn)),
        Err(OpenError::Net(e)) => Err(Stop::Lost(session::sentence(&e.to_string()))),
        Err(OpenError::Refused(e)) => Err(Stop::Fatal(e)),
    }
}

/// Connects and checks the server's key against the known-servers file.
/// Nothing is sent inside the channel until the key is trusted.
fn open(term: &mut Terminal, target: &Target) -> Result<Connection, OpenError> {
    let Target { addr, args, known } = *target;
    let unverified = proto::connect(addr).map_err(OpenError::Net)?;
    let fingerprint = unverified.fingerprint();
    let refused = |e: anyhow::Error| OpenError::Refused(e);
    let mut known = KnownServers::load(known).map_err(|e| refused(e.into()))?;
    match known.check(addr, &fingerprint) {
        Verdict::Known => {}
        Verdict::Changed { remembered } => {
            return Err(refused(anyhow::anyhow!(
                "refusing {addr}: its key has changed since you first trusted it\n  \
                 remembered key: {remembered}\n  \
                 key shown now:  {fingerprint}\n\
                 Someone may be impersonating the server, or its operator gave it a new key. \
                 Nothing was sent to it: no name, no password.\n\
                 If the operator confirms the new key, delete the line for {addr} in {} and connect again.",
                known.path().display()
            )));
        }
        Verdict::Unknown if args.accept_new_server => {
            known
                .remember(addr, &fingerprint)
                .map_err(|e| refused(e.into()))?;
            let _ = term.say(
                Tone::Notice,
                format!(
                    "Trusting the new server {addr} (key {fingerprint}) as --accept-new-server asks; remembered in {}.",
                    known.path().display()
                ),
            );
        }
        Verdict::Unknown if !ui::is_interactive() => {
            return Err(refused(anyhow::anyhow!(
                "refusing {addr}: it is not a known server (its key is {fingerprint}) and there is no terminal to ask whether to trust it. \
                 Connect once from a terminal, or pass --accept-new-server to trust it without asking"
            )));
        }
        Verdict::Unknown => {
            let asked = first_contact(term, addr, &fingerprint, known.path());
            match asked {
                Ok(true) => {}
                Ok(false) => {
                    return Err(refused(anyhow::anyhow!(
                        "you did not trust {addr}: nothing was sent to it"
                    )));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                    return Err(refused(anyhow::anyhow!("interrupted")));
                }
                Err(e) => return Err(refused(e.into())),
            }
            known
                .remember(addr, &fingerprint)
                .map_err(|e| refused(e.into()))?;
        }
    }
    Ok(unverified.accept())
}

fn first_contact(
    term: &mut Terminal,
    addr: &str,
    fingerprint: &str,
    path: &Path,
) -> io::Result<bool> {
    term.show(&[
        Line::of(
            Tone::Heading,
            format!("{addr} is a server you have not met before. Its key fingerprint is"),
        ),
        Line::of(Tone::Notice, format!("  {fingerprint}")),
        Line::of(
            Tone::Dim,
            "Check it with the server's operator: `chatapp serve --fingerprint` prints it.",
        ),
        Line::of(
            Tone::Dim,
            format!("Trusted keys are remembered in {}.", path.display()),
        ),
    ])?;
    term.confirm("Trust this server?", false)
}

// ---- before login ----

fn start_menu(term: &mut Terminal, target: &Target) -> Step {
    loop {
        let pick = term.select(
            "What would you like to do?",
            &["Log in", "Create an account", "Quit"],
        )?;
        let logged_in_as = match pick {
            Some(0) => log_in(term, target)?,
            Some(1) => create_account(term, target)?,
            _ => return Ok(()),
        };
        if let Some((mut link, session)) = logged_in_as {
            logged_in(term, &mut link, session)?;
        }
    }
}

fn log_in(term: &mut Terminal, target: &Target) -> Step<Option<(Link, Session)>> {
    term.show(&[
        Line::of(Tone::Heading, "Log in"),
        Line::of(Tone::Dim, "Leave the name empty to go back."),
    ])?;
    let mut name = String::new();
    loop {
        name = term.input("User name", &name)?;
        if name.is_empty() {
            return Ok(None);
        }
        let Some(password) = term.secret("Password")? else {
            return Ok(None);
        };
        if password.is_empty() {
            term.line(error_line(
                "type your password, or leave the name empty to go back",
            ))?;
            continue;
        }
        term.say(Tone::Dim, "Checking…")?;
        term.wait_for_server()?;
        let mut link = link_up(term, target)?;
        let request = Request::Login {
            name: name.clone(),
            password,
        };
        match call(&mut link, request, AUTH_CALL)? {
            Reply::LoggedIn { name, unread } => {
                term.say(Tone::Good, format!("Welcome back, {name}."))?;
                let session = Session::new(name, unread, super::local_offset);
                return Ok(Some((link, session)));
            }
            Reply::Error { message, .. } => term.line(error_line(&message))?,
            other => term.line(unexpected(&other))?,
        }
    }
}

fn create_account(term: &mut Terminal, target: &Target) -> Step<Option<(Link, Session)>> {
    term.show(&[
        Line::of(Tone::Heading, "Create an account"),
        Line::of(
            Tone::Dim,
            "A user name is 3 to 32 characters: letters a-z, digits, '_', '-' or '.'.",
        ),
        Line::of(Tone::Dim, password::STANDARD),
        Line::of(Tone::Dim, "Leave the name empty to go back."),
    ])?;
    let mut name = String::new();
    let mut chosen: Option<String> = None;
    loop {
        if name.is_empty() {
            name = term.input("User name", "")?;
            if name.is_empty() {
                return Ok(None);
            }
            if let Err(e) = model::check_user_name(&name) {
                term.line(error_line(&e.to_string()))?;
                name.clear();
                continue;
            }
            // A password kept from a refused name must suit the new one.
            if chosen
                .as_ref()
                .is_some_and(|p| password::check(&name, p).is_err())
            {
                chosen = None;
            }
        }
        let Some(pass) = chosen.clone() else {
            let Some(first) = term.secret("Password")? else {
                return Ok(None);
            };
            if let Err(e) = password::check(&name, &first) {
                term.line(error_line(&e.to_string()))?;
                continue;
            }
            let Some(second) = term.secret("Password again")? else {
                return Ok(None);
            };
            if second != first {
                term.line(error_line(
                    "the two passwords differ: type the password twice again",
                ))?;
                continue;
            }
            chosen = Some(first);
            continue;
        };
        term.say(Tone::Dim, "Creating the account…")?;
        term.wait_for_server()?;
        let mut link = link_up(term, target)?;
        let request = Request::Register {
            name: name.clone(),
            password: pass,
        };
        match call(&mut link, request, AUTH_CALL)? {
            Reply::LoggedIn { name, unread } => {
                term.say(
                    Tone::Good,
                    format!("Welcome, {name}: your account is ready."),
                )?;
                let session = Session::new(name, unread, super::local_offset);
                return Ok(Some((link, session)));
            }
            Reply::Error {
                code: ErrorCode::NameTaken | ErrorCode::InvalidName,
                message,
            } => {
                term.line(error_line(&format!("{message}: choose another name")))?;
                name.clear();
            }
            Reply::Error {
                code: ErrorCode::WeakPassword,
                message,
            } => {
                term.line(error_line(&message))?;
                chosen = None;
            }
            Reply::Error { message, .. } => {
                term.line(error_line(&message))?;
                return Ok(None);
            }
            other => {
                term.line(unexpected(&other))?;
                return Ok(None);
            }
        }
    }
}

// ---- after login ----

fn logged_in(term: &mut Terminal, link: &mut Link, mut s: Session) -> Step {
    loop {
        refresh_unread(link, &mut s)?;
        let mut menu = Menu::new(
            vec![Line::new(), s.menu_header()],
            s.menu_items(),
            format!("{MENU_HINT} · -in opens your private chats"),
        );
        menu.inbox_shortcut = true;
        let choice = loop {
            match term.menu(&mut menu, link)? {
                Pick::Item(i) => break i,
                Pick::Inbox => break 3,
                Pick::Back => {}
                Pick::Net(ev) => {
                    handle_net(term, link, &mut s, ev)?;
                    menu.title = vec![Line::new(), s.menu_header()];
                    menu.items = s.menu_items();
                }
                Pick::Interrupt => return Err(Stop::Interrupted),
            }
        };
        term.say(Tone::Dim, format!("Main menu › {}", s.menu_items()[choice]))?;
        match choice {
            0 => create_room(term, link, &mut s)?,
            1 => join_room(term, link, &mut s)?,
            2 => compose(term, link, &mut s)?,
            3 => inbox(term, link, &mut s)?,
            _ => {
                match call(link, Request::Logout, CALL)? {
                    Reply::Error { message, .. } => term.line(error_line(&message))?,
                    _ => term.say(Tone::Good, format!("{} logged out.", s.me()))?,
                }
                return Ok(());
            }
        }
    }
}

/// The unread count, fresh from the server's inbox.
fn refresh_unread(link: &mut Link, s: &mut Session) -> Step {
    if let Reply::Inbox { conversations } = call(link, Request::Inbox, CALL)? {
        s.set_unread(conversations.iter().map(|c| c.unread).sum());
    }
    Ok(())
}

/// Shows what the server pushed; says whether the current screen ends.
fn handle_net(term: &mut Terminal, link: &mut Link, s: &mut Session, ev: NetEvent) -> Step<Next> {
    match ev {
        NetEvent::Event(event) => {
            let shown = s.on_event(event);
            if let Next::Disconnected(_) = shown.next {
                return Err(Stop::Lost(
                    session::text_of(&shown.lines).trim().to_string(),
                ));
            }
            term.show(&shown.lines)?;
            if let Some(with) = shown.mark_read {
                link.send(Request::MarkRead { with });
            }
            Ok(shown.next)
        }
        // The answer to a message sent without waiting (`say`,
        // `send_private`): only a refusal is worth showing.
        NetEvent::Reply {
            reply: Reply::Error { message, .. },
            ..
        } => {
            term.line(error_line(&message))?;
            Ok(Next::Stay)
        }
        NetEvent::Reply { .. } => Ok(Next::Stay),
        NetEvent::Lost(why) => Err(lost(&why)),
    }
}

/// A question on a live screen; `None` on Esc or Ctrl-D. What the server
/// pushes meanwhile is shown above it.
fn ask(term: &mut Terminal, link: &mut Link, s: &mut Session, label: &str) -> Step<Option<String>> {
    let mut buf = LineBuffer::new();
    loop {
        match term.read_line(label, &mut buf, Some(&mut *link), Mode::Answer)? {
            Input::Line(text) => return Ok(Some(text.trim().to_string())),
            Input::Cancel | Input::Eof => return Ok(None),
            Input::Interrupt => return Err(Stop::Interrupted),
            Input::Net(ev) => {
                handle_net(term, link, s, ev)?;
            }
        }
    }
}

fn create_room(term: &mut Terminal, link: &mut Link, s: &mut Session) -> Step {
    term.say(
        Tone::Dim,
        "Name the room (1 to 50 characters). Esc or an empty name goes back.",
    )?;
    let mut name: Option<String> = None;
    loop {
        let room_name = match &name {
            Some(n) => n.clone(),
            None => match ask(term, link, s, "Room name: ")? {
                Some(n) if !n.is_empty() => n,
                _ => return Ok(()),
            },
        };
        if let Err(e) = model::check_room_name(&room_name) {
            term.line(error_line(&e.to_string()))?;
            continue;
        }
        name = Some(room_name.clone());
        let label = format!(
            "Most participants, {} to {} [{DEFAULT_CAPACITY}]: ",
            model::MIN_CAPACITY,
            model::MAX_CAPACITY
        );
        let Some(typed) = ask(term, link, s, &label)? else {
            return Ok(());
        };
        let capacity = match session::parse_capacity(&typed, DEFAULT_CAPACITY) {
            Ok(c) => c,
            Err(e) => {
                term.line(error_line(&e))?;
                continue;
            }
        };
        let request = Request::CreateRoom {
            name: room_name,
            capacity,
        };
        match call(link, request, CALL)? {
            Reply::Room {
                room,
                members,
                history,
            } => return room_screen(term, link, s, room, members, &history),
            Reply::Error {
                code: ErrorCode::RoomNameTaken | ErrorCode::InvalidName,
                message,
            } => {
                term.line(error_line(&message))?;
                name = None;
            }
            Reply::Error {
                code: ErrorCode::InvalidCapacity,
                message,
            } => term.line(error_line(&message))?,
            Reply::Error { message, .. } => {
                term.line(error_line(&message))?;
                return Ok(());
            }
            other => {
                term.line(unexpected(&other))?;
                return Ok(());
            }
        }
    }
}

fn join_room(term: &mut Terminal, link: &mut Link, s: &mut Session) -> Step {
    let Some(typed) = ask(term, link, s, "Room number (like #12; Esc goes back): ")? else {
        return Ok(());
    };
    if typed.is_empty() {
        return Ok(());
    }
    let room = match session::parse_room_id(&typed) {
        Ok(id) => id,
        Err(e) => return Ok(term.line(error_line(&e))?),
    };
    match call(link, Request::JoinRoom { room }, CALL)? {
        Reply::Room {
            room,
            members,
            history,
        } => room_screen(term, link, s, room, members, &history),
        Reply::Error { message, .. } => Ok(term.line(error_line(&message))?),
        other => Ok(term.line(unexpected(&other))?),
    }
}

fn room_screen(
    term: &mut Terminal,
    link: &mut Link,
    s: &mut Session,
    room: RoomInfo,
    members: Vec<String>,
    history: &[RoomLine],
) -> Step {
    term.clear_screen()?;
    let top = s.enter_room(room, members, history);
    term.show(&top)?;
    let mut buf = LineBuffer::new();
    loop {
        let text = match term.read_line("> ", &mut buf, Some(&mut *link), Mode::Chat)? {
            Input::Line(text) => text,
            Input::Eof => "/q".to_string(),
            Input::Cancel => {
                term.say(
                    Tone::Dim,
                    "Type /q to leave the room, /help for the commands.",
                )?;
                continue;
            }
            Input::Interrupt => return Err(Stop::Interrupted),
            Input::Net(ev) => {
                if handle_net(term, link, s, ev)? == Next::ToMenu {
                    return Ok(());
                }
                continue;
            }
        };
        match session::parse_room_input(&text) {
            Command::Say(text) => {
                link.send(Request::Say { text });
            }
            Command::Quit => {
                let reply = call(link, Request::LeaveRoom, CALL)?;
                if let Reply::Error { message, .. } = reply {
                    term.line(error_line(&message))?;
                    s.to_menu();
                } else {
                    let line = s.left_room();
                    term.line(line)?;
                }
                return Ok(());
            }
            Command::List => match call(link, Request::Members, CALL)? {
                Reply::Members { members } => {
                    let line = s.set_members(members);
                    term.line(line)?;
                }
                Reply::Error { message, .. } => term.line(error_line(&message))?,
                other => term.line(unexpected(&other))?,
            },
            Command::Kick(name) => {
                // Success shows as the "was kicked out" notice that follows.
                if let Reply::Error { message, .. } = call(link, Request::Kick { name }, CALL)? {
                    term.line(error_line(&message))?;
                }
            }
            Command::Help => term.show(&session::room_help())?,
            Command::Nothing => {}
            Command::Refused(line) => term.line(line)?,
        }
    }
}

fn compose(term: &mut Terminal, link: &mut Link, s: &mut Session) -> Step {
    loop {
        let Some(name) = ask(term, link, s, "Write to (a user name; Esc goes back): ")? else {
            return Ok(());
        };
        if name.is_empty() {
            return Ok(());
        }
        match call(link, Request::OpenDialogue { with: name }, CALL)? {
            Reply::Dialogue { with, history } => {
                return chat_screen(term, link, s, &with, &history);
            }
            Reply::Error { message, .. } => term.line(error_line(&message))?,
            other => return Ok(term.line(unexpected(&other))?),
        }
    }
}

fn chat_screen(
    term: &mut Terminal,
    link: &mut Link,
    s: &mut Session,
    with: &str,
    history: &[PrivateLine],
) -> Step {
    term.clear_screen()?;
    let top = s.enter_chat(with, history);
    term.show(&top)?;
    let mut buf = LineBuffer::new();
    loop {
        let text = match term.read_line("> ", &mut buf, Some(&mut *link), Mode::Chat)? {
            Input::Line(text) => text,
            Input::Eof | Input::Cancel => "/q".to_string(),
            Input::Interrupt => return Err(Stop::Interrupted),
            Input::Net(ev) => {
                handle_net(term, link, s, ev)?;
                continue;
            }
        };
        match session::parse_chat_input(&text) {
            Command::Say(text) => {
                link.send(Request::SendPrivate {
                    to: with.to_string(),
                    text,
                });
            }
            Command::Quit => {
                s.to_menu();
                term.say(Tone::Dim, format!("Left the private chat with {with}."))?;
                return Ok(());
            }
            Command::Help => term.show(&session::chat_help(with))?,
            Command::Refused(line) => term.line(line)?,
            Command::Nothing | Command::List | Command::Kick(_) => {}
        }
    }
}

fn inbox(term: &mut Terminal, link: &mut Link, s: &mut Session) -> Step {
    loop {
        let conversations = match call(link, Request::Inbox, CALL)? {
            Reply::Inbox { conversations } => conversations,
            Reply::Error { message, .. } => return Ok(term.line(error_line(&message))?),
            other => return Ok(term.line(unexpected(&other))?),
        };
        s.set_unread(conversations.iter().map(|c| c.unread).sum());
        if conversations.is_empty() {
            term.say(
                Tone::Dim,
                "No private chats yet: choose 3 (Compose a private message) to start one.",
            )?;
            return Ok(());
        }
        let mut items = s.inbox_items(&conversations, super::now_millis());
        items.push("Back to the main menu".to_string());
        let mut menu = Menu::new(
            vec![
                Line::new(),
                Line::of(Tone::Heading, "Private chats, newest first"),
            ],
            items,
            format!("{MENU_HINT} · Esc goes back"),
        );
        let pick = loop {
            match term.menu(&mut menu, link)? {
                Pick::Item(i) => break Some(i),
                Pick::Back | Pick::Inbox => break None,
                Pick::Net(ev) => {
                    handle_net(term, link, s, ev)?;
                }
                Pick::Interrupt => return Err(Stop::Interrupted),
            }
        };
        let Some(chosen) = pick.and_then(|i| conversations.get(i)) else {
            return Ok(());
        };
        let request = Request::OpenDialogue {
            with: chosen.with.clone(),
        };
        match call(link, request, CALL)? {
            Reply::Dialogue { with, history } => chat_screen(term, link, s, &with, &history)?,
            Reply::Error { message, .. } => term.line(error_line(&message))?,
            other => term.line(unexpected(&other))?,
        }
    }
}

// ---- helpers ----

/// A request and its reply; a lost connection stops the screen.
fn call(link: &mut Link, req: Request, wait: Duration) -> Step<Reply> {
    match link.call(req, wait) {
        Ok(reply) => Ok(reply),
        Err(CallError::Lost(why)) => {
            // A goodbye that came first says more than the closed socket.
            while let Some(ev) = link.next_event() {
                if let NetEvent::Event(Event::Bye { reason }) = ev {
                    return Err(bye(&reason));
                }
            }
            Err(lost(&why))
        }
        Err(CallError::Timeout) => Err(Stop::Lost(
            "The server did not answer in time; the connection is given up.".to_string(),
        )),
    }
}

fn lost(why: &str) -> Stop {
    Stop::Lost(format!("The connection to the server was lost: {why}."))
}

fn bye(reason: &str) -> Stop {
    Stop::Lost(format!(
        "The server ended the session: {}.",
        session::clean(reason)
    ))
}

fn unexpected(reply: &Reply) -> Line {
    error_line(&format!("the server gave an unexpected answer ({reply:?})"))
}
