//! Crash durability: the real `chatapp serve` binary, under load, killed
//! with SIGKILL at random moments and restarted on the same data directory.
//! Every message whose sender got an acknowledgement must be in the
//! database exactly once, the database must pass `PRAGMA integrity_check`,
//! and the restart must be quick. Figures are printed, not asserted, except
//! the restart bound the product promises.

use crate::kit::{self, ServeProcess};
use chatapp::client::proto::Connection;
use chatapp::wire::msg::{Reply, Request};
use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const KILLS: usize = 20;
const SENDERS: usize = 24;
const PASSWORD: &str = "durable password 1234";

/// Starts the server binary; returns it, its address and how long it
/// took to listen.
fn spawn_server(dir: &Path) -> (ServeProcess, String, Duration) {
    let started = Instant::now();
    let server = ServeProcess::serve(dir, &[]);
    let addr = server.addr.clone();
    (server, addr, started.elapsed())
}

fn session(addr: &str, name: &str) -> Option<Connection> {
    kit::log_in_or_register(addr, name, PASSWORD)
}

/// One sender: private messages to `sink` as fast as its budget allows,
/// recording each acknowledged text, until the connection dies.
fn send_until_killed(addr: &str, me: usize, run: usize, acked: &Mutex<HashSet<String>>) {
    let Some(mut conn) = session(addr, &format!("sender{me}")) else {
        return;
    };
    for n in 0.. {
        let text = format!("r{run}-s{me}-n{n}");
        let req = Request::SendPrivate {
            to: "sink".into(),
            text: text.clone(),
            client_id: 0,
        };
        match conn.request_within(req, Duration::from_secs(5)) {
            Ok(Reply::Ok) => {
                acked.lock().unwrap().insert(text);
            }
            Ok(Reply::Error { .. }) => {} // over budget: refused, not stored
            Ok(other) => panic!("unexpected reply {other:?}"),
            Err(_) => return, // killed
        }
        // Stay within the budget of 5 messages a second per client.
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn acknowledged_messages_survive_sigkill_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let acked = Arc::new(Mutex::new(HashSet::new()));
    let mut restarts = Vec::new();
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;

    // The recipient must exist before anyone writes to it.
    let (mut server, addr, _) = spawn_server(dir.path());
    drop(session(&addr, "sink").expect("register sink"));
    run_load(&addr, 0, &acked, &mut server, &mut seed);
    for run in 1..KILLS {
        let (c, addr, took) = spawn_server(dir.path());
        restarts.push(took);
        server = c;
        run_load(&addr, run, &acked, &mut server, &mut seed);
    }

    // Check the file with the server stopped for good.
    let db = rusqlite::Connection::open(dir.path().join("chatapp.db")).unwrap();
    let check: String = db
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    let acked = acked.lock().unwrap();
    let mut stmt = db
        .prepare("SELECT body, count(*) FROM messages GROUP BY body")
        .unwrap();
    let stored: std::collections::HashMap<String, i64> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let missing: Vec<&String> = acked.iter().filter(|t| !stored.contains_key(*t)).collect();
    let doubled: Vec<(&String, &i64)> = stored.iter().filter(|(_, n)| **n != 1).collect();
    let slowest = restarts.iter().max().copied().unwrap_or_default();
    println!(
        "durability: {KILLS} SIGKILLs, {} acknowledged, {} stored, {} missing, {} duplicated; restart max {:?}, mean {:?}",
        acked.len(),
        stored.len(),
        missing.len(),
        doubled.len(),
        slowest,
        restarts.iter().sum::<Duration>() / restarts.len().max(1) as u32,
    );
    assert!(
        acked.len() > KILLS * SENDERS,
        "too little load to mean anything"
    );
    assert!(missing.is_empty(), "acknowledged but lost: {missing:?}");
    assert!(doubled.is_empty(), "stored more than once: {doubled:?}");
    assert!(slowest < Duration::from_secs(2), "restart took {slowest:?}");
}

/// Runs the senders against `addr` and kills the server at a random moment
/// between 0.3 and 1.3 seconds in.
fn run_load(
    addr: &str,
    run: usize,
    acked: &Arc<Mutex<HashSet<String>>>,
    server: &mut ServeProcess,
    seed: &mut u64,
) {
    let threads: Vec<_> = (0..SENDERS)
        .map(|me| {
            let (addr, acked) = (addr.to_string(), acked.clone());
            std::thread::spawn(move || send_until_killed(&addr, me, run, &acked))
        })
        .collect();
    // xorshift: a fixed seed, so a failure can be replayed.
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    // The kill comes at a moment chosen by the seed while the senders run:
    // that moment is the experiment, not a wait for the server.
    std::thread::sleep(Duration::from_millis(300 + *seed % 1000));
    server.kill();
    for t in threads {
        t.join().unwrap();
    }
}
