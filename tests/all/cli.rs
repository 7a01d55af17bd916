//! The command line: the real `chatapp` binary, started as an operator
//! would, stopped with SIGTERM.

use crate::kit;
use crate::kit::{ServeProcess, WAIT};
use chatapp::client::proto::{self, Connection};
use chatapp::wire::msg::{Event, Reply, Request};
use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// How long the binary may take to start, or to stop after SIGTERM (the
/// server itself gives clients 2 s to take their goodbyes).
const PROCESS_WAIT: Duration = Duration::from_secs(10);

/// The binary, with an environment that cannot reach the user's own files
/// or servers.
fn chatapp(home: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_chatapp"));
    isolate(&mut cmd, home);
    cmd
}

/// Points `cmd` at `home` and away from the user's own settings.
fn isolate(cmd: &mut Command, home: &Path) {
    cmd.env("HOME", home)
        .env("XDG_DATA_HOME", home.join("data"))
        .env("XDG_CONFIG_HOME", home.join("config"))
        .env_remove("CHATAPP_SERVER")
        .env_remove("CHATAPP_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
}

/// Runs a command that must end by itself within [`PROCESS_WAIT`].
fn run(mut cmd: Command) -> Output {
    let mut child = cmd.spawn().expect("start chatapp");
    let stdout = drain(child.stdout.take().unwrap());
    let stderr = drain(child.stderr.take().unwrap());
    let status = kit::wait_exit(&mut child, PROCESS_WAIT);
    Output {
        status,
        stdout: stdout.join().unwrap().into_bytes(),
        stderr: stderr.join().unwrap().into_bytes(),
    }
}

fn drain(mut pipe: impl Read + Send + 'static) -> JoinHandle<String> {
    thread::spawn(move || {
        let mut text = String::new();
        let _ = pipe.read_to_string(&mut text);
        text
    })
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The non-empty lines of some output.
fn lines(output: &str) -> Vec<&str> {
    output.lines().filter(|l| !l.trim().is_empty()).collect()
}

/// `chatapp serve` on 127.0.0.1:0 over `data_dir`, in the environment of
/// [`chatapp`] with `CHATAPP_LOG` set to `level` (if given) and more
/// options; it has printed its `chatapp listening on ADDR with key
/// SHA256:...` line, and what it logs is kept for `terminate`.
fn start_serve(
    home: &Path,
    data_dir: &Path,
    level: Option<&str>,
    options: &[&str],
) -> ServeProcess {
    let mut cmd = ServeProcess::command(data_dir, options);
    isolate(&mut cmd, home);
    if let Some(level) = level {
        cmd.env("CHATAPP_LOG", level);
    }
    ServeProcess::spawn_logged(cmd)
}

fn register(conn: &mut Connection, name: &str, password: &str) {
    let reply = conn
        .request_within(
            Request::Register {
                name: name.into(),
                password: password.into(),
            },
            WAIT,
        )
        .unwrap();
    assert_eq!(kit::tokenless(reply), kit::logged_in(name, 0));
}

/// A port on which nothing listens (it did a moment ago).
fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn serve_prints_its_address_and_key_and_accepts_clients() {
    const SECRET: &str = "kettle orbit saffron 3141";
    let home = TempDir::new().unwrap();
    let data = TempDir::new().unwrap();
    let serve = start_serve(home.path(), data.path(), None, &[]);
    TcpStream::connect(&serve.addr).expect("a plain TCP connection is accepted");
    let mut conn = serve.connect();
    register(&mut conn, "operator", SECRET);
    assert_eq!(
        conn.request_within(Request::Ping, WAIT).unwrap(),
        Reply::Pong
    );
    drop(conn);
    let (status, log) = serve.terminate();
    assert_eq!(
        status.code(),
        Some(0),
        "SIGTERM is a clean exit; log:\n{log}"
    );
    assert!(log.contains("operator"), "logins are logged:\n{log}");
    assert!(!log.contains(SECRET), "a password was logged:\n{log}");
}

#[test]
fn sigterm_says_goodbye_to_clients_keeps_their_messages_and_exits_0() {
    let home = TempDir::new().unwrap();
    let data = TempDir::new().unwrap();
    let serve = start_serve(home.path(), data.path(), None, &[]);
    let mut ann = serve.connect();
    register(&mut ann, "ann", kit::PASSWORD);
    let room = match ann
        .request_within(
            Request::CreateRoom {
                name: "last orders".into(),
                capacity: 2,
            },
            WAIT,
        )
        .unwrap()
    {
        Reply::Room { room, .. } => room.id,
        other => panic!("create a room: {other:?}"),
    };
    let mut bob = serve.connect();
    register(&mut bob, "bob", kit::PASSWORD);
    assert!(matches!(
        bob.request_within(Request::JoinRoom { room }, WAIT)
            .unwrap(),
        Reply::Room { .. }
    ));
    let said = Request::Say {
        text: "closing time".into(),
        client_id: 0,
    };
    assert_eq!(bob.request_within(said, WAIT).unwrap(), Reply::Ok);

    let (status, log) = serve.terminate();
    assert_eq!(status.code(), Some(0), "log:\n{log}");
    let mut events = Vec::new();
    while let Ok(Some(event)) = bob.next_event(Some(WAIT)) {
        events.push(event);
    }
    let bye = Event::Bye {
        reason: "the server is restarting: connect again in a moment; your rooms stay open".into(),
        resume: true,
    };
    assert_eq!(
        events.last(),
        Some(&bye),
        "bob is told, last of all: {events:?}"
    );
    assert!(
        !events.iter().any(|e| matches!(e, Event::RoomClosed { .. })),
        "a restart does not close rooms: {events:?}"
    );
    let mut ann_events = Vec::new();
    while let Ok(Some(event)) = ann.next_event(Some(WAIT)) {
        ann_events.push(event);
    }
    assert_eq!(ann_events.last(), Some(&bye), "{ann_events:?}");

    let stored: i64 = kit::open_db(&data.path().join(chatapp::server::DATABASE_FILE))
        .query_row(
            "SELECT COUNT(*) FROM messages WHERE body = 'closing time'",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(stored, 1, "the acknowledged message is stored");
    let closed: Option<i64> = kit::open_db(&data.path().join(chatapp::server::DATABASE_FILE))
        .query_row(
            "SELECT closed FROM rooms WHERE id = ?1",
            [room as i64],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(closed, None, "the room stays open for the next start");
}

/// `--sync normal` used to be parsed and then ignored: the database always
/// ran with `synchronous=FULL`. The store logs the setting it reads back
/// from the running database at start.
#[test]
fn sync_option_sets_the_running_databases_synchronous_pragma() {
    for (options, expected) in [
        (&[][..], "synchronous=2 (FULL)"),
        (&["--sync", "full"][..], "synchronous=2 (FULL)"),
        (&["--sync", "normal"][..], "synchronous=1 (NORMAL)"),
    ] {
        let home = TempDir::new().unwrap();
        let data = TempDir::new().unwrap();
        let serve = start_serve(home.path(), data.path(), None, options);
        let (status, log) = serve.terminate();
        assert_eq!(status.code(), Some(0), "{options:?}; log:\n{log}");
        let store: Vec<&str> = lines(&log)
            .into_iter()
            .filter(|line| line.starts_with("chatapp: info: store: "))
            .collect();
        assert_eq!(store.len(), 1, "{options:?}: one store line; log:\n{log}");
        assert!(
            store[0].contains(expected),
            "{options:?}: expected {expected}; log:\n{log}"
        );
    }
}

#[test]
fn an_out_of_range_port_is_a_one_line_error() {
    let home = TempDir::new().unwrap();
    let mut cmd = chatapp(home.path());
    cmd.args(["serve", "--listen", "127.0.0.1:70000", "--data-dir"])
        .arg(home.path().join("data"));
    let out = run(cmd);
    let stderr = text(&out.stderr);
    assert!(!out.status.success(), "exit status {:?}", out.status);
    assert_eq!(lines(&stderr).len(), 1, "one line:\n{stderr}");
    assert!(stderr.contains("70000"), "the port is named:\n{stderr}");
    assert!(stderr.contains("out of range"), "{stderr}");
    assert_eq!(text(&out.stdout), "", "nothing claims to listen");
}

#[test]
fn a_port_in_use_is_a_one_line_error() {
    let home = TempDir::new().unwrap();
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let mut cmd = chatapp(home.path());
    cmd.args(["serve", "--listen", &addr, "--data-dir"])
        .arg(home.path().join("data"));
    let out = run(cmd);
    let stderr = text(&out.stderr);
    assert!(!out.status.success(), "exit status {:?}", out.status);
    assert_eq!(lines(&stderr).len(), 1, "one line:\n{stderr}");
    assert!(stderr.contains(&addr), "the address is named:\n{stderr}");
    assert!(
        stderr.to_lowercase().contains("in use"),
        "the reason is given:\n{stderr}"
    );
    assert_eq!(text(&out.stdout), "");
}

#[test]
fn a_second_server_on_the_same_data_directory_is_refused() {
    let home = TempDir::new().unwrap();
    let data = TempDir::new().unwrap();
    let first = start_serve(home.path(), data.path(), None, &[]);
    let mut cmd = chatapp(home.path());
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data.path());
    let out = run(cmd);
    let stderr = text(&out.stderr);
    assert!(!out.status.success(), "exit status {:?}", out.status);
    assert_eq!(lines(&stderr).len(), 1, "one line:\n{stderr}");
    assert!(
        stderr.contains("another chatapp server is already using the data directory"),
        "the reason is given:\n{stderr}"
    );
    assert_eq!(text(&out.stdout), "", "the second one never listened");
    // The first is untouched: it still answers, and stops cleanly.
    drop(first.connect());
    let (status, log) = first.terminate();
    assert_eq!(status.code(), Some(0), "log:\n{log}");
    // Once it has stopped, the directory is free again.
    let again = start_serve(home.path(), data.path(), None, &[]);
    assert_eq!(again.terminate().0.code(), Some(0));
}

#[cfg(unix)]
#[test]
fn the_server_key_is_readable_by_its_owner_only_and_kept() {
    use std::os::unix::fs::PermissionsExt;
    let home = TempDir::new().unwrap();
    let data = TempDir::new().unwrap();
    let key_file = data.path().join("server.key");
    let serve = start_serve(home.path(), data.path(), None, &[]);
    let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "mode {:o}", mode & 0o777);
    assert_eq!(std::fs::read(&key_file).unwrap().len(), 64);
    let key = serve.fingerprint.clone();
    assert_eq!(serve.terminate().0.code(), Some(0));
    let again = start_serve(home.path(), data.path(), None, &[]);
    assert_eq!(again.fingerprint, key, "the same key after a restart");
    assert_eq!(again.terminate().0.code(), Some(0));
}

#[test]
fn the_handshake_shows_the_fingerprint_that_serve_prints() {
    let home = TempDir::new().unwrap();
    let data = TempDir::new().unwrap();
    let fingerprint = || {
        let mut cmd = chatapp(home.path());
        cmd.args(["serve", "--fingerprint", "--data-dir"])
            .arg(data.path());
        let out = run(cmd);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let stdout = text(&out.stdout);
        assert_eq!(lines(&stdout).len(), 1, "{stdout}");
        stdout.trim().to_string()
    };
    // Printed before the first start (the key is made then), and stable.
    let printed = fingerprint();
    assert!(printed.starts_with("SHA256:"), "{printed}");
    assert_eq!(fingerprint(), printed);

    let serve = start_serve(home.path(), data.path(), None, &[]);
    assert_eq!(serve.fingerprint, printed, "serve announces the same key");
    let unverified = proto::connect(&serve.addr.to_string()).expect("connect");
    assert_eq!(unverified.fingerprint(), printed, "the handshake proves it");
    drop(unverified);
    let (status, log) = serve.terminate();
    assert_eq!(status.code(), Some(0), "log:\n{log}");
}

#[test]
fn connect_to_a_closed_port_fails_with_a_clear_message() {
    let home = TempDir::new().unwrap();
    let addr = format!("127.0.0.1:{}", closed_port());
    let mut cmd = chatapp(home.path());
    cmd.args(["connect", &addr]);
    let out = run(cmd);
    let stderr = text(&out.stderr);
    assert!(!out.status.success(), "exit status {:?}", out.status);
    assert!(stderr.contains("connection refused"), "{stderr}");
    assert!(stderr.contains("chatapp serve"), "{stderr}");
    assert!(stderr.contains(&addr), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(lines(&stderr).len(), 1, "one line:\n{stderr}");
}

/// The number after `n=` and the histogram's counts in a `loop turns:`
/// line, so that a test can check they agree.
fn turn_counts(line: &str) -> (u64, u64) {
    let n = line
        .split("n=")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no n= in {line:?}"));
    let histogram = line
        .split("histogram [")
        .nth(1)
        .and_then(|rest| rest.split(']').next())
        .unwrap_or_else(|| panic!("no histogram in {line:?}"));
    let counted = histogram
        .split(", ")
        .map(|bucket| {
            let (_, count) = bucket.rsplit_once(": ").expect("bound: count");
            count.parse::<u64>().expect("a count")
        })
        .sum();
    (n, counted)
}

#[test]
fn the_loop_reports_its_turn_times_at_debug_level_and_when_it_stops() {
    let home = TempDir::new().unwrap();
    let data = TempDir::new().unwrap();
    // Pings as fast as replies come: lift the request throttle.
    let unthrottled = ["--request-burst", "1000000", "--request-rate", "1000000"];
    let serve = start_serve(home.path(), data.path(), Some("debug"), &unthrottled);
    let mut conn = serve.connect();
    register(&mut conn, "timer", kit::PASSWORD);
    // The debug report comes with the first turn that ends a second after
    // the loop began: keep it turning until well past that.
    let started = Instant::now();
    let mut pings = 0;
    while started.elapsed() < Duration::from_secs(2) {
        assert_eq!(
            conn.request_within(Request::Ping, WAIT).unwrap(),
            Reply::Pong
        );
        pings += 1;
    }
    let (status, log) = serve.terminate();
    assert_eq!(status.code(), Some(0), "log:\n{log}");

    let periodic: Vec<&str> = log
        .lines()
        .filter(|l| l.starts_with("chatapp: debug: loop turns: "))
        .collect();
    assert!(!periodic.is_empty(), "no debug report:\n{log}");
    for line in &periodic {
        let (n, counted) = turn_counts(line);
        assert_eq!(n, counted, "the histogram counts every turn: {line}");
        assert!(line.contains("; last 1 s: n="), "{line}");
    }
    let last: Vec<&str> = log
        .lines()
        .filter(|l| l.starts_with("chatapp: info: loop turns: "))
        .collect();
    assert_eq!(last.len(), 1, "one report at shutdown:\n{log}");
    let (n, counted) = turn_counts(last[0]);
    assert_eq!(n, counted, "{}", last[0]);
    // Every request is read in a turn of its own: the client waits for
    // each reply before it sends the next.
    assert!(n >= pings, "{n} turns for {pings} pings: {}", last[0]);
    assert!(last[0].contains(", longest="), "{}", last[0]);
    assert!(last[0].contains(", p99<"), "{}", last[0]);
}
