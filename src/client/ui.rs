//! The terminal: the only module that calls dialoguer, console and
//! crossterm. Everything it shows comes from [`super::core`] and
//! [`super::session`] as [`Line`]s; it only colours and places them.
//!
//! Two kinds of input:
//!
//! - Before login nothing can arrive unasked, so dialoguer asks: the start
//!   menu, the user name, yes-or-no questions.
//! - After login the server pushes messages and notices at any moment. A
//!   dialoguer prompt blocks its thread and redraws itself by counting the
//!   lines it drew, so nothing may be printed while it waits. These
//!   screens therefore use the small line editor and menu here: the
//!   terminal stays in raw mode, and one loop on this thread waits for a
//!   key (crossterm's `poll`, 20 ms at a time) or for something from the
//!   network thread. A message that arrives erases the input line (or the
//!   menu), prints above it, and draws it again with the typed text and
//!   the cursor where they were. One thread draws everything, so no lock
//!   is needed and the line can never be torn.
//!
//! Passwords are read by the same editor, showing nothing: dialoguer's
//! password prompt discards keys typed before it turned echo off (it sets
//! the terminal with `TCSAFLUSH`), which loses the first characters of a
//! fast typist.
//!
//! Why not rustyline's `ExternalPrinter`: it prints above the line, but
//! nothing can end a pending `readline` from outside, so a kicked member
//! would sit in a dead room until they pressed Enter. Here a kick or a
//! closed room ends the screen at once. crossterm (rather than console's
//! `read_key`) because console cannot wait for a key with a timeout and
//! toggles raw mode around every key, which lets keys typed in between
//! echo over the screen.
//!
//! Colour comes from console, which turns it off when `NO_COLOR` is set or
//! stdout is not a terminal. Ctrl-C (and SIGTERM, SIGHUP) restore the
//! terminal as it was found before the process ends.

use super::editor::{Edit, LineBuffer, scroll_window};
use super::session::{Line, MenuPick, Tone, parse_menu_choice, wrap};
use console::{Style, Term, measure_text_width, truncate_str};
use crossterm::cursor::{MoveToColumn, MoveUp};
use crossterm::event::{self, Event as TermEvent, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use crossterm::queue;
use crossterm::terminal::{self, Clear, ClearType};
use dialoguer::theme::ColorfulTheme;
use std::io::{self, IsTerminal, Write};
use std::time::Duration;

/// How long one wait for a key lasts before the network is checked again.
const KEY_SLICE: Duration = Duration::from_millis(20);

/// Something other than a key that ends a wait for one: what the network
/// or a timer brought. A prompt or menu asks its `wake` function between
/// keys, and returns what it gives.
pub type Wake<'a, W> = &'a mut dyn FnMut() -> Option<W>;

/// What a line prompt returns.
#[derive(Debug)]
pub enum Input<W> {
    /// Enter was pressed; the text typed.
    Line(String),
    /// Something came (from the server, or a timer); the typed text is
    /// kept for the next call.
    Woken(W),
    /// Esc.
    Cancel,
    /// Ctrl-D on an empty line.
    Eof,
    /// Ctrl-C.
    Interrupt,
    /// Page Up at a chat line: earlier messages, the typed text kept.
    PageUp,
}

/// How a line prompt behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A chat line: erased on Enter (the server's echo shows it).
    Chat,
    /// An answer to a question: the question and answer stay on screen.
    Answer,
    /// A password: nothing shown, the question stays.
    Secret,
}

/// What a menu returns.
#[derive(Debug)]
pub enum Pick<W> {
    Item(usize),
    /// `-in` was typed.
    Inbox,
    /// Esc.
    Back,
    Woken(W),
    Interrupt,
}

/// A menu on screen: title, numbered entries, a hint. It keeps the
/// highlighted entry and the typed text between calls, so an event
/// arriving in between changes nothing the user did.
pub struct Menu {
    pub title: Vec<Line>,
    pub items: Vec<String>,
    pub hint: String,
    /// Whether `-in` opens the inbox.
    pub inbox_shortcut: bool,
    highlight: usize,
    typed: LineBuffer,
    status: Option<String>,
}

impl Menu {
    pub fn new(title: Vec<Line>, items: Vec<String>, hint: impl Into<String>) -> Menu {
        Menu {
            title,
            items,
            hint: hint.into(),
            inbox_shortcut: false,
            highlight: 0,
            typed: LineBuffer::new(),
            status: None,
        }
    }
}

pub struct Terminal {
    raw: bool,
    /// Rows of the live block (input line or menu) at the bottom of the
    /// screen; the cursor is on its last row, or on the one above a
    /// status line.
    drawn: u16,
    /// Rows of the live block below the cursor's (a chat prompt's status).
    below: u16,
    theme: ColorfulTheme,
}

/// Whether both ends a person uses are a terminal.
pub fn is_interactive() -> bool {
    io::stdin().is_terminal() && io::stdout().is_terminal()
}

impl Terminal {
    /// Takes charge of the terminal; restores it on Ctrl-C and the like.
    pub fn new() -> Terminal {
        restore::install();
        Terminal {
            raw: false,
            drawn: 0,
            below: 0,
            theme: ColorfulTheme::default(),
        }
    }

    /// Leaves the terminal as it was found.
    pub fn restore(&mut self) {
        let _ = self.erase_block();
        let _ = self.set_raw(false);
        if io::stdout().is_terminal() {
            let _ = Term::stdout().show_cursor();
        }
        let _ = io::stdout().flush();
    }

    /// Hands Ctrl-C back to the terminal driver while the client waits on
    /// the server for long (a login may be held back for many seconds):
    /// raw mode would leave the key unread until the wait ends.
    pub fn wait_for_server(&mut self) -> io::Result<()> {
        self.erase_block()?;
        self.set_raw(false)
    }

    fn set_raw(&mut self, on: bool) -> io::Result<()> {
        if on != self.raw {
            if on {
                terminal::enable_raw_mode()?;
            } else {
                terminal::disable_raw_mode()?;
            }
            self.raw = on;
        }
        Ok(())
    }

    fn height() -> usize {
        match terminal::size() {
            Ok((_, h)) if h > 0 => usize::from(h),
            _ => 24,
        }
    }

    fn width() -> usize {
        match terminal::size() {
            Ok((w, _)) if w > 0 => usize::from(w),
            _ => 80,
        }
    }

    fn erase_block(&mut self) -> io::Result<()> {
        if self.drawn == 0 {
            return Ok(());
        }
        let mut out = io::stdout().lock();
        write!(out, "\r")?;
        let above = self.drawn - 1 - self.below;
        if above > 0 {
            queue!(out, MoveUp(above))?;
        }
        queue!(out, Clear(ClearType::FromCursorDown))?;
        out.flush()?;
        self.drawn = 0;
        self.below = 0;
        Ok(())
    }

    /// Prints lines above whatever input is live (it is drawn again by the
    /// next prompt or menu call).
    pub fn show(&mut self, lines: &[Line]) -> io::Result<()> {
        self.erase_block()?;
        let width = Self::width().saturating_sub(1);
        let mut out = io::stdout().lock();
        for row in lines.iter().flat_map(|line| wrap(line, width)) {
            // "\r\n" because raw mode does not turn "\n" into a new line.
            write!(out, "{}\r\n", styled(&row))?;
        }
        out.flush()
    }

    pub fn say(&mut self, tone: Tone, text: impl Into<String>) -> io::Result<()> {
        self.show(&[Line::of(tone, text)])
    }

    /// A new screen: the terminal cleared, the cursor at the top.
    pub fn clear_screen(&mut self) -> io::Result<()> {
        self.erase_block()?;
        let mut out = io::stdout().lock();
        queue!(out, Clear(ClearType::All), crossterm::cursor::MoveTo(0, 0))?;
        out.flush()
    }

    // ---- dialoguer: before login, and between connections ----

    fn cooked(&mut self) -> io::Result<Term> {
        self.erase_block()?;
        self.set_raw(false)?;
        io::stdout().flush()?;
        Ok(Term::stdout())
    }

    /// A menu of arrows-and-Enter; `None` on Esc.
    pub fn select(&mut self, prompt: &str, items: &[&str]) -> io::Result<Option<usize>> {
        let term = self.cooked()?;
        let pick = dialoguer::Select::with_theme(&self.theme)
            .with_prompt(prompt)
            .items(items)
            .default(0)
            .interact_on_opt(&term)?;
        Ok(pick)
    }

    /// A line of text, echoed; may be empty.
    pub fn input(&mut self, prompt: &str, initial: &str) -> io::Result<String> {
        let term = self.cooked()?;
        let text = dialoguer::Input::<String>::with_theme(&self.theme)
            .with_prompt(prompt)
            .with_initial_text(initial)
            .allow_empty(true)
            .interact_text_on(&term)?;
        Ok(text.trim().to_string())
    }

    pub fn confirm(&mut self, prompt: &str, default: bool) -> io::Result<bool> {
        let term = self.cooked()?;
        let yes = dialoguer::Confirm::with_theme(&self.theme)
            .with_prompt(prompt)
            .default(default)
            .interact_on_opt(&term)?;
        Ok(yes.unwrap_or(false))
    }

    // ---- the live screens: after login ----

    /// A hidden line (a password): nothing is echoed. `None` on Esc or
    /// Ctrl-D. Read in raw mode like the live screens, so keys typed as
    /// soon as the prompt shows are never thrown away (dialoguer's password
    /// prompt flushes pending input when it turns echo off).
    pub fn secret(&mut self, label: &str) -> io::Result<Option<String>> {
        let mut buf = LineBuffer::new();
        let label = format!("{label} (hidden): ");
        let mut nothing = || None::<()>;
        match self.read_line(&label, &mut buf, &mut nothing, Mode::Secret, None)? {
            Input::Line(text) => Ok(Some(text)),
            Input::Interrupt => Err(io::ErrorKind::Interrupted.into()),
            _ => Ok(None),
        }
    }

    /// Reads a line while the server may speak (whatever `wake` gives
    /// ends the wait). The typed text lives in `buf`, so a call ended by
    /// [`Input::Woken`] loses nothing. A `status` line is kept under the
    /// input line.
    pub fn read_line<W>(
        &mut self,
        label: &str,
        buf: &mut LineBuffer,
        wake: Wake<W>,
        mode: Mode,
        status: Option<&Line>,
    ) -> io::Result<Input<W>> {
        self.set_raw(true)?;
        self.draw_prompt(label, buf, mode, status)?;
        loop {
            if let Some(woken) = wake() {
                return Ok(Input::Woken(woken));
            }
            let Some(key) = next_key()? else {
                continue;
            };
            let action = match key {
                KeyAction::Edit(edit) => {
                    buf.apply(edit);
                    None
                }
                KeyAction::Submit => {
                    let text = buf.take();
                    if mode == Mode::Chat {
                        self.erase_block()?;
                    } else {
                        let mut shown = LineBuffer::new();
                        if mode == Mode::Answer {
                            shown.set(&text);
                            shown.apply(Edit::Home);
                        }
                        self.draw_prompt(label, &shown, mode, None)?;
                        io::stdout().write_all(b"\r\n")?;
                        self.drawn = 0;
                    }
                    Some(Input::Line(text))
                }
                KeyAction::Cancel => Some(Input::Cancel),
                KeyAction::Interrupt => Some(Input::Interrupt),
                KeyAction::EofOrDelete if buf.is_empty() => Some(Input::Eof),
                KeyAction::EofOrDelete => {
                    buf.apply(Edit::Delete);
                    None
                }
                KeyAction::PageUp if mode == Mode::Chat => Some(Input::PageUp),
                KeyAction::Up | KeyAction::Down | KeyAction::PageUp | KeyAction::Redraw => None,
            };
            if let Some(input) = action {
                if !matches!(input, Input::Line(_)) {
                    self.erase_block()?;
                }
                return Ok(input);
            }
            self.draw_prompt(label, buf, mode, status)?;
        }
    }

    fn draw_prompt(
        &mut self,
        label: &str,
        buf: &LineBuffer,
        mode: Mode,
        status: Option<&Line>,
    ) -> io::Result<()> {
        let label_width = measure_text_width(label);
        let room = Self::width().saturating_sub(label_width).max(8);
        let (shown, col) = match mode {
            Mode::Secret => (String::new(), 0),
            _ => buf.window(room),
        };
        self.erase_block()?;
        let mut out = io::stdout().lock();
        write!(out, "{}{}", prompt_style().apply_to(label), shown)?;
        if let Some(status) = status {
            // Below the input line, so the line above it is always the
            // latest message; "\r\n" scrolls when the prompt is at the bottom.
            let width = Self::width().saturating_sub(1).max(10);
            write!(out, "\r\n{}", fit_line(status, width))?;
            queue!(out, MoveUp(1))?;
            self.drawn = 2;
            self.below = 1;
        } else {
            self.drawn = 1;
        }
        queue!(out, MoveToColumn((label_width + col) as u16))?;
        out.flush()?;
        Ok(())
    }

    /// Shows a menu and waits for a choice, or for what `wake` gives. A
    /// `banner` is shown under it.
    pub fn menu<W>(
        &mut self,
        menu: &mut Menu,
        wake: Wake<W>,
        banner: Option<&Line>,
    ) -> io::Result<Pick<W>> {
        self.set_raw(true)?;
        self.draw_menu(menu, banner)?;
        loop {
            if let Some(woken) = wake() {
                return Ok(Pick::Woken(woken));
            }
            let Some(key) = next_key()? else {
                continue;
            };
            let count = menu.items.len();
            let pick = match key {
                KeyAction::Up => {
                    menu.highlight = (menu.highlight + count - 1) % count;
                    menu.typed.take();
                    None
                }
                KeyAction::Down => {
                    menu.highlight = (menu.highlight + 1) % count;
                    menu.typed.take();
                    None
                }
                KeyAction::Edit(edit) => {
                    menu.typed.apply(edit);
                    if let MenuPick::Item(i) =
                        parse_menu_choice(&menu.typed.text(), count, menu.inbox_shortcut)
                    {
                        menu.highlight = i;
                    }
                    None
                }
                KeyAction::Submit => {
                    let typed = menu.typed.take();
                    match parse_menu_choice(&typed, count, menu.inbox_shortcut) {
                        MenuPick::Item(i) => Some(Pick::Item(i)),
                        MenuPick::Highlighted => Some(Pick::Item(menu.highlight)),
                        MenuPick::Inbox => Some(Pick::Inbox),
                        MenuPick::Invalid(why) => {
                            menu.status = Some(why);
                            None
                        }
                    }
                }
                KeyAction::Cancel => Some(Pick::Back),
                KeyAction::Interrupt => Some(Pick::Interrupt),
                KeyAction::EofOrDelete => {
                    menu.typed.apply(Edit::Delete);
                    None
                }
                KeyAction::PageUp | KeyAction::Redraw => None,
            };
            if let Some(pick) = pick {
                menu.status = None;
                self.erase_block()?;
                return Ok(pick);
            }
            self.draw_menu(menu, banner)?;
        }
    }

    fn draw_menu(&mut self, menu: &Menu, banner: Option<&Line>) -> io::Result<()> {
        let width = Self::width().saturating_sub(1).max(10);
        let fit = |s: &str| truncate_str(s, width, "…").into_owned();
        let mut rows: Vec<String> = menu.title.iter().map(|l| fit_line(l, width)).collect();
        // Title, hint, status, a scroll note and the prompt need rows too.
        let room = Self::height().saturating_sub(rows.len() + 4).max(3);
        let shown = scroll_window(menu.items.len(), menu.highlight, room);
        for i in shown.clone() {
            let item = &menu.items[i];
            let text = fit(&format!("  {}. {item}", i + 1));
            rows.push(if i == menu.highlight {
                let text = format!("›{}", &text[1..]);
                highlight_style().apply_to(text).to_string()
            } else {
                text
            });
        }
        if shown.len() < menu.items.len() {
            let note = format!(
                "  ({} to {} of {}: the arrows scroll)",
                shown.start + 1,
                shown.end,
                menu.items.len()
            );
            rows.push(tone_style(Tone::Dim).apply_to(fit(&note)).to_string());
        }
        rows.push(tone_style(Tone::Dim).apply_to(fit(&menu.hint)).to_string());
        if let Some(status) = &menu.status {
            rows.push(tone_style(Tone::Error).apply_to(fit(status)).to_string());
        }
        if let Some(banner) = banner {
            rows.push(fit_line(banner, width));
        }
        self.erase_block()?;
        let mut out = io::stdout().lock();
        for row in &rows {
            write!(out, "{row}\r\n")?;
        }
        let label = "> ";
        let (shown, col) = menu.typed.window(width - label.len());
        write!(out, "{}{}", prompt_style().apply_to(label), shown)?;
        queue!(out, MoveToColumn((label.len() + col) as u16))?;
        out.flush()?;
        self.drawn = rows.len() as u16 + 1;
        self.below = 0;
        Ok(())
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        self.restore();
    }
}

enum KeyAction {
    Edit(Edit),
    Submit,
    Cancel,
    Interrupt,
    /// Ctrl-D: end of input on an empty line, else delete.
    EofOrDelete,
    Up,
    Down,
    PageUp,
    /// A resize, or a key that changes nothing: draw again.
    Redraw,
}

/// Waits briefly for a key; `None` when none came.
fn next_key() -> io::Result<Option<KeyAction>> {
    if !event::poll(KEY_SLICE)? {
        return Ok(None);
    }
    Ok(match event::read()? {
        TermEvent::Key(key) if key.kind != KeyEventKind::Release => Some(key_action(key)),
        TermEvent::Resize(..) => Some(KeyAction::Redraw),
        _ => None,
    })
}

fn key_action(key: KeyEvent) -> KeyAction {
    let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
    match key.code {
        KeyCode::Char('c') if ctrl => KeyAction::Interrupt,
        KeyCode::Char('d') if ctrl => KeyAction::EofOrDelete,
        KeyCode::Char('a') if ctrl => KeyAction::Edit(Edit::Home),
        KeyCode::Char('e') if ctrl => KeyAction::Edit(Edit::End),
        KeyCode::Char('b') if ctrl => KeyAction::Edit(Edit::Left),
        KeyCode::Char('f') if ctrl => KeyAction::Edit(Edit::Right),
        KeyCode::Char('u') if ctrl => KeyAction::Edit(Edit::KillToStart),
        KeyCode::Char('k') if ctrl => KeyAction::Edit(Edit::KillToEnd),
        KeyCode::Char('w') if ctrl => KeyAction::Edit(Edit::KillWord),
        KeyCode::Char('h') if ctrl => KeyAction::Edit(Edit::Backspace),
        KeyCode::Char('p') if ctrl => KeyAction::Up,
        KeyCode::Char('n') if ctrl => KeyAction::Down,
        KeyCode::Char('j' | 'm') if ctrl => KeyAction::Submit,
        KeyCode::Char(_) if ctrl || key.modifiers.contains(KeyModifiers::ALT) => KeyAction::Redraw,
        KeyCode::Char(c) => KeyAction::Edit(Edit::Insert(c)),
        KeyCode::Enter => KeyAction::Submit,
        KeyCode::Backspace => KeyAction::Edit(Edit::Backspace),
        KeyCode::Delete => KeyAction::Edit(Edit::Delete),
        KeyCode::Left => KeyAction::Edit(Edit::Left),
        KeyCode::Right => KeyAction::Edit(Edit::Right),
        KeyCode::Home => KeyAction::Edit(Edit::Home),
        KeyCode::End => KeyAction::Edit(Edit::End),
        KeyCode::Up => KeyAction::Up,
        KeyCode::Down => KeyAction::Down,
        KeyCode::PageUp => KeyAction::PageUp,
        KeyCode::Esc => KeyAction::Cancel,
        _ => KeyAction::Redraw,
    }
}

fn tone_style(tone: Tone) -> Style {
    match tone {
        Tone::Plain => Style::new(),
        Tone::Dim => Style::new().dim(),
        Tone::Heading => Style::new().bold(),
        Tone::Name => Style::new().cyan(),
        Tone::Me => Style::new().green(),
        Tone::Notice => Style::new().yellow(),
        Tone::Good => Style::new().green(),
        Tone::Error => Style::new().red(),
    }
}

fn prompt_style() -> Style {
    Style::new().bold()
}

fn highlight_style() -> Style {
    Style::new().cyan().bold()
}

/// A line cut to `width` columns; a cut line takes the look of its start.
fn fit_line(line: &Line, width: usize) -> String {
    let text = line.text();
    if measure_text_width(&text) <= width {
        return styled(line);
    }
    let tone = line.spans.first().map_or(Tone::Plain, |s| s.tone);
    tone_style(tone)
        .apply_to(truncate_str(&text, width, "…"))
        .to_string()
}

/// A line with its colours (none when colour is off).
fn styled(line: &Line) -> String {
    line.spans
        .iter()
        .map(|s| tone_style(s.tone).apply_to(&s.text).to_string())
        .collect()
}

/// Puts the terminal back when a signal ends the process: dialoguer's
/// password prompt turns echo off, its menus hide the cursor, and the live
/// screens run in raw mode; none of that may outlive us.
#[cfg(unix)]
mod restore {
    use std::sync::OnceLock;

    static SAVED: OnceLock<Option<libc::termios>> = OnceLock::new();

    pub fn install() {
        SAVED.get_or_init(|| {
            let mut t = std::mem::MaybeUninit::<libc::termios>::uninit();
            // SAFETY: tcgetattr fills the struct when it returns 0.
            (unsafe { libc::tcgetattr(libc::STDIN_FILENO, t.as_mut_ptr()) } == 0)
                .then(|| unsafe { t.assume_init() })
        });
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
        static INSTALLED: OnceLock<()> = OnceLock::new();
        INSTALLED.get_or_init(|| {
            let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])
            else {
                return;
            };
            let _ = std::thread::Builder::new()
                .name("chatapp-signals".into())
                .spawn(move || {
                    if let Some(signal) = signals.forever().next() {
                        super::leave(128 + signal, true);
                    }
                });
        });
    }

    /// Restores the saved terminal modes and shows the cursor. Writes with
    /// `write(2)` so that a lock the interrupted thread holds cannot block it.
    pub fn now(text: &str) {
        if let Some(Some(t)) = SAVED.get() {
            // SAFETY: a termios obtained from tcgetattr on the same fd.
            unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, t) };
        }
        // SAFETY: isatty only inspects the descriptor.
        // The clear takes a chat prompt's status line away too.
        let show = if unsafe { libc::isatty(libc::STDOUT_FILENO) } == 1 {
            "\x1b[J\x1b[?25h"
        } else {
            ""
        };
        let out = format!("{show}{text}");
        // SAFETY: writing a valid buffer to stdout.
        unsafe { libc::write(libc::STDOUT_FILENO, out.as_ptr().cast(), out.len()) };
    }
}

#[cfg(not(unix))]
mod restore {
    /// Elsewhere crossterm's raw mode delivers Ctrl-C as a key, which the
    /// screens handle; nothing to install.
    pub fn install() {}

    pub fn now(text: &str) {
        use std::io::Write;
        let _ = crossterm::terminal::disable_raw_mode();
        let mut out = std::io::stdout();
        let _ = write!(out, "\x1b[?25h{text}");
        let _ = out.flush();
    }
}

/// Ends the process after Ctrl-C or a signal, the terminal restored and a
/// goodbye said once, whichever thread gets here first. `mid_line` when
/// the cursor may be after a prompt.
pub fn leave(code: i32, mid_line: bool) -> ! {
    use std::sync::atomic::{AtomicBool, Ordering};
    static LEAVING: AtomicBool = AtomicBool::new(false);
    if LEAVING.swap(true, Ordering::SeqCst) {
        // The other thread is already on its way out.
        loop {
            std::thread::park();
        }
    }
    restore::now(if mid_line { "\r\nBye.\r\n" } else { "Bye.\r\n" });
    std::process::exit(code)
}
