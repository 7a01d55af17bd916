//! The client's protocol flow as a state machine: which screen comes next,
//! which request to send, what a reply means. Pure: it is fed what the
//! person did ([`UserInput`]: a menu choice, a typed line, Esc) and what
//! the network did ([`NetInput`]: a reply, a pushed event, a lost
//! connection), and it is drained of [`Effect`]s (show these lines, ask
//! this, open a connection, send this request, quit). No terminal, no
//! socket, no clock of its own: the driver (`app.rs`) carries effects out
//! and feeds the results back, and the tests here do the same with a
//! script.
//!
//! A lost connection is an input like any other, not an error that
//! unwinds the screens: the core decides what follows. A logged-in session
//! with a saved token reconnects by itself: the screen and the typed line
//! stay, a status line says when the next attempt comes ([`backoff`]), the
//! driver opens the connection in the background ([`Effect::Dial`]) while
//! the person goes on typing, and once the token resumed the session, the
//! room is joined again and each conversation on the screen caught up from
//! the last sequence number shown. Every message carries a client id and
//! stays in the outbox until the server acknowledges it; what is in the
//! outbox after a reconnect (typed while away, or sent but never
//! acknowledged) is sent again with the same id, so the server stores each
//! once. Without a token (or after a `bye` that ends the session for good)
//! the person is asked whether to reconnect.
//!
//! Resume tokens: every `logged_in` carries the token for the next
//! connection, which the core hands the driver to keep
//! ([`Effect::SaveToken`]); a run that starts with a saved token sends
//! `resume` before showing the start menu, and a refused resume or a
//! logout forgets it ([`Effect::ForgetToken`]).
//!
//! The driver runs one [`Effect::Call`] at a time and feeds its answer
//! back before taking the next effect, so a reply always belongs to the
//! request the core is waiting for ([`Pending`]).

use super::session::{self, ChatExit, Command, Line, Next, Session, Tone, error_line};
use crate::model;
use crate::password;
use crate::wire::msg::{Conversation, ErrorCode, Event, PrivateLine, Reply, Request, Topic};
use std::collections::VecDeque;

/// Capacity offered when the creator just presses Enter.
pub const DEFAULT_CAPACITY: u32 = 10;
/// Messages a catch-up asks for per conversation; the server says how
/// many more there were.
pub const CATCH_UP: u32 = 200;
/// Lines that may wait for the connection; more are refused.
pub const MAX_PENDING: usize = 50;
/// Client ids reserved in the saved login at a time: the file is written
/// once per this many messages (and at every login or resume), and the
/// next run starts above every id this one may have used.
const ID_BLOCK: u64 = 1000;
const OFFLINE: &str = "Not connected: that waits until the connection is back. Lines you send now are sent then; Ctrl-C quits.";
const MENU_HINT: &str = "A number or the arrows, then Enter";

/// The start menu's entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartChoice {
    LogIn,
    CreateAccount,
    Quit,
}

/// The main menu's entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MainChoice {
    CreateRoom,
    JoinRoom,
    Compose,
    Inbox,
    LogOut,
}

/// What a menu entry stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Choice {
    Start(StartChoice),
    Main(MainChoice),
    /// A conversation in the list of private chats, by the other's name.
    Open(String),
    /// "Back to the main menu".
    Back,
}

/// A menu entry: what it means and how it reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub choice: Choice,
    pub label: String,
}

impl Item {
    fn new(choice: Choice, label: impl Into<String>) -> Item {
        Item {
            choice,
            label: label.into(),
        }
    }
}

/// Which live menu is on screen; a menu asked for again with the same
/// kind is the same menu with new words (the highlight and typed text stay).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MenuKind {
    Main,
    Inbox,
}

/// A question for the person. It stays asked (and is asked again after
/// each answer) until another replaces it.
#[derive(Debug, Clone, PartialEq)]
pub enum Ask {
    /// Before login: entries chosen with the arrows and Enter.
    Pick {
        prompt: String,
        items: Vec<Item>,
    },
    /// Before login: a line of text, echoed, starting as `initial`.
    Text {
        prompt: String,
        initial: String,
    },
    /// A password: nothing is echoed.
    Secret {
        prompt: String,
    },
    Confirm {
        prompt: String,
        default: bool,
    },
    /// After login: a menu that what the server pushes is shown above.
    Menu {
        kind: MenuKind,
        title: Vec<Line>,
        items: Vec<Item>,
        hint: String,
        /// Whether `-in` opens the inbox.
        inbox_shortcut: bool,
    },
    /// After login: a line typed while the server may speak. A `chat` line
    /// is erased when sent (the server's echo shows it); an answer stays.
    Line {
        label: String,
        chat: bool,
    },
}

/// Something for the driver to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    Show(Vec<Line>),
    /// A new screen: the terminal cleared.
    ClearScreen,
    Ask(Ask),
    /// The line kept under a chat prompt, or none. A new [`Ask`] clears it.
    Status(Option<Line>),
    /// Open a connection and check the server's key; answered by
    /// [`NetInput::Opened`] or [`NetInput::OpenFailed`].
    Open,
    /// As [`Effect::Open`], in the background: the screen stays live
    /// while the connection is being made.
    Dial,
    /// Feed [`Input::Timer`] after this many milliseconds (replacing any
    /// timer set before).
    Timer(u64),
    /// The line shown under every live prompt while the connection is
    /// down, or none.
    Banner(Option<Line>),
    /// Send a request and wait for its reply; answered by
    /// [`NetInput::Reply`] or [`NetInput::Lost`].
    Call(Request),
    /// Send a request without waiting; a refusal comes back as
    /// [`NetInput::Answer`].
    Send(Request),
    /// Close the connection.
    Close,
    /// Keep this resume token for this server, replacing any other, with
    /// the first client id the next run may use.
    SaveToken {
        token: String,
        next_id: u64,
    },
    /// Forget the resume token kept for this server.
    ForgetToken,
    /// The person is done: end the program.
    Quit,
}

/// What the person did, in answer to the current [`Ask`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserInput {
    Chose(Choice),
    /// `-in` at a menu that offers it.
    InboxShortcut,
    /// A line (or password) and Enter.
    Text(String),
    /// Esc (or Ctrl-D at a password).
    Cancel,
    /// Ctrl-D on an empty line.
    Eof,
    /// Page Up at a chat line (the typed text stays): as `/more`.
    PageUp,
    Confirmed(bool),
}

/// Why the connection is gone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lost {
    /// The server said goodbye, with this reason; `resume` when the
    /// session goes on over a new connection.
    Bye { reason: String, resume: bool },
    /// The connection closed or failed; the text says how.
    Closed(String),
    /// A request went unanswered too long.
    Timeout,
}

/// What the network did.
#[derive(Debug, Clone, PartialEq)]
pub enum NetInput {
    Opened,
    /// The server could not be reached; the text says why.
    OpenFailed(String),
    /// The reply to the last [`Effect::Call`].
    Reply(Reply),
    /// The reply to an [`Effect::Send`]; `client_id` is the message's,
    /// if it was one (else 0).
    Answer {
        client_id: u64,
        reply: Reply,
    },
    Event(Event),
    Lost(Lost),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    User(UserInput),
    Net(NetInput),
    /// The time an [`Effect::Timer`] asked for has come.
    Timer,
}

/// A message given a client id and not yet acknowledged.
#[derive(Debug, Clone, PartialEq)]
struct Outgoing {
    id: u64,
    req: Request,
    /// The room a `say` is for.
    room: Option<u64>,
}

/// How long to wait before reconnect attempt `attempt` (from 1), in ms:
/// 0.5 s doubling up to 30 s, each spread ±25 % by `random` so that
/// clients dropped together do not all come back at once.
pub fn backoff(attempt: u32, random: u64) -> u64 {
    let base = (500u64 << attempt.saturating_sub(1).min(6)).min(30_000);
    let spread = base / 2;
    (base - base / 4 + random % (spread + 1)).min(30_000)
}

/// A greeting, naming the server that answered when it is one of several
/// (so that a user who moved to another one sees it).
fn on_node(greeting: String, node: Option<u32>) -> String {
    match node {
        Some(n) => format!("{greeting} (server node {n})"),
        None => greeting,
    }
}

/// `0.4 s`, `4 s`.
fn seconds(ms: u64) -> String {
    if ms < 1000 {
        format!("{:.1} s", ms as f64 / 1000.0)
    } else {
        format!("{} s", (ms + 500) / 1000)
    }
}

/// What the current question is for.
#[derive(Debug, Clone, PartialEq)]
enum Screen {
    Start,
    LoginName,
    LoginPassword {
        name: String,
    },
    NewName,
    NewPassword {
        name: String,
    },
    NewPasswordAgain {
        name: String,
        first: String,
    },
    Reconnect,
    Menu,
    RoomName,
    RoomCapacity {
        name: String,
    },
    RoomNumber,
    Room,
    ComposeTo,
    Chat {
        with: String,
        exit: ChatExit,
    },
    Inbox,
    /// Waiting for the network; nothing is asked.
    Busy,
}

/// What an awaited connection or reply is for.
#[derive(Debug, Clone, PartialEq)]
enum Pending {
    /// A `resume` with the saved token.
    Resume,
    Login {
        name: String,
        password: String,
    },
    /// Is the name free? A `register` with an empty password: the server
    /// checks the name before the password (docs/PROTOCOL.md), so
    /// `name_taken` means taken and `weak_password` means free.
    NameCheck {
        name: String,
    },
    Register {
        name: String,
        password: String,
    },
    Reconnect,
    /// A `resume` on a connection opened again by itself; then back to
    /// this screen.
    Back {
        screen: Screen,
    },
    /// Joining the room on the screen again after a reconnect.
    Rejoin {
        screen: Screen,
    },
    /// What the screen's conversation missed while the connection was
    /// down.
    CatchUp {
        screen: Screen,
    },
    Unread,
    CreateRoom {
        name: String,
    },
    Join,
    Leave,
    Members,
    Kick,
    /// `/more`: earlier messages, then back to this screen.
    More {
        back: Screen,
    },
    OpenChat {
        exit: ChatExit,
    },
    Inbox,
    Logout,
}

/// The client's flow, from the start menu to quitting.
pub struct Core {
    addr: String,
    now: fn() -> i64,
    local: session::LocalOffset,
    screen: Screen,
    /// Set while an [`Effect::Open`] or [`Effect::Call`] is out.
    pending: Option<Pending>,
    connected: bool,
    session: Option<Session>,
    /// The saved resume token for this server, if any.
    token: Option<String>,
    /// The reconnect attempt under way or waited for, while the
    /// connection is down.
    reconnect: Option<u32>,
    /// Messages not yet acknowledged, oldest first.
    outbox: Vec<Outgoing>,
    /// The next message's client id, and the one the saved login says the
    /// next run starts from.
    next_id: u64,
    id_floor: u64,
    /// For the jitter of the backoff (xorshift).
    rng: u64,
    out: VecDeque<Effect>,
}

impl Core {
    /// A client for the server at `addr`; `now` gives the time in Unix ms
    /// and `local` the local UTC offset, for the times shown.
    pub fn new(addr: impl Into<String>, now: fn() -> i64, local: session::LocalOffset) -> Core {
        Core {
            addr: addr.into(),
            now,
            local,
            screen: Screen::Busy,
            pending: None,
            connected: false,
            session: None,
            token: None,
            reconnect: None,
            outbox: Vec::new(),
            next_id: 1,
            id_floor: 0,
            rng: 0x9e37_79b9_7f4a_7c15,
            out: VecDeque::new(),
        }
    }

    /// The resume token saved for this server, if any, and the first
    /// client id its device may still use.
    pub fn with_token(mut self, token: Option<String>, next_id: u64) -> Core {
        self.token = token;
        self.next_id = next_id.max(1);
        self
    }

    /// Seeds the backoff's jitter (never 0).
    pub fn with_seed(mut self, seed: u64) -> Core {
        self.rng = seed | 1;
        self
    }

    fn random(&mut self) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }

    /// Begins, once the server was met: a resume with the saved token if
    /// there is one, else the start menu.
    pub fn start(&mut self) {
        self.say(Tone::Good, format!("Connected to {}.", self.addr));
        if self.token.is_some() {
            self.say(Tone::Dim, "Logging in with your saved login…");
            self.open(Pending::Resume);
        } else {
            self.start_menu();
        }
    }

    /// The next thing to do, if any.
    pub fn poll_effect(&mut self) -> Option<Effect> {
        self.out.pop_front()
    }

    /// The logged-in session, if there is one.
    pub fn session(&self) -> Option<&Session> {
        self.session.as_ref()
    }

    pub fn handle(&mut self, input: Input) {
        match input {
            Input::User(u) if self.reconnect.is_some() => self.on_user_offline(u),
            Input::User(u) => self.on_user(u),
            Input::Net(n) => self.on_net(n),
            Input::Timer => self.on_timer(),
        }
    }

    // ---- effects ----

    fn emit(&mut self, e: Effect) {
        self.out.push_back(e);
    }

    fn show(&mut self, lines: Vec<Line>) {
        if !lines.is_empty() {
            self.emit(Effect::Show(lines));
        }
    }

    fn line(&mut self, line: Line) {
        self.show(vec![line]);
    }

    fn say(&mut self, tone: Tone, text: impl Into<String>) {
        self.line(Line::of(tone, text));
    }

    fn error(&mut self, message: &str) {
        self.line(error_line(message));
    }

    fn ask(&mut self, screen: Screen, ask: Ask) {
        self.screen = screen;
        self.emit(Effect::Ask(ask));
    }

    fn ask_line(&mut self, screen: Screen, label: &str) {
        let ask = Ask::Line {
            label: label.to_string(),
            chat: false,
        };
        self.ask(screen, ask);
    }

    fn call(&mut self, pending: Pending, req: Request) {
        self.screen = Screen::Busy;
        self.pending = Some(pending);
        self.emit(Effect::Call(req));
    }

    fn open(&mut self, pending: Pending) {
        self.screen = Screen::Busy;
        self.pending = Some(pending);
        self.emit(Effect::Open);
    }

    fn forget_token(&mut self) {
        if self.token.take().is_some() {
            self.emit(Effect::ForgetToken);
        }
    }

    fn close(&mut self) {
        if self.connected {
            self.connected = false;
            self.emit(Effect::Close);
        }
    }

    // ---- before login ----

    fn start_menu(&mut self) {
        self.close();
        self.session = None;
        let items = vec![
            Item::new(Choice::Start(StartChoice::LogIn), "Log in"),
            Item::new(
                Choice::Start(StartChoice::CreateAccount),
                "Create an account",
            ),
            Item::new(Choice::Start(StartChoice::Quit), "Quit"),
        ];
        let prompt = "What would you like to do?".to_string();
        self.ask(Screen::Start, Ask::Pick { prompt, items });
    }

    fn ask_name(&mut self, screen: Screen, initial: &str) {
        let ask = Ask::Text {
            prompt: "User name".to_string(),
            initial: initial.to_string(),
        };
        self.ask(screen, ask);
    }

    fn ask_secret(&mut self, screen: Screen, prompt: &str) {
        let prompt = prompt.to_string();
        self.ask(screen, Ask::Secret { prompt });
    }

    fn quit(&mut self) {
        self.close();
        self.say(Tone::Dim, "Bye.");
        self.screen = Screen::Busy;
        self.emit(Effect::Quit);
    }

    fn on_start(&mut self, input: UserInput) {
        match input {
            UserInput::Chose(Choice::Start(StartChoice::LogIn)) => {
                self.show(vec![
                    Line::of(Tone::Heading, "Log in"),
                    Line::of(Tone::Dim, "Leave the name empty to go back."),
                ]);
                self.ask_name(Screen::LoginName, "");
            }
            UserInput::Chose(Choice::Start(StartChoice::CreateAccount)) => {
                self.show(vec![
                    Line::of(Tone::Heading, "Create an account"),
                    Line::of(Tone::Dim, session::NAME_RULE),
                    Line::of(Tone::Dim, password::STANDARD),
                    Line::of(Tone::Dim, "Leave the name empty to go back."),
                ]);
                self.ask_name(Screen::NewName, "");
            }
            _ => self.quit(),
        }
    }

    fn on_login_name(&mut self, input: UserInput) {
        match input {
            UserInput::Text(name) if !name.trim().is_empty() => {
                let name = name.trim().to_string();
                self.ask_secret(Screen::LoginPassword { name }, "Password");
            }
            _ => self.start_menu(),
        }
    }

    fn on_login_password(&mut self, name: String, input: UserInput) {
        match input {
            UserInput::Text(password) if password.is_empty() => {
                self.error("type your password, or leave the name empty to go back");
                self.ask_name(Screen::LoginName, &name);
            }
            UserInput::Text(password) => {
                self.say(Tone::Dim, "Checking…");
                self.open(Pending::Login { name, password });
            }
            _ => self.start_menu(),
        }
    }

    fn on_new_name(&mut self, input: UserInput) {
        let name = match input {
            UserInput::Text(name) if !name.trim().is_empty() => name.trim().to_string(),
            _ => return self.start_menu(),
        };
        if let Err(e) = model::check_user_name(&name) {
            self.error(&e.to_string());
            return self.ask_name(Screen::NewName, "");
        }
        // Before any password is typed: a taken name is said at once.
        self.open(Pending::NameCheck { name });
    }

    fn on_new_password(&mut self, name: String, input: UserInput) {
        let UserInput::Text(first) = input else {
            return self.start_menu();
        };
        if let Err(e) = password::check(&name, &first) {
            self.error(&e.to_string());
            return self.ask_secret(Screen::NewPassword { name }, "Password");
        }
        self.ask_secret(Screen::NewPasswordAgain { name, first }, "Password again");
    }

    fn on_new_password_again(&mut self, name: String, first: String, input: UserInput) {
        let UserInput::Text(second) = input else {
            return self.start_menu();
        };
        if second != first {
            self.error("the two passwords differ: type the password twice again");
            return self.ask_secret(Screen::NewPassword { name }, "Password");
        }
        self.say(Tone::Dim, "Creating the account…");
        self.open(Pending::Register {
            name,
            password: first,
        });
    }

    fn on_reconnect(&mut self, input: UserInput) {
        match input {
            UserInput::Confirmed(true) => self.open(Pending::Reconnect),
            _ => self.quit(),
        }
    }

    fn ask_reconnect(&mut self) {
        let ask = Ask::Confirm {
            prompt: format!("Reconnect to {}?", self.addr),
            default: true,
        };
        self.ask(Screen::Reconnect, ask);
    }

    fn logged_in(&mut self, name: String, unread: u32, token: String, welcome: String) {
        self.token = Some(token);
        self.save_login();
        self.say(Tone::Good, welcome);
        self.session = Some(Session::new(name, unread, self.local));
        self.enter_menu();
    }

    // ---- the network ----

    fn on_net(&mut self, input: NetInput) {
        match input {
            NetInput::Opened if self.reconnect.is_some() => {
                self.connected = true;
                let token = self.token.clone().unwrap_or_default();
                let screen = std::mem::replace(&mut self.screen, Screen::Busy);
                self.call(Pending::Back { screen }, Request::Resume { token });
            }
            NetInput::Opened => {
                self.connected = true;
                self.on_opened();
            }
            NetInput::OpenFailed(_) if self.reconnect.is_some() => self.next_attempt(),
            NetInput::OpenFailed(why) => {
                self.pending = None;
                self.error(&why);
                self.ask_reconnect();
            }
            NetInput::Reply(reply) => match self.pending.take() {
                Some(pending) => self.on_reply(pending, reply),
                None => self.on_answer(0, reply),
            },
            NetInput::Answer { client_id, reply } => self.on_answer(client_id, reply),
            NetInput::Event(event) => self.on_event(event),
            NetInput::Lost(why) => self.on_lost(why),
        }
    }

    fn on_opened(&mut self) {
        let req = match self.pending.clone() {
            Some(Pending::Resume) => match self.token.clone() {
                Some(token) => Request::Resume { token },
                None => return self.start_menu(),
            },
            Some(Pending::Reconnect) if self.token.is_some() => {
                // The server answers again: pick the session up with the
                // saved login, on this connection.
                self.say(Tone::Good, format!("{} answers again.", self.addr));
                self.pending = Some(Pending::Resume);
                let token = self.token.clone().unwrap_or_default();
                Request::Resume { token }
            }
            Some(Pending::Login { name, password }) => Request::Login { name, password },
            Some(Pending::NameCheck { name }) => Request::Register {
                name,
                password: String::new(),
            },
            Some(Pending::Register { name, password }) => Request::Register { name, password },
            Some(Pending::Reconnect) => {
                // That connection only showed that the server answers; the
                // next one opens when a login is ready to send.
                self.pending = None;
                self.close();
                self.say(Tone::Good, format!("{} answers again.", self.addr));
                return self.start_menu();
            }
            _ => return,
        };
        self.emit(Effect::Call(req));
    }

    /// The connection is gone: a session that can be resumed reconnects by
    /// itself; otherwise say why and offer to reconnect.
    fn on_lost(&mut self, why: Lost) {
        let resumable = !matches!(why, Lost::Bye { resume: false, .. });
        if resumable && self.session.is_some() && self.token.is_some() {
            return self.lose_connection(why);
        }
        if self.reconnect.take().is_some() {
            self.emit(Effect::Banner(None));
        }
        self.drop_outbox("the session ended");
        if !resumable {
            // Replaced or revoked: the token is someone else's now (or
            // nobody's), so it must not be presented again; the file may
            // already hold the newer one.
            self.token = None;
        }
        let text = match why {
            Lost::Bye { reason, .. } => {
                format!("The server ended the session: {}.", session::clean(&reason))
            }
            Lost::Closed(why) => format!("The connection to the server was lost: {why}."),
            Lost::Timeout => {
                "The server did not answer in time; the connection is given up.".to_string()
            }
        };
        self.pending = None;
        self.connected = false;
        self.session = None;
        self.emit(Effect::Close);
        self.line(Line::of(Tone::Error, text));
        self.ask_reconnect();
    }

    /// The answer to a request sent without waiting (`say`,
    /// `send_private`, `mark_read`): a message's answer takes it out of the
    /// outbox; only a refusal is worth showing.
    fn on_answer(&mut self, client_id: u64, reply: Reply) {
        if client_id != 0 {
            self.outbox.retain(|o| o.id != client_id);
        }
        if let Reply::Error { message, .. } = reply {
            self.error(&message);
        }
    }

    fn on_event(&mut self, event: Event) {
        let Some(s) = self.session.as_mut() else {
            if let Event::Bye { reason, resume } = event {
                self.on_lost(Lost::Bye { reason, resume });
            }
            return;
        };
        let shown = s.on_event(event);
        let status = s.room_status();
        if let Next::Disconnected { reason, resume } = shown.next {
            return self.on_lost(Lost::Bye { reason, resume });
        }
        self.show(shown.lines);
        if let Some(with) = shown.mark_read {
            self.emit(Effect::Send(Request::MarkRead { with }));
        }
        match (&self.screen, shown.next) {
            (Screen::Room, Next::ToMenu) => self.enter_menu(),
            (Screen::Room, _) => self.emit(Effect::Status(status)),
            // The header counts unread messages: draw it again.
            (Screen::Menu, _) => self.ask_main_menu(),
            _ => {}
        }
    }

    fn on_reply(&mut self, pending: Pending, reply: Reply) {
        match pending {
            Pending::Resume => match reply {
                Reply::LoggedIn {
                    name,
                    unread,
                    token,
                    node,
                } => {
                    let welcome = on_node(format!("Welcome back, {name}."), node);
                    self.logged_in(name, unread, token, welcome);
                }
                other => {
                    self.forget_token();
                    self.refused(&other);
                    self.start_menu();
                }
            },
            Pending::Login { name, .. } => match reply {
                Reply::LoggedIn {
                    name,
                    unread,
                    token,
                    node,
                } => {
                    let welcome = on_node(format!("Welcome back, {name}."), node);
                    self.logged_in(name, unread, token, welcome);
                }
                other => {
                    self.refused(&other);
                    self.close();
                    self.ask_name(Screen::LoginName, &name);
                }
            },
            Pending::NameCheck { name } => {
                self.close();
                match reply {
                    Reply::Error {
                        code: ErrorCode::WeakPassword,
                        ..
                    } => self.ask_secret(Screen::NewPassword { name }, "Password"),
                    Reply::Error {
                        code: ErrorCode::NameTaken | ErrorCode::InvalidName,
                        message,
                    } => {
                        self.error(&format!("{message}: choose another name"));
                        self.ask_name(Screen::NewName, "");
                    }
                    other => {
                        self.refused(&other);
                        self.start_menu();
                    }
                }
            }
            Pending::Register { name, .. } => match reply {
                Reply::LoggedIn {
                    name,
                    unread,
                    token,
                    node,
                } => {
                    let welcome = on_node(format!("Welcome, {name}: your account is ready."), node);
                    self.logged_in(name, unread, token, welcome);
                }
                Reply::Error {
                    code: ErrorCode::NameTaken | ErrorCode::InvalidName,
                    message,
                } => {
                    // Taken since it was checked. A new name gets its own
                    // passwords: the standard depends on the name.
                    self.close();
                    self.error(&format!("{message}: choose another name"));
                    self.ask_name(Screen::NewName, "");
                }
                Reply::Error {
                    code: ErrorCode::WeakPassword,
                    message,
                } => {
                    self.close();
                    self.error(&message);
                    self.ask_secret(Screen::NewPassword { name }, "Password");
                }
                other => {
                    self.close();
                    self.refused(&other);
                    self.start_menu();
                }
            },
            Pending::Reconnect => {}
            Pending::Back { screen } => match reply {
                Reply::LoggedIn {
                    unread,
                    token,
                    node,
                    ..
                } => {
                    self.token = Some(token);
                    self.save_login();
                    self.reconnect = None;
                    self.emit(Effect::Banner(None));
                    self.say(Tone::Good, on_node("Connected again.".into(), node));
                    if let Some(s) = self.session.as_mut() {
                        s.set_unread(unread);
                    }
                    self.restore(screen);
                }
                other => {
                    self.reconnect = None;
                    self.emit(Effect::Banner(None));
                    self.forget_token();
                    self.refused(&other);
                    self.drop_outbox("the saved login was refused");
                    self.say(Tone::Dim, "Log in again to go on.");
                    self.start_menu();
                }
            },
            Pending::Rejoin { screen } => match reply {
                Reply::Room { room, members, .. } => {
                    let Some(s) = self.session.as_mut() else {
                        return;
                    };
                    let of = Topic::Room { room: room.id };
                    s.rejoined(room, members);
                    let status = s.room_status();
                    self.emit(Effect::Status(status));
                    self.catch_up(screen, of);
                }
                other => {
                    let Some(s) = self.session.as_mut() else {
                        return;
                    };
                    s.to_menu();
                    if let Reply::Error { message, .. } = &other {
                        self.error(&format!("you are no longer in the room: {message}"));
                    } else {
                        self.refused(&other);
                    }
                    self.flush_outbox();
                    self.enter_menu();
                }
            },
            Pending::CatchUp { screen } => {
                self.screen = screen;
                let Some(s) = self.session.as_mut() else {
                    return;
                };
                match reply {
                    Reply::RoomCaughtUp {
                        skipped, history, ..
                    } => {
                        let lines = s.caught_up_room(skipped, &history);
                        let status = s.room_status();
                        self.show(lines);
                        self.emit(Effect::Status(status));
                    }
                    Reply::DialogueCaughtUp {
                        with,
                        skipped,
                        history,
                    } => {
                        let (lines, from_them) = s.caught_up_chat(skipped, &history);
                        self.show(lines);
                        if from_them {
                            self.emit(Effect::Send(Request::MarkRead { with }));
                        }
                    }
                    other => self.refused(&other),
                }
                self.flush_outbox();
            }
            Pending::Unread => {
                if let (Reply::Inbox { conversations }, Some(s)) = (&reply, &mut self.session) {
                    s.set_unread(conversations.iter().map(|c| c.unread).sum());
                }
                self.ask_main_menu();
            }
            Pending::CreateRoom { name } => match reply {
                Reply::Room {
                    room,
                    members,
                    history,
                } => self.enter_room(room, members, &history),
                Reply::Error {
                    code: ErrorCode::RoomNameTaken | ErrorCode::InvalidName,
                    message,
                } => {
                    self.error(&message);
                    self.ask_line(Screen::RoomName, "Room name: ");
                }
                Reply::Error {
                    code: ErrorCode::InvalidCapacity,
                    message,
                } => {
                    self.error(&message);
                    self.ask_capacity(name);
                }
                other => {
                    self.refused(&other);
                    self.enter_menu();
                }
            },
            Pending::Join => match reply {
                Reply::Room {
                    room,
                    members,
                    history,
                } => self.enter_room(room, members, &history),
                other => {
                    self.refused(&other);
                    self.enter_menu();
                }
            },
            Pending::Leave => {
                let Some(s) = self.session.as_mut() else {
                    return;
                };
                let line = match reply {
                    Reply::Error { message, .. } => {
                        s.to_menu();
                        error_line(&message)
                    }
                    _ => s.left_room(),
                };
                self.line(line);
                self.enter_menu();
            }
            Pending::Members => {
                self.screen = Screen::Room;
                let Some(s) = self.session.as_mut() else {
                    return;
                };
                match reply {
                    Reply::Members { members } => {
                        let line = s.set_members(members);
                        let status = s.room_status();
                        self.line(line);
                        self.emit(Effect::Status(status));
                    }
                    other => self.refused(&other),
                }
            }
            Pending::More { back } => {
                self.screen = back;
                let Some(s) = self.session.as_mut() else {
                    return;
                };
                let lines = match reply {
                    Reply::RoomHistory { history, .. } => s.earlier_room(&history),
                    Reply::Dialogue { history, .. } => s.earlier_chat(&history),
                    other => return self.refused(&other),
                };
                self.show(lines);
            }
            Pending::Kick => {
                // Success shows as the "was kicked out" notice that follows.
                if let Reply::Error { message, .. } = reply {
                    self.error(&message);
                }
                self.screen = Screen::Room;
            }
            Pending::OpenChat { exit } => match reply {
                Reply::Dialogue { with, history } => self.enter_chat(&with, &history, exit),
                Reply::Error { message, .. } => {
                    self.error(&message);
                    match exit {
                        ChatExit::Menu => self.ask_compose(),
                        ChatExit::Inbox => self.open_inbox(),
                    }
                }
                other => {
                    self.refused(&other);
                    self.enter_menu();
                }
            },
            Pending::Inbox => match reply {
                Reply::Inbox { conversations } => self.show_inbox(&conversations),
                other => {
                    self.refused(&other);
                    self.enter_menu();
                }
            },
            Pending::Logout => {
                let me = self.session.as_ref().map(|s| s.me().to_string());
                match reply {
                    Reply::Error { message, .. } => self.error(&message),
                    _ => self.say(
                        Tone::Good,
                        format!("{} logged out.", me.unwrap_or_default()),
                    ),
                }
                self.start_menu();
            }
        }
    }

    /// Shows a refusal in the server's words, or an answer that makes no
    /// sense here.
    fn refused(&mut self, reply: &Reply) {
        match reply {
            Reply::Error { message, .. } => self.error(message),
            other => self.error(&format!("the server gave an unexpected answer ({other:?})")),
        }
    }

    // ---- after login ----

    /// The main menu, with the unread count fresh from the server's inbox.
    fn enter_menu(&mut self) {
        self.call(Pending::Unread, Request::Inbox);
    }

    fn ask_main_menu(&mut self) {
        let Some(s) = &self.session else {
            return self.start_menu();
        };
        let labels = s.menu_items();
        let choices = [
            MainChoice::CreateRoom,
            MainChoice::JoinRoom,
            MainChoice::Compose,
            MainChoice::Inbox,
            MainChoice::LogOut,
        ];
        let items = choices
            .into_iter()
            .zip(labels)
            .map(|(c, label)| Item::new(Choice::Main(c), label))
            .collect();
        let ask = Ask::Menu {
            kind: MenuKind::Main,
            title: vec![Line::new(), s.menu_header()],
            items,
            hint: format!("{MENU_HINT} · -in opens your private chats"),
            inbox_shortcut: true,
        };
        self.ask(Screen::Menu, ask);
    }

    fn on_menu(&mut self, input: UserInput) {
        let choice = match input {
            UserInput::Chose(Choice::Main(c)) => c,
            UserInput::InboxShortcut => MainChoice::Inbox,
            // Esc at the main menu goes nowhere.
            _ => return,
        };
        let index = choice as usize;
        if let Some(label) = self.session.as_ref().map(|s| s.menu_items()[index].clone()) {
            self.say(Tone::Dim, format!("Main menu › {label}"));
        }
        match choice {
            MainChoice::CreateRoom => {
                self.say(
                    Tone::Dim,
                    "Name the room (1 to 50 characters). Esc or an empty name goes back.",
                );
                self.ask_line(Screen::RoomName, "Room name: ");
            }
            MainChoice::JoinRoom => self.ask_line(
                Screen::RoomNumber,
                "Room number (like #12; Esc goes back): ",
            ),
            MainChoice::Compose => self.ask_compose(),
            MainChoice::Inbox => self.open_inbox(),
            MainChoice::LogOut => {
                // Forgotten here whatever the server says: logging out
                // means no saved login is left behind.
                self.forget_token();
                self.call(Pending::Logout, Request::Logout)
            }
        }
    }

    fn on_room_name(&mut self, input: UserInput) {
        let name = match input {
            UserInput::Text(n) if !n.trim().is_empty() => n.trim().to_string(),
            _ => return self.enter_menu(),
        };
        if let Err(e) = model::check_room_name(&name) {
            self.error(&e.to_string());
            return self.ask_line(Screen::RoomName, "Room name: ");
        }
        self.ask_capacity(name);
    }

    fn ask_capacity(&mut self, name: String) {
        let label = format!(
            "Most participants, {} to {} [{DEFAULT_CAPACITY}]: ",
            model::MIN_CAPACITY,
            model::MAX_CAPACITY
        );
        self.ask_line(Screen::RoomCapacity { name }, &label);
    }

    fn on_room_capacity(&mut self, name: String, input: UserInput) {
        let UserInput::Text(typed) = input else {
            return self.enter_menu();
        };
        match session::parse_capacity(&typed, DEFAULT_CAPACITY) {
            Ok(capacity) => self.call(
                Pending::CreateRoom { name: name.clone() },
                Request::CreateRoom { name, capacity },
            ),
            Err(e) => {
                self.error(&e);
                self.ask_capacity(name);
            }
        }
    }

    fn on_room_number(&mut self, input: UserInput) {
        let typed = match input {
            UserInput::Text(t) if !t.trim().is_empty() => t,
            _ => return self.enter_menu(),
        };
        match session::parse_room_id(&typed) {
            Ok(room) => self.call(Pending::Join, Request::JoinRoom { room }),
            Err(e) => {
                self.error(&e);
                self.enter_menu();
            }
        }
    }

    fn enter_room(
        &mut self,
        room: crate::wire::msg::RoomInfo,
        members: Vec<String>,
        history: &[crate::wire::msg::RoomLine],
    ) {
        let Some(s) = self.session.as_mut() else {
            return;
        };
        let top = s.enter_room(room, members, history);
        let status = s.room_status();
        self.emit(Effect::ClearScreen);
        self.show(top);
        let ask = Ask::Line {
            label: "> ".to_string(),
            chat: true,
        };
        self.ask(Screen::Room, ask);
        self.emit(Effect::Status(status));
    }

    fn on_room(&mut self, input: UserInput) {
        let text = match input {
            UserInput::Text(text) => text,
            UserInput::Eof => "/q".to_string(),
            UserInput::PageUp => return self.more(Screen::Room),
            _ => {
                return self.say(
                    Tone::Dim,
                    "Type /q to leave the room, /help for the commands.",
                );
            }
        };
        match session::parse_room_input(&text) {
            Command::Say(text) => self.send_message(text),
            Command::Quit => self.call(Pending::Leave, Request::LeaveRoom),
            Command::List => self.call(Pending::Members, Request::Members),
            Command::Kick(name) => self.call(Pending::Kick, Request::Kick { name }),
            Command::More => self.more(Screen::Room),
            Command::Help => self.show(session::room_help()),
            Command::Nothing => {}
            Command::Refused(line) => self.line(line),
        }
    }

    /// Asks for the page before what the screen shows, unless it shows
    /// the beginning already.
    fn more(&mut self, back: Screen) {
        match self.session.as_ref().and_then(Session::more_request) {
            Some(req) => self.call(Pending::More { back }, req),
            None => self.say(Tone::Dim, "No earlier messages: that is the beginning."),
        }
    }

    fn ask_compose(&mut self) {
        self.ask_line(Screen::ComposeTo, "Write to (a user name; Esc goes back): ");
    }

    fn on_compose(&mut self, input: UserInput) {
        match input {
            UserInput::Text(name) if !name.trim().is_empty() => {
                let with = name.trim().to_string();
                let pending = Pending::OpenChat {
                    exit: ChatExit::Menu,
                };
                self.call(pending, Request::OpenDialogue { with });
            }
            _ => self.enter_menu(),
        }
    }

    fn enter_chat(&mut self, with: &str, history: &[PrivateLine], exit: ChatExit) {
        let Some(s) = self.session.as_mut() else {
            return;
        };
        let top = s.enter_chat_from(with, history, exit);
        self.emit(Effect::ClearScreen);
        self.show(top);
        let ask = Ask::Line {
            label: "> ".to_string(),
            chat: true,
        };
        let with = with.to_string();
        self.ask(Screen::Chat { with, exit }, ask);
    }

    fn on_chat(&mut self, with: String, exit: ChatExit, input: UserInput) {
        let text = match input {
            UserInput::Text(text) => text,
            UserInput::PageUp => return self.more(Screen::Chat { with, exit }),
            _ => "/q".to_string(),
        };
        match session::parse_chat_input(&text) {
            Command::Say(text) => self.send_message(text),
            Command::Quit => {
                if let Some(s) = self.session.as_mut() {
                    s.to_menu();
                }
                self.say(Tone::Dim, format!("Left the private chat with {with}."));
                match exit {
                    ChatExit::Menu => self.enter_menu(),
                    ChatExit::Inbox => self.open_inbox(),
                }
            }
            Command::More => self.more(Screen::Chat { with, exit }),
            Command::Help => self.show(session::chat_help_to(&with, exit)),
            Command::Refused(line) => self.line(line),
            Command::Nothing | Command::List | Command::Kick(_) => {}
        }
    }

    fn open_inbox(&mut self) {
        self.call(Pending::Inbox, Request::Inbox);
    }

    fn show_inbox(&mut self, conversations: &[Conversation]) {
        let Some(s) = self.session.as_mut() else {
            return;
        };
        s.set_unread(conversations.iter().map(|c| c.unread).sum());
        if conversations.is_empty() {
            self.say(
                Tone::Dim,
                "No private chats yet: choose 3 (Compose a private message) to start one.",
            );
            return self.enter_menu();
        }
        let labels = s.inbox_items(conversations, (self.now)());
        let mut items: Vec<Item> = conversations
            .iter()
            .zip(labels)
            .map(|(c, label)| Item::new(Choice::Open(c.with.clone()), label))
            .collect();
        items.push(Item::new(Choice::Back, "Back to the main menu"));
        let ask = Ask::Menu {
            kind: MenuKind::Inbox,
            title: vec![
                Line::new(),
                Line::of(Tone::Heading, "Private chats, newest first"),
            ],
            items,
            hint: format!("{MENU_HINT} · Esc goes back"),
            inbox_shortcut: false,
        };
        self.ask(Screen::Inbox, ask);
    }

    fn on_inbox(&mut self, input: UserInput) {
        match input {
            UserInput::Chose(Choice::Open(with)) => {
                let pending = Pending::OpenChat {
                    exit: ChatExit::Inbox,
                };
                self.call(pending, Request::OpenDialogue { with });
            }
            _ => self.enter_menu(),
        }
    }

    fn on_user(&mut self, input: UserInput) {
        match std::mem::replace(&mut self.screen, Screen::Busy) {
            Screen::Start => self.on_start(input),
            Screen::LoginName => self.on_login_name(input),
            Screen::LoginPassword { name } => self.on_login_password(name, input),
            Screen::NewName => self.on_new_name(input),
            Screen::NewPassword { name } => self.on_new_password(name, input),
            Screen::NewPasswordAgain { name, first } => {
                self.on_new_password_again(name, first, input)
            }
            Screen::Reconnect => self.on_reconnect(input),
            Screen::Menu => {
                self.screen = Screen::Menu;
                self.on_menu(input);
            }
            Screen::RoomName => self.on_room_name(input),
            Screen::RoomCapacity { name } => self.on_room_capacity(name, input),
            Screen::RoomNumber => self.on_room_number(input),
            Screen::Room => {
                self.screen = Screen::Room;
                self.on_room(input);
            }
            Screen::ComposeTo => self.on_compose(input),
            Screen::Chat { with, exit } => {
                self.screen = Screen::Chat {
                    with: with.clone(),
                    exit,
                };
                self.on_chat(with, exit, input);
            }
            Screen::Inbox => self.on_inbox(input),
            // Nothing was asked; the driver does not get here.
            Screen::Busy => {}
        }
    }
}

mod reconnect;
#[cfg(test)]
mod tests;
