//! The load generator against servers whose behaviour is known: a tiny IRC
//! server that can drop a delivery on purpose, and a real chatapp server
//! run in this process. Every delivery must be accounted for: a dropped one
//! is reported lost, a refused one is reported refused and not lost.

use chatapp::server::hub::Level;
use chatapp::store::password::HashCost;
use chatapp_loadgen::engine::{Engine, LoadSpec, Proto, StormSpec, Traffic};
use chatapp_loadgen::server::{Accounts, PASSWORD, seed};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A minimal IRC server: NICK/USER get a welcome, JOIN a 366, PRIVMSG goes
/// to the channel's other members or to a nick. Delivery number `drop`
/// (counting from 1 across the server) is silently not sent.
struct FakeIrc {
    addr: SocketAddr,
    forwarded: Arc<AtomicU64>,
}

#[derive(Default)]
struct IrcState {
    nicks: HashMap<String, TcpStream>,
    channels: HashMap<String, Vec<String>>,
}

impl FakeIrc {
    fn start(drop: Option<u64>) -> FakeIrc {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(IrcState::default()));
        let forwarded = Arc::new(AtomicU64::new(0));
        let counter = forwarded.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().take(64) {
                let Ok(stream) = stream else { return };
                let (state, counter) = (state.clone(), counter.clone());
                std::thread::spawn(move || serve_irc(stream, &state, &counter, drop));
            }
        });
        FakeIrc { addr, forwarded }
    }
}

fn serve_irc(stream: TcpStream, state: &Mutex<IrcState>, counter: &AtomicU64, drop: Option<u64>) {
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut out = stream.try_clone().unwrap();
    let mut nick = String::new();
    for line in BufReader::new(stream).lines() {
        let Ok(line) = line else { return };
        let (cmd, rest) = line.split_once(' ').unwrap_or((&line, ""));
        match cmd {
            "NICK" => {
                nick = rest.to_string();
                let mut s = state.lock().unwrap();
                s.nicks.insert(nick.clone(), out.try_clone().unwrap());
            }
            "USER" => {
                let _ = write!(out, ":fake 001 {nick} :welcome\r\n");
            }
            "JOIN" => {
                let mut s = state.lock().unwrap();
                s.channels
                    .entry(rest.to_string())
                    .or_default()
                    .push(nick.clone());
                let _ = write!(out, ":fake 366 {nick} {rest} :End of /NAMES list.\r\n");
            }
            "PRIVMSG" => {
                let (target, text) = rest.split_once(" :").unwrap();
                let mut s = state.lock().unwrap();
                let to: Vec<String> = match s.channels.get(target) {
                    Some(members) => members.iter().filter(|m| **m != nick).cloned().collect(),
                    None => vec![target.to_string()],
                };
                for m in to {
                    let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
                    if Some(n) == drop {
                        continue; // lost on purpose
                    }
                    if let Some(peer) = s.nicks.get_mut(&m) {
                        let _ = write!(peer, ":{nick}!~{nick}@h PRIVMSG {target} :{text}\r\n");
                    }
                }
            }
            _ => {}
        }
    }
}

fn irc_room_step(drop: Option<u64>) -> chatapp_loadgen::engine::StepReport {
    let irc = FakeIrc::start(drop);
    let mut engine = Engine::new(irc.addr, Proto::Irc, 3, |i| format!("n{i}")).unwrap();
    let connected = engine.connect(0..3, 3, Duration::from_secs(10));
    assert_eq!(connected.ok, 3);
    assert_eq!(
        engine.join_rooms(&[vec![0, 1, 2]], Duration::from_secs(10)),
        3
    );
    let report = engine.run(&LoadSpec {
        rate: Some(400.0),
        total: 20,
        traffic: Traffic::Rooms((0..3).map(|c| (c, 2)).collect()),
        drain: Duration::from_millis(500),
        text_len: 40,
        storm: None,
    });
    assert_eq!(irc.forwarded.load(Ordering::SeqCst), 40);
    report
}

#[test]
fn a_delivery_dropped_on_purpose_is_reported_lost() {
    let report = irc_room_step(Some(17));
    let t = &report.tracker;
    assert_eq!(t.sent, 20);
    assert_eq!(t.expected, 40);
    assert_eq!(t.delivered, 39);
    assert_eq!(t.lost(), 1, "{t:?}");
    assert_eq!(t.messages_with_losses(), 1);
    assert_eq!(t.refused, 0);
    assert_eq!(t.duplicates, 0);
    assert!(t.delivered_ratio() < 1.0);
}

#[test]
fn with_nothing_dropped_nothing_is_lost_and_latency_is_measured() {
    let report = irc_room_step(None);
    let t = &report.tracker;
    assert_eq!((t.expected, t.delivered, t.lost()), (40, 40, 0));
    assert_eq!(t.latency.count(), 40);
    assert!(t.latency.quantile(0.5) > 0);
    assert!(report.deliveries_per_sec() > 0.0);
    // The drain ends as soon as everything is in, not after its timeout.
    assert!(report.secs < 0.45, "{}", report.secs);
}

#[test]
fn private_messages_each_reach_one_other_client() {
    let irc = FakeIrc::start(Some(5));
    let mut engine = Engine::new(irc.addr, Proto::Irc, 4, |i| format!("p{i}")).unwrap();
    assert_eq!(engine.connect(0..4, 2, Duration::from_secs(10)).ok, 4);
    let report = engine.run(&LoadSpec {
        rate: Some(500.0),
        total: 24,
        traffic: Traffic::Private((0..4).collect(), None),
        drain: Duration::from_millis(500),
        text_len: 40,
        storm: None,
    });
    let t = &report.tracker;
    assert_eq!((t.expected, t.delivered, t.lost()), (24, 23, 1));
}

// ---- against a real chatapp server ----

struct Chat {
    _handle: chatapp::server::Handle,
    addr: SocketAddr,
    dir: PathBuf,
}

impl Drop for Chat {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn chat_server(tag: &str, users: usize) -> Chat {
    let dir = std::env::temp_dir().join(format!("loadgen-test-{tag}-{}", std::process::id()));
    seed(
        &dir,
        &[
            Accounts {
                prefix: "c".into(),
                count: users,
                log_n: 4,
            },
            Accounts {
                prefix: "storm".into(),
                count: 50,
                log_n: 4,
            },
        ],
        None,
    )
    .unwrap();
    let mut config = chatapp::server::Config::new(dir.clone());
    config.hash_cost = HashCost::TEST;
    config.log_level = Level::Error;
    let handle = chatapp::server::start("127.0.0.1:0".parse().unwrap(), config).unwrap();
    Chat {
        addr: handle.addr,
        _handle: handle,
        dir,
    }
}

fn chat_engine(chat: &Chat, n: usize) -> Engine {
    let proto = Proto::Chat {
        password: PASSWORD.into(),
    };
    let mut engine = Engine::new(chat.addr, proto, n, |i| format!("c{i}")).unwrap();
    let connected = engine.connect(0..n.min(4), 4, Duration::from_secs(20));
    assert_eq!(connected.ok, n.min(4), "{:?}", engine.stats);
    engine
}

#[test]
fn chatapp_room_messages_are_all_delivered_to_the_other_members() {
    let chat = chat_server("room", 4);
    let mut engine = chat_engine(&chat, 4);
    assert_eq!(
        engine.join_rooms(&[vec![0, 1, 2, 3]], Duration::from_secs(10)),
        4
    );
    let report = engine.run(&LoadSpec {
        rate: Some(100.0),
        total: 20,
        traffic: Traffic::Rooms((0..4).map(|c| (c, 3)).collect()),
        drain: Duration::from_secs(3),
        text_len: 64,
        storm: None,
    });
    let t = &report.tracker;
    assert_eq!(
        (t.expected, t.delivered, t.lost()),
        (60, 60, 0),
        "{report:?}"
    );
    assert_eq!(t.refused, 0);
    // chatapp sends every message back to its sender too, and acknowledges
    // it (the step may end just before the last of those arrive).
    assert!((19..=20).contains(&report.stats.echoes), "{report:?}");
    assert!((19..=20).contains(&report.stats.acks), "{report:?}");
}

#[test]
fn chatapp_rate_limit_refusals_are_counted_apart_from_losses() {
    let chat = chat_server("limit", 2);
    let mut engine = chat_engine(&chat, 2);
    assert_eq!(engine.join_rooms(&[vec![0, 1]], Duration::from_secs(10)), 2);
    // Client 0 sends 30 at once: its budget is a burst of 10, then 5 a second.
    let report = engine.run(&LoadSpec {
        rate: None,
        total: 30,
        traffic: Traffic::Rooms(vec![(0, 1)]),
        drain: Duration::from_secs(3),
        text_len: 64,
        storm: None,
    });
    let t = &report.tracker;
    assert!(t.refused >= 15 && t.refused <= 20, "{t:?}");
    assert_eq!(t.delivered + t.refused, 30, "{t:?}");
    assert_eq!(t.lost(), 0);
    assert_eq!(t.refused_deliveries, t.refused);
    assert!(t.delivered_ratio() < 0.7);
}

#[test]
fn chatapp_private_messages_and_a_login_storm() {
    let chat = chat_server("pm", 6);
    let mut engine = chat_engine(&chat, 6);
    let report = engine.run(&LoadSpec {
        rate: Some(40.0),
        total: 16,
        traffic: Traffic::Private((0..4).collect(), None),
        drain: Duration::from_secs(3),
        text_len: 64,
        storm: Some(StormSpec {
            slots: 4..6,
            accounts: 50,
        }),
    });
    let t = &report.tracker;
    assert_eq!(
        (t.expected, t.delivered, t.lost()),
        (16, 16, 0),
        "{report:?}"
    );
    let storm = report.storm.as_ref().expect("a storm report");
    assert!(storm.logins >= 2, "{storm:?}");
    assert_eq!(storm.failed, 0);
    // Every sender gets its own copy back.
    assert!((15..=16).contains(&report.stats.echoes), "{report:?}");
}

#[test]
fn chatapp_clients_resume_with_their_tokens_and_catch_up() {
    let chat = chat_server("resume", 4);
    let mut engine = chat_engine(&chat, 4);
    assert_eq!(engine.tokens(0..4), 4);
    let first: Vec<String> = (0..4)
        .map(|i| engine.token(i).unwrap().to_string())
        .collect();
    assert!(first.iter().all(|t| t.len() == 64), "{first:?}");
    // One private message each to the next, so each dialogue has a line.
    let report = engine.run(&LoadSpec {
        rate: Some(100.0),
        total: 4,
        traffic: Traffic::Private((0..4).collect(), Some(1)),
        drain: Duration::from_secs(3),
        text_len: 40,
        storm: None,
    });
    assert_eq!(report.tracker.delivered, 4, "{report:?}");
    engine.close_range(0..4);
    // Back with the tokens; logged in only once catch_up is answered.
    engine.resume = true;
    engine.catch_up = Some(0..4);
    let back = engine.connect(0..4, 4, Duration::from_secs(20));
    assert_eq!((back.ok, back.failed), (4, 0), "{:?}", engine.stats);
    assert_eq!(engine.alive(0..4), 4);
    // Each use rotates the token.
    for (i, old) in first.iter().enumerate() {
        let new = engine.token(i).unwrap();
        assert_eq!(new.len(), 64);
        assert_ne!(new, old.as_str(), "client {i}");
    }
    // With resume on but no token held, the engine logs in with its
    // password (here a wrong one: refused).
    let proto = Proto::Chat {
        password: "not the password".into(),
    };
    let mut stranger = Engine::new(chat.addr, proto, 1, |_| "c0".into()).unwrap();
    stranger.resume = true;
    let refused = stranger.connect(0..1, 1, Duration::from_secs(20));
    assert_eq!((refused.ok, refused.failed), (0, 1), "{:?}", stranger.stats);
}
