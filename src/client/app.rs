//! The client's driver: it pumps events between the flow
//! ([`super::core`], which decides what happens next), the terminal
//! ([`super::ui`], which draws and reads keys) and the network
//! ([`super::link`] and [`super::proto`]). It also meets the server: opens
//! connections and checks the server's key against the known-servers file
//! before anything is sent.

use super::ConnectArgs;
use super::core::{Ask, Core, Effect, Input as CoreInput, Lost, MenuKind, NetInput, UserInput};
use super::editor::LineBuffer;
use super::link::{CallError, Link, NetEvent};
use super::proto::{self, ClientError, Connection, Unverified};
use super::session::{Line, Tone};
use super::tokens::{Saved, SavedLogins};
use super::trust::TrustError;
use super::trust::{KnownServers, Verdict};
use super::ui::{self, Input, Menu, Mode, Pick, Terminal};
use crate::wire::msg::{Event, Request};
use std::collections::HashMap;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, TryRecvError};
use std::time::{Duration, Instant};

/// How long an ordinary request may take.
const CALL: Duration = Duration::from_secs(15);
/// Login and registration run scrypt and may be slowed after failures
/// (a resume too may be held back after failures from the address).
const AUTH_CALL: Duration = Duration::from_secs(60);

/// Why the client could not go on: each says what went wrong and, where
/// the person can do something about it, what.
#[derive(Debug)]
pub enum Error {
    /// No place for the known-servers file.
    NoConfigDir,
    /// The server could not be reached or spoke no chatapp.
    Connect(ClientError),
    /// The known-servers file could not be read or written.
    Trust(TrustError),
    /// The server's key differs from the one remembered for it.
    KeyChanged {
        addr: String,
        remembered: String,
        shown: String,
        known: PathBuf,
    },
    /// A server not met before, and no terminal to ask about it.
    UnknownServer {
        addr: String,
        fingerprint: String,
    },
    /// The person chose not to trust the server.
    NotTrusted {
        addr: String,
    },
    /// Ctrl-C at the question whether to trust the server.
    Interrupted,
    /// Standard input or output is not a terminal.
    NeedsTerminal {
        addr: String,
    },
    Terminal(io::Error),
    /// A state the client should never be in.
    Bug(&'static str),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NoConfigDir => write!(
                f,
                "cannot find a configuration directory for the known-servers file: set {} to one",
                super::trust::CONFIG_DIR_ENV
            ),
            // The connection's and the file's own errors say it all.
            Error::Connect(e) => e.fmt(f),
            Error::Trust(e) => e.fmt(f),
            Error::KeyChanged {
                addr,
                remembered,
                shown,
                known,
            } => write!(
                f,
                "refusing {addr}: its key has changed since you first trusted it\n  \
                 remembered key: {remembered}\n  \
                 key shown now:  {shown}\n\
                 Someone may be impersonating the server, or its operator gave it a new key. \
                 Nothing was sent to it: no name, no password.\n\
                 If the operator confirms the new key, delete the line for {addr} in {} and connect again.",
                known.display()
            ),
            Error::UnknownServer { addr, fingerprint } => write!(
                f,
                "refusing {addr}: it is not a known server (its key is {fingerprint}) and there is no terminal to ask whether to trust it. \
                 Connect once from a terminal, or pass --accept-new-server to trust it without asking"
            ),
            Error::NotTrusted { addr } => {
                write!(f, "you did not trust {addr}: nothing was sent to it")
            }
            Error::Interrupted => f.write_str("interrupted"),
            Error::NeedsTerminal { addr } => write!(
                f,
                "the chat client needs a terminal: run `chatapp connect {addr}` in one"
            ),
            Error::Terminal(_) => f.write_str("the terminal failed"),
            Error::Bug(what) => f.write_str(what),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Terminal(e) => Some(e),
            // Shown as this error's own text above: not again as a cause.
            _ => None,
        }
    }
}

/// Why the client stopped before the person quit.
#[derive(Debug)]
enum Stop {
    /// Ctrl-C.
    Interrupted,
    Fatal(Error),
}

impl From<io::Error> for Stop {
    fn from(e: io::Error) -> Stop {
        if e.kind() == io::ErrorKind::Interrupted {
            Stop::Interrupted
        } else {
            Stop::Fatal(Error::Terminal(e))
        }
    }
}

type Step<T = ()> = Result<T, Stop>;

/// Why a connection could not be opened.
enum OpenError {
    /// Unreachable, or not our protocol: worth another try later.
    Net(ClientError),
    /// The server is not trusted, or the trust file failed: never retried.
    Refused(Error),
}

/// The server this run talks to, and how to decide whether to trust it.
struct Target<'a> {
    addr: &'a str,
    args: &'a ConnectArgs,
    known: &'a Path,
}

/// Runs the client until the user quits. Connection trouble at the start
/// is an error (a non-zero exit); later, the user is offered a reconnect.
pub fn run(args: ConnectArgs) -> Result<(), Error> {
    let addr = super::normalize_addr(&args.server());
    let Some(known) = super::trust::default_path() else {
        return Err(Error::NoConfigDir);
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
        Err(OpenError::Net(e)) => return Err(Stop::Fatal(Error::Connect(e))),
        Err(OpenError::Refused(e)) => return Err(Stop::Fatal(e)),
    }
    if !ui::is_interactive() {
        return Err(Stop::Fatal(Error::NeedsTerminal {
            addr: target.addr.to_string(),
        }));
    }
    // A saved-logins file that cannot be read costs only the saved login.
    let saved_path = SavedLogins::beside(target.known);
    let mut saved = match SavedLogins::load(&saved_path) {
        Ok(saved) => Some(saved),
        Err(e) => {
            term.show(&[Line::of(
                Tone::Error,
                format!("{e}; log in with your password"),
            )])?;
            None
        }
    };
    let login = saved.as_ref().and_then(|s| s.get(target.addr));
    let next_id = login.as_ref().map_or(1, |l| l.next_id);
    let mut core = Core::new(target.addr, super::now_millis, super::local_offset)
        .with_token(login.map(|l| l.token), next_id)
        .with_seed(rand::random());
    core.start();
    let mut driver = Driver {
        saved: saved.take(),
        ..Driver::default()
    };
    driver.run(term, target, &mut core)
}

/// What is on screen waiting for the person, and the network's end.
#[derive(Default)]
struct Driver {
    link: Option<Link>,
    ask: Option<Ask>,
    /// The live menu's highlight and typed text, kept while it is asked.
    menu: Option<(MenuKind, Menu)>,
    /// The line being typed, kept while the same question is asked.
    buf: LineBuffer,
    status: Option<Line>,
    /// The reconnect status, under whatever prompt is live.
    banner: Option<Line>,
    /// When the core's timer is due.
    deadline: Option<Instant>,
    /// A connection being opened in the background.
    dial: Option<Receiver<Result<Unverified, ClientError>>>,
    /// The client ids of the messages sent, by their link tags.
    acks: HashMap<u64, u64>,
    /// The saved-logins file, if it could be read.
    saved: Option<SavedLogins>,
}

/// What ended a wait for a key, other than a key.
enum Woke {
    Net(NetEvent),
    Dialed(Result<Unverified, ClientError>),
    Due,
}

impl Driver {
    fn run(&mut self, term: &mut Terminal, target: &Target, core: &mut Core) -> Step {
        loop {
            while let Some(effect) = core.poll_effect() {
                match effect {
                    Effect::Show(lines) => term.show(&lines)?,
                    Effect::ClearScreen => term.clear_screen()?,
                    Effect::Ask(ask) => self.set_ask(ask),
                    Effect::Status(status) => self.status = status,
                    Effect::Open => {
                        // Ctrl-C must work while a slow server is awaited.
                        term.wait_for_server()?;
                        self.link = None;
                        let opened = match open(term, target) {
                            Ok(conn) => {
                                self.link = Some(Link::start(conn));
                                NetInput::Opened
                            }
                            Err(OpenError::Net(e)) => NetInput::OpenFailed(e.to_string()),
                            Err(OpenError::Refused(e)) => return Err(Stop::Fatal(e)),
                        };
                        core.handle(CoreInput::Net(opened));
                    }
                    Effect::Dial => {
                        self.link = None;
                        self.dial = Some(dial(target.addr));
                    }
                    Effect::Timer(ms) => {
                        self.deadline = Some(Instant::now() + Duration::from_millis(ms));
                    }
                    Effect::Banner(banner) => self.banner = banner,
                    Effect::Call(req) => {
                        let answer = self.call(req);
                        core.handle(CoreInput::Net(answer));
                    }
                    Effect::Send(req) => {
                        let client_id = match &req {
                            Request::Say { client_id, .. }
                            | Request::SendPrivate { client_id, .. } => *client_id,
                            _ => 0,
                        };
                        if let Some(link) = self.link.as_mut() {
                            let tag = link.send(req);
                            if client_id != 0 {
                                self.acks.insert(tag, client_id);
                            }
                        }
                    }
                    Effect::Close => {
                        self.link = None;
                        self.acks.clear();
                    }
                    Effect::SaveToken { token, next_id } => {
                        let login = Saved { token, next_id };
                        let saved = self.saved.as_mut().map(|s| s.set(target.addr, login));
                        if let Some(Err(e)) = saved {
                            let why = format!("{e}: you will be asked for your password next time");
                            term.show(&[Line::of(Tone::Error, why)])?;
                        }
                    }
                    Effect::ForgetToken => {
                        let forgot = self.saved.as_mut().map(|s| s.forget(target.addr));
                        if let Some(Err(e)) = forgot {
                            let path = self.saved.as_ref().map(|s| s.path().display().to_string());
                            let why = format!(
                                "{e}: delete the line for {} in {} by hand",
                                target.addr,
                                path.unwrap_or_default()
                            );
                            term.show(&[Line::of(Tone::Error, why)])?;
                        }
                    }
                    Effect::Quit => return Ok(()),
                }
            }
            let input = self.read(term)?;
            let input = match input {
                Read::Input(input) => input,
                Read::Woke(Woke::Net(ev)) => CoreInput::Net(self.net_input(ev)),
                Read::Woke(Woke::Due) => {
                    self.deadline = None;
                    CoreInput::Timer
                }
                Read::Woke(Woke::Dialed(result)) => {
                    self.dial = None;
                    let opened = match result.map(|u| verify(term, target, u)) {
                        Ok(Ok(conn)) => {
                            self.link = Some(Link::start(conn));
                            NetInput::Opened
                        }
                        Ok(Err(OpenError::Refused(e))) => return Err(Stop::Fatal(e)),
                        Ok(Err(OpenError::Net(e))) | Err(e) => NetInput::OpenFailed(e.to_string()),
                    };
                    CoreInput::Net(opened)
                }
            };
            core.handle(input);
        }
    }

    /// What the network thread passed on, for the core.
    fn net_input(&mut self, ev: NetEvent) -> NetInput {
        match ev {
            NetEvent::Event(event) => NetInput::Event(event),
            // Calls are answered in `Driver::call`; any other reply answers
            // a request sent without waiting.
            NetEvent::Reply { tag, reply } => NetInput::Answer {
                client_id: self.acks.remove(&tag).unwrap_or(0),
                reply,
            },
            NetEvent::Lost(why) => NetInput::Lost(Lost::Closed(why)),
        }
    }

    /// A new question; the same live menu asked again keeps its state.
    fn set_ask(&mut self, ask: Ask) {
        self.status = None;
        self.buf = LineBuffer::new();
        if let Ask::Menu {
            kind,
            title,
            items,
            hint,
            inbox_shortcut,
        } = &ask
        {
            let labels: Vec<String> = items.iter().map(|i| i.label.clone()).collect();
            match &mut self.menu {
                Some((k, menu)) if k == kind && self.ask.as_ref().is_some_and(is_menu) => {
                    menu.title = title.clone();
                    menu.items = labels;
                }
                _ => {
                    let mut menu = Menu::new(title.clone(), labels, hint.clone());
                    menu.inbox_shortcut = *inbox_shortcut;
                    self.menu = Some((*kind, menu));
                }
            }
        } else {
            self.menu = None;
        }
        self.ask = Some(ask);
    }

    /// A request and its reply, or why there is none.
    fn call(&mut self, req: Request) -> NetInput {
        let wait = match req {
            Request::Login { .. } | Request::Register { .. } | Request::Resume { .. } => AUTH_CALL,
            _ => CALL,
        };
        let Some(link) = self.link.as_mut() else {
            return NetInput::Lost(Lost::Closed("not connected".to_string()));
        };
        match link.call(req, wait) {
            Ok(reply) => NetInput::Reply(reply),
            Err(CallError::Lost(why)) => {
                // A goodbye that came first says more than the closed socket.
                while let Some(ev) = link.next_event() {
                    if let NetEvent::Event(Event::Bye { reason, resume }) = ev {
                        return NetInput::Lost(Lost::Bye { reason, resume });
                    }
                }
                NetInput::Lost(Lost::Closed(why))
            }
            Err(CallError::Timeout) => NetInput::Lost(Lost::Timeout),
        }
    }

    /// Waits for the person's answer to the current question, or for
    /// something from the server, the dialer or the timer meanwhile.
    fn read(&mut self, term: &mut Terminal) -> Step<Read> {
        let Driver {
            link,
            ask,
            menu,
            buf,
            status,
            banner,
            deadline,
            dial,
            ..
        } = self;
        let mut wake = || -> Option<Woke> {
            if let Some(ev) = link.as_mut().and_then(Link::next_event) {
                return Some(Woke::Net(ev));
            }
            if let Some(rx) = dial.as_ref() {
                match rx.try_recv() {
                    Ok(result) => return Some(Woke::Dialed(result)),
                    Err(TryRecvError::Empty) => {}
                    Err(TryRecvError::Disconnected) => {
                        let why = "the connecting thread stopped".to_string();
                        return Some(Woke::Dialed(Err(ClientError::Lost(why))));
                    }
                }
            }
            deadline
                .is_some_and(|d| Instant::now() >= d)
                .then_some(Woke::Due)
        };
        let user = match ask.as_ref() {
            None => {
                return Err(Stop::Fatal(Error::Bug(
                    "the client is waiting for nothing (a bug)",
                )));
            }
            Some(Ask::Pick { prompt, items }) => {
                let labels: Vec<&str> = items.iter().map(|i| i.label.as_str()).collect();
                match term.select(prompt, &labels)? {
                    Some(i) => UserInput::Chose(items[i].choice.clone()),
                    None => UserInput::Cancel,
                }
            }
            Some(Ask::Text { prompt, initial }) => UserInput::Text(term.input(prompt, initial)?),
            Some(Ask::Secret { prompt }) => match term.secret(prompt)? {
                Some(text) => UserInput::Text(text),
                None => UserInput::Cancel,
            },
            Some(Ask::Confirm { prompt, default }) => {
                UserInput::Confirmed(term.confirm(prompt, *default)?)
            }
            Some(Ask::Menu { items, .. }) => {
                let Some((_, menu)) = menu.as_mut() else {
                    return Err(Stop::Fatal(Error::Bug("a menu without its state")));
                };
                match term.menu(menu, &mut wake, banner.as_ref())? {
                    Pick::Item(i) => UserInput::Chose(items[i].choice.clone()),
                    Pick::Inbox => UserInput::InboxShortcut,
                    Pick::Back => UserInput::Cancel,
                    Pick::Woken(woke) => return Ok(Read::Woke(woke)),
                    Pick::Interrupt => return Err(Stop::Interrupted),
                }
            }
            Some(Ask::Line { label, chat }) => {
                let mode = if *chat { Mode::Chat } else { Mode::Answer };
                // The reconnect status first; a room's own under its line.
                let status = banner.as_ref().or(status.as_ref().filter(|_| *chat));
                match term.read_line(label, buf, &mut wake, mode, status)? {
                    Input::Line(text) if *chat => UserInput::Text(text),
                    Input::Line(text) => UserInput::Text(text.trim().to_string()),
                    Input::Cancel => UserInput::Cancel,
                    Input::Eof => UserInput::Eof,
                    Input::PageUp => UserInput::PageUp,
                    Input::Interrupt => return Err(Stop::Interrupted),
                    Input::Woken(woke) => return Ok(Read::Woke(woke)),
                }
            }
        };
        Ok(Read::Input(CoreInput::User(user)))
    }
}

/// What a wait brought.
enum Read {
    Input(CoreInput),
    Woke(Woke),
}

fn is_menu(ask: &Ask) -> bool {
    matches!(ask, Ask::Menu { .. })
}

/// Connects and checks the server's key against the known-servers file.
/// Nothing is sent inside the channel until the key is trusted.
fn open(term: &mut Terminal, target: &Target) -> Result<Connection, OpenError> {
    let unverified = proto::connect(target.addr).map_err(OpenError::Net)?;
    verify(term, target, unverified)
}

/// Connects on a thread of its own, so the screen stays live meanwhile;
/// the result comes through the channel.
fn dial(addr: &str) -> Receiver<Result<Unverified, ClientError>> {
    let (tx, rx) = mpsc::channel();
    let addr = addr.to_string();
    // Should the thread not start, the sender goes with the closure: the
    // read loop sees the channel closed and counts a failed attempt.
    let _ = std::thread::Builder::new()
        .name("chatapp-dial".into())
        .spawn(move || {
            let _ = tx.send(proto::connect(&addr));
        });
    rx
}

/// Checks a new connection's server key against the known-servers file.
fn verify(
    term: &mut Terminal,
    target: &Target,
    unverified: Unverified,
) -> Result<Connection, OpenError> {
    let Target { addr, args, known } = *target;
    let fingerprint = unverified.fingerprint();
    let refused = OpenError::Refused;
    let trust = |e| OpenError::Refused(Error::Trust(e));
    let mut known = KnownServers::load(known).map_err(trust)?;
    match known.check(addr, &fingerprint) {
        Verdict::Known => {}
        Verdict::Changed { remembered } => {
            return Err(refused(Error::KeyChanged {
                addr: addr.to_string(),
                remembered,
                shown: fingerprint,
                known: known.path().to_path_buf(),
            }));
        }
        Verdict::Unknown if args.accept_new_server => {
            known.remember(addr, &fingerprint).map_err(trust)?;
            let _ = term.say(
                Tone::Notice,
                format!(
                    "Trusting the new server {addr} (key {fingerprint}) as --accept-new-server asks; remembered in {}.",
                    known.path().display()
                ),
            );
        }
        Verdict::Unknown if !ui::is_interactive() => {
            return Err(refused(Error::UnknownServer {
                addr: addr.to_string(),
                fingerprint,
            }));
        }
        Verdict::Unknown => {
            let asked = first_contact(term, addr, &fingerprint, known.path());
            match asked {
                Ok(true) => {}
                Ok(false) => {
                    return Err(refused(Error::NotTrusted {
                        addr: addr.to_string(),
                    }));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                    return Err(refused(Error::Interrupted));
                }
                Err(e) => return Err(refused(Error::Terminal(e))),
            }
            known.remember(addr, &fingerprint).map_err(trust)?;
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
