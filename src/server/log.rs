//! The server's log: where a [`Level`] and a line become a `tracing`
//! event, and the subscriber that `chatapp serve` installs to print those
//! events as `chatapp: <level>: <line>` on stderr, as many as
//! `CHATAPP_LOG` asks for.
//!
//! The hub does not log: it says what happened as an `Output::Log`, like
//! every other effect, so that its scripts can see it and it stays free
//! of global state. The loop, start-up and the workers turn such lines
//! into events here. Nothing is printed unless a subscriber is installed,
//! which only the binary's `main` does: a server embedded in a test or
//! another program logs wherever its host's subscriber says.

use super::hub::Level;
use std::fmt;
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::registry::LookupSpan;

/// The environment variable that sets the log level.
pub const LOG_ENV: &str = "CHATAPP_LOG";

/// `CHATAPP_LOG=error|warn|info|debug`; info when unset or unknown.
pub fn level_from_env() -> Level {
    level_named(&std::env::var(LOG_ENV).unwrap_or_default())
}

fn level_named(name: &str) -> Level {
    match name {
        "error" => Level::Error,
        "warn" => Level::Warn,
        "debug" => Level::Debug,
        _ => Level::Info,
    }
}

/// Says `line` at `level`, to whatever subscriber is listening.
pub fn emit(level: Level, line: &str) {
    // One macro a level: tracing fixes an event's level where it is written.
    match level {
        Level::Error => tracing::error!("{line}"),
        Level::Warn => tracing::warn!("{line}"),
        Level::Info => tracing::info!("{line}"),
        Level::Debug => tracing::debug!("{line}"),
    }
}

/// An error and its causes, as `main` prints them: `this: cause: cause`.
pub fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut next = error.source();
    while let Some(cause) = next {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        next = cause.source();
    }
    text
}

/// Makes the server's log lines go to stderr, down to `level`, for the
/// rest of the process. Does nothing if a subscriber is already in place.
pub fn install(level: Level) {
    let _ = tracing::subscriber::set_global_default(subscriber(level, std::io::stderr));
}

/// The subscriber [`install`] puts in place, writing to `writer`.
pub fn subscriber<W>(level: Level, writer: W) -> impl Subscriber + Send + Sync + 'static
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    tracing_subscriber::fmt()
        .with_max_level(filter(level))
        .with_writer(writer)
        .event_format(Lines)
        .finish()
}

fn filter(level: Level) -> tracing::level_filters::LevelFilter {
    use tracing::level_filters::LevelFilter;
    match level {
        Level::Error => LevelFilter::ERROR,
        Level::Warn => LevelFilter::WARN,
        Level::Info => LevelFilter::INFO,
        Level::Debug => LevelFilter::DEBUG,
    }
}

/// `chatapp: info: <message>`: the lines operators and scripts (and
/// `tests/all/cli.rs`) have always read, with no time or target added.
struct Lines;

impl<S, N> FormatEvent<S, N> for Lines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let level = match *event.metadata().level() {
            tracing::Level::ERROR => "error",
            tracing::Level::WARN => "warn",
            tracing::Level::INFO => "info",
            tracing::Level::DEBUG => "debug",
            tracing::Level::TRACE => "trace",
        };
        write!(writer, "chatapp: {level}: ")?;
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// A writer that keeps what the subscriber wrote.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn logged(level: Level, lines: &[(Level, &str)]) -> String {
        let out = Captured::default();
        let writer = out.clone();
        let subscriber = subscriber(level, move || writer.clone());
        tracing::subscriber::with_default(subscriber, || {
            for (level, line) in lines {
                emit(*level, line);
            }
        });
        String::from_utf8(out.0.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn events_print_as_the_lines_operators_read() {
        assert_eq!(
            logged(
                Level::Debug,
                &[
                    (Level::Error, "store writes up to 7 failed"),
                    (Level::Warn, "1.2.3.4:5: failed login for ann"),
                    (Level::Info, "store: synchronous=2 (FULL)"),
                    (Level::Debug, "loop turns: n=3"),
                ]
            ),
            "chatapp: error: store writes up to 7 failed\n\
             chatapp: warn: 1.2.3.4:5: failed login for ann\n\
             chatapp: info: store: synchronous=2 (FULL)\n\
             chatapp: debug: loop turns: n=3\n"
        );
    }

    #[test]
    fn the_level_leaves_out_the_lines_below_it() {
        let all = [
            (Level::Error, "e"),
            (Level::Warn, "w"),
            (Level::Info, "i"),
            (Level::Debug, "d"),
        ];
        assert_eq!(
            logged(Level::Warn, &all),
            "chatapp: error: e\nchatapp: warn: w\n"
        );
        assert_eq!(
            logged(Level::Info, &all),
            "chatapp: error: e\nchatapp: warn: w\nchatapp: info: i\n"
        );
    }

    #[test]
    fn chatapp_log_names_the_level_and_anything_else_means_info() {
        assert_eq!(level_named("error"), Level::Error);
        assert_eq!(level_named("warn"), Level::Warn);
        assert_eq!(level_named("info"), Level::Info);
        assert_eq!(level_named("debug"), Level::Debug);
        assert_eq!(level_named(""), Level::Info);
        assert_eq!(level_named("verbose"), Level::Info);
    }
}
