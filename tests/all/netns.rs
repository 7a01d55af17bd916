//! Real network faults, on hosts these tests build out of Linux network
//! namespaces: a server host, a router, and two client hosts, joined by
//! veth pairs with addresses in 10.250.0.0/16 that exist only inside those
//! namespaces. The real `chatapp serve` runs on the server host; a protocol
//! client is this test binary run again on its own host (`netns_helper`,
//! driven line by line over its standard input).
//!
//! The first test gives the paths 50 ms of delay each way and 1% loss;
//! every message must still arrive, in order. Then one client's link is
//! cut: the server (with no grace period) must drop it at its shortened
//! idle timeout and tell the room, and the client must report the
//! connection lost.
//!
//! The second is the issue "Continuity": the real interactive client, in
//! a pseudo-terminal on a client host, has its link cut for 30 s while the
//! server holds its place for a grace period. It must come back by itself
//! when the link does, with nothing lost or repeated either way, and the
//! room must have been told that it was away and that it is back.
//!
//! Delay and loss come from `tc netem` where the kernel has it. Where it
//! does not, loss comes from nftables (`numgen random`) on the client hosts
//! and delay from a relay on the router that holds every chunk for 50 ms
//! each way; the output says which was used. Without root, or where
//! `ip netns add` fails, the test says why and skips.
//!
//! Needs `ip` (iproute2) and, on kernels without netem, `nft` (nftables).
//! Run with `--nocapture` to read the figures.

use crate::kit;
use crate::kit::pty::{self, Client, Home};
use chatapp::client::proto::{self, Connection};
use chatapp::wire::msg::{Event, LeaveReason, Reply, Request};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, TryRecvError};
use std::thread;
use std::time::{Duration, Instant};

/// Set in a helper's environment: what it plays (`client` or `relay`).
const ROLE: &str = "CHATAPP_NETNS_ROLE";
/// Lines a helper prints for the test start with this.
const MARK: &str = "@@ ";
const DELAY_MS: u64 = 50;
const LOSS_PERCENT: u32 = 1;
/// The server's idle deadlines, shortened (seconds).
const IDLE_PING: f64 = 2.0;
const IDLE_CLOSE: f64 = 4.0;
/// Lines each client says under delay and loss.
const LINES: usize = 30;
const PORT: u16 = 7878;
const SERVER_IP: &str = "10.250.0.1";

// ---- the hosts ----

/// The namespaces of one run, deleted (with their links and whatever still
/// runs in them) when dropped, even after a failure.
struct Lab {
    prefix: String,
    made: Vec<String>,
    children: Vec<Child>,
}

/// Labs made by this process so far: each gets namespaces of its own, so
/// that tests running at once do not meet.
static LABS: AtomicUsize = AtomicUsize::new(0);

impl Lab {
    /// The four hosts, linked and routed through `rtr`: `srv` (the server,
    /// [`SERVER_IP`]), `c1` (10.250.1.1) and `c2` (10.250.2.1), each client
    /// host's link `eth0` to the router's `r1` or `r2`. `None`, after
    /// saying why, where namespaces cannot be made (a failure under CI).
    fn build() -> Option<Lab> {
        let mut lab = Lab {
            prefix: format!(
                "chatapp{}-{}-",
                std::process::id(),
                LABS.fetch_add(1, Ordering::Relaxed)
            ),
            made: Vec::new(),
            children: Vec::new(),
        };
        // CI runs this as root, where namespaces can be made.
        kit::require(lab.add("srv"), "network namespaces (root, with ip and tc)")?;
        for host in ["rtr", "c1", "c2"] {
            lab.add(host).expect("a namespace");
        }
        lab.link("rtr", "r0", "10.250.0.254", "srv", "eth0", SERVER_IP)
            .unwrap();
        lab.link("rtr", "r1", "10.250.1.254", "c1", "eth0", "10.250.1.1")
            .unwrap();
        lab.link("rtr", "r2", "10.250.2.254", "c2", "eth0", "10.250.2.1")
            .unwrap();
        lab.ip("srv", "route add default via 10.250.0.254").unwrap();
        lab.ip("c1", "route add default via 10.250.1.254").unwrap();
        lab.ip("c2", "route add default via 10.250.2.254").unwrap();
        lab.exec("rtr", "sysctl", &["-qw", "net.ipv4.ip_forward=1"])
            .unwrap();
        Some(lab)
    }

    /// Runs `chatapp serve` on `srv` at [`SERVER_IP`]:[`PORT`], keeping its
    /// data in `data`, with the shortened idle deadlines and a grace period
    /// of `grace` seconds; returns its key's fingerprint once it listens.
    fn serve(&mut self, data: &Path, grace: u32) -> String {
        let listen = format!("{SERVER_IP}:{PORT}");
        let mut command = self.command("srv", Path::new(env!("CARGO_BIN_EXE_chatapp")));
        command
            .args(["serve", "--listen", &listen, "--scrypt-log-n", "4"])
            .args(["--grace", &grace.to_string()])
            .args(["--idle-ping", &IDLE_PING.to_string()])
            .args(["--idle-close", &IDLE_CLOSE.to_string()])
            .arg("--data-dir")
            .arg(data)
            .env("CHATAPP_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut server = command
            .spawn()
            .expect("start chatapp serve in its namespace");
        let mut first = String::new();
        BufReader::new(server.stdout.take().unwrap())
            .read_line(&mut first)
            .expect("the server's first line");
        self.children.push(server);
        let key = first
            .split_whitespace()
            .last()
            .unwrap_or_default()
            .to_string();
        assert!(
            first.contains(&listen) && key.starts_with("SHA256:"),
            "{first:?}"
        );
        key
    }

    fn ns(&self, host: &str) -> String {
        format!("{}{host}", self.prefix)
    }

    fn add(&mut self, host: &str) -> Result<(), String> {
        let ns = self.ns(host);
        run("ip", &["netns", "add", &ns])?;
        self.made.push(ns.clone());
        run("ip", &["-n", &ns, "link", "set", "lo", "up"])
    }

    /// `ip -n NS ARGS...`
    fn ip(&self, host: &str, args: &str) -> Result<(), String> {
        let ns = self.ns(host);
        let mut all = vec!["-n", ns.as_str()];
        all.extend(args.split_whitespace());
        run("ip", &all)
    }

    /// `ip netns exec NS PROGRAM ARGS...`, waited for.
    fn exec(&self, host: &str, program: &str, args: &[&str]) -> Result<String, String> {
        let ns = self.ns(host);
        let mut all = vec!["netns", "exec", ns.as_str(), program];
        all.extend(args);
        output("ip", &all)
    }

    /// A command that runs inside the host's namespace.
    fn command(&self, host: &str, program: &Path) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.ns(host)]).arg(program);
        command
    }

    /// A point-to-point link: `a_if` on `a` with `a_addr`, `b_if` on `b`
    /// with `b_addr` (both /24).
    fn link(
        &self,
        a: &str,
        a_if: &str,
        a_addr: &str,
        b: &str,
        b_if: &str,
        b_addr: &str,
    ) -> Result<(), String> {
        self.ip(
            a,
            &format!(
                "link add {a_if} type veth peer name {b_if} netns {}",
                self.ns(b)
            ),
        )?;
        self.ip(a, &format!("addr add {a_addr}/24 dev {a_if}"))?;
        self.ip(b, &format!("addr add {b_addr}/24 dev {b_if}"))?;
        self.ip(a, &format!("link set {a_if} up"))?;
        self.ip(b, &format!("link set {b_if} up"))
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // The last started first: clients before their server.
        for child in self.children.iter_mut().rev() {
            let _ = child.kill();
            let _ = child.wait();
        }
        for ns in self.made.drain(..).rev() {
            if let Err(e) = run("ip", &["netns", "del", &ns]) {
                eprintln!("cleaning up: {e}");
            }
        }
    }
}

fn output(program: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "`{program} {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn run(program: &str, args: &[&str]) -> Result<(), String> {
    output(program, args).map(|_| ())
}

/// The ruleset that drops `LOSS_PERCENT`% of the packets each way, counting
/// all and dropped.
fn loss_rules() -> String {
    let drop = format!("numgen random mod 100 < {LOSS_PERCENT} counter drop");
    format!(
        "table inet chatapp_loss {{\n\
         chain in {{ type filter hook input priority 0; policy accept; counter; {drop}; }}\n\
         chain out {{ type filter hook output priority 0; policy accept; counter; {drop}; }}\n\
         }}\n"
    )
}

/// (packets seen, packets dropped) by the loss rules on `host`.
fn loss_counts(lab: &Lab, host: &str) -> (u64, u64) {
    let listing = lab
        .exec(host, "nft", &["list", "table", "inet", "chatapp_loss"])
        .unwrap_or_default();
    let counts: Vec<u64> = listing
        .split("packets ")
        .skip(1)
        .filter_map(|rest| rest.split_whitespace().next()?.parse().ok())
        .collect();
    // Per chain: all, then dropped.
    let seen = counts.iter().step_by(2).sum();
    let dropped = counts.iter().skip(1).step_by(2).sum();
    (seen, dropped)
}

// ---- the helpers, run inside the client and router hosts ----

/// Speaks for one process this test started in a namespace.
struct Helper {
    name: String,
    stdin: ChildStdin,
    lines: Receiver<(Instant, String)>,
    /// Every report read so far, in order, and when each came.
    heard: Vec<String>,
    when: Vec<Instant>,
}

impl Helper {
    fn start(lab: &mut Lab, host: &str, name: &str, envs: &[(&str, &str)]) -> Helper {
        let exe = std::env::current_exe().expect("this test binary");
        let mut command = lab.command(host, &exe);
        command
            .args(["netns::netns_helper", "--exact", "--ignored", "--nocapture"])
            .args(["--test-threads", "1"])
            .envs(envs.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = command.spawn().expect("start a helper");
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(at) = line.find(MARK) {
                    let _ = tx.send((Instant::now(), line[at + MARK.len()..].to_string()));
                }
            }
        });
        lab.children.push(child);
        Helper {
            name: name.to_string(),
            stdin,
            lines,
            heard: Vec::new(),
            when: Vec::new(),
        }
    }

    fn send(&mut self, command: &str) {
        writeln!(self.stdin, "{command}").expect("command a helper");
        self.stdin.flush().unwrap();
    }

    /// The helper's next report, within `wait`.
    fn report(&mut self, wait: Duration) -> String {
        match self.lines.recv_timeout(wait) {
            Ok((when, line)) => {
                self.heard.push(line.clone());
                self.when.push(when);
                line
            }
            Err(e) => panic!("{}: no report within {wait:?} ({e})", self.name),
        }
    }

    /// Waits until the helper has reported `wanted` (maybe already, while
    /// something else was awaited); its place in [`Helper::heard`].
    fn until(&mut self, wanted: &str, wait: Duration) -> usize {
        let deadline = Instant::now() + wait;
        loop {
            if let Some(at) = self.heard.iter().position(|line| line == wanted) {
                return at;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok((when, line)) => {
                    self.heard.push(line);
                    self.when.push(when);
                }
                Err(e) => panic!(
                    "{}: no {wanted:?} within {wait:?} ({e}); it reported:\n{}",
                    self.name,
                    self.heard.join("\n")
                ),
            }
        }
    }

    fn ask(&mut self, command: &str, wait: Duration) -> String {
        self.send(command);
        self.report(wait)
    }
}

fn say(line: impl std::fmt::Display) {
    println!("{MARK}{line}");
    let _ = std::io::stdout().flush();
}

/// Not a test of its own: `netns_helper` plays a client or the relay when
/// the test above starts it inside a namespace with [`ROLE`] set.
#[test]
#[ignore = "a helper that the netns test runs inside its namespaces"]
fn netns_helper() {
    match std::env::var(ROLE).as_deref() {
        Ok("client") => client(),
        Ok("relay") => relay(),
        Ok("observer") => observer(),
        _ => {}
    }
}

/// Relays TCP from `CHATAPP_RELAY_LISTEN` to `CHATAPP_RELAY_UPSTREAM`,
/// holding every chunk `CHATAPP_RELAY_DELAY_MS` in each direction (in
/// order, without slowing the throughput).
fn relay() {
    let var = |name: &str| std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set"));
    let listener = TcpListener::bind(var("CHATAPP_RELAY_LISTEN")).expect("bind the relay");
    let upstream = var("CHATAPP_RELAY_UPSTREAM");
    let delay = Duration::from_millis(var("CHATAPP_RELAY_DELAY_MS").parse().unwrap());
    say("ready");
    for down in listener.incoming() {
        let Ok(down) = down else { continue };
        let Ok(up) = TcpStream::connect(&upstream) else {
            continue;
        };
        let _ = down.set_nodelay(true);
        let _ = up.set_nodelay(true);
        pipe(down.try_clone().unwrap(), up.try_clone().unwrap(), delay);
        pipe(up, down, delay);
    }
}

fn pipe(mut from: TcpStream, mut to: TcpStream, delay: Duration) {
    let (tx, rx) = mpsc::channel::<(Instant, Option<Vec<u8>>)>();
    thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => {
                    let _ = tx.send((Instant::now() + delay, None));
                    return;
                }
                Ok(n) => {
                    let _ = tx.send((Instant::now() + delay, Some(buf[..n].to_vec())));
                }
            }
        }
    });
    thread::spawn(move || {
        for (due, chunk) in rx {
            thread::sleep(due.saturating_duration_since(Instant::now()));
            match chunk {
                Some(bytes) if to.write_all(&bytes).is_ok() => {}
                Some(_) => {
                    let _ = to.shutdown(Shutdown::Both);
                    return;
                }
                None => {
                    let _ = to.shutdown(Shutdown::Write);
                    return;
                }
            }
        }
    });
}

/// A chat client run by commands on standard input, one per line; each is
/// answered by one report line.
fn client() {
    let mut conn: Option<Connection> = None;
    let mut name = String::new();
    for line in std::io::stdin().lines() {
        let line = line.expect("a command");
        let words: Vec<&str> = line.split_whitespace().collect();
        let at = Instant::now();
        match words.as_slice() {
            ["connect", addr, who] => {
                conn = Some(sign_up(addr, who));
                name = who.to_string();
                say(format!("registered in {} ms", at.elapsed().as_millis()));
            }
            ["create", room] => create(conn.as_mut().unwrap(), &name, room),
            ["join", room] => {
                let c = conn.as_mut().unwrap();
                let room = room.parse().unwrap();
                match c.request(Request::JoinRoom { room }) {
                    Ok(Reply::Room { .. }) => say("joined"),
                    other => panic!("{name}: join: {other:?}"),
                }
            }
            ["rtt"] => {
                let c = conn.as_mut().unwrap();
                let mut rtts: Vec<u128> = (0..5)
                    .map(|_| {
                        let sent = Instant::now();
                        let reply = c.request(Request::Ping).expect("ping");
                        assert_eq!(reply, Reply::Pong);
                        sent.elapsed().as_millis()
                    })
                    .collect();
                rtts.sort_unstable();
                say(format!("rtt {} {} {}", rtts[0], rtts[2], rtts[4]));
            }
            ["say", count, every_ms] => {
                let c = conn.as_mut().unwrap();
                let every = Duration::from_millis(every_ms.parse().unwrap());
                for i in 0..count.parse::<usize>().unwrap() {
                    let due = at + every * i as u32;
                    thread::sleep(due.saturating_duration_since(Instant::now()));
                    let reply = c
                        .request_within(
                            Request::Say {
                                text: format!("{name} {i}"),
                                client_id: 0,
                            },
                            Duration::from_secs(10),
                        )
                        .unwrap_or_else(|e| panic!("{name}: say {i}: {e}"));
                    assert_eq!(reply, Reply::Ok, "{name}: say {i}");
                }
                say(format!("said {count} in {} ms", at.elapsed().as_millis()));
            }
            ["expect", count, wait_ms, senders @ ..] => {
                let c = conn.as_mut().unwrap();
                let count: usize = count.parse().unwrap();
                let deadline = at + Duration::from_millis(wait_ms.parse().unwrap());
                let mut got: Vec<Vec<usize>> = vec![Vec::new(); senders.len()];
                let mut other = Vec::new();
                while got.iter().any(|g| g.len() < count) {
                    let left = deadline.saturating_duration_since(Instant::now());
                    match c.next_event(Some(left)) {
                        Ok(Some(Event::RoomMessage { line, .. })) => {
                            let (from, n) = line.text.split_once(' ').unwrap();
                            let s = senders.iter().position(|s| *s == from).unwrap();
                            assert_eq!(from, &*line.from, "a line says who sent it");
                            got[s].push(n.parse().unwrap());
                        }
                        Ok(Some(Event::Ping | Event::Joined { .. })) => {}
                        Ok(Some(e)) => other.push(e),
                        Ok(None) => break,
                        Err(e) => panic!("{name}: {e}"),
                    }
                }
                let in_order = got.iter().all(|g| *g == (0..count).collect::<Vec<_>>());
                let counts: Vec<usize> = got.iter().map(Vec::len).collect();
                say(format!(
                    "got {counts:?} in_order={in_order} other={other:?} in {} ms",
                    at.elapsed().as_millis()
                ));
            }
            ["probe", wait_ms] => {
                let c = conn.as_mut().unwrap();
                let wait = Duration::from_millis(wait_ms.parse().unwrap());
                match c.request_within(Request::Ping, wait) {
                    Ok(reply) => say(format!(
                        "answered {reply:?} in {} ms",
                        at.elapsed().as_millis()
                    )),
                    Err(e) => say(format!("error after {} ms: {e}", at.elapsed().as_millis())),
                }
            }
            ["wait-left", who, wait_ms] => {
                let c = conn.as_mut().unwrap();
                let deadline = at + Duration::from_millis(wait_ms.parse().unwrap());
                let mut pings = 0;
                loop {
                    let left = deadline.saturating_duration_since(Instant::now());
                    match c.next_event(Some(left)) {
                        Ok(Some(Event::Left {
                            name: n, reason, ..
                        })) if n == *who => {
                            say(format!(
                                "left {reason:?} after {} ms (pinged {pings} times meanwhile)",
                                at.elapsed().as_millis()
                            ));
                            break;
                        }
                        Ok(Some(Event::Ping)) => pings += 1,
                        Ok(Some(e)) => panic!("{name}: unexpected {e:?}"),
                        Ok(None) => {
                            say("no left event");
                            break;
                        }
                        Err(e) => panic!("{name}: {e}"),
                    }
                }
            }
            ["quit"] => break,
            _ => panic!("unknown command {line:?}"),
        }
    }
}

/// Connects to `addr`, checks that the server's key is the one in
/// `CHATAPP_NETNS_KEY`, and registers `who`.
fn sign_up(addr: &str, who: &str) -> Connection {
    let fingerprint = std::env::var("CHATAPP_NETNS_KEY").expect("the server key");
    let unverified = proto::connect(addr).unwrap_or_else(|e| panic!("{who}: {e}"));
    assert_eq!(unverified.fingerprint(), fingerprint, "the server's key");
    let mut c = unverified.accept();
    let reply = c
        .request(Request::Register {
            name: who.to_string(),
            password: "namespaced password 2024".into(),
        })
        .expect("register");
    assert!(matches!(reply, Reply::LoggedIn { .. }), "{reply:?}");
    c
}

/// Creates a room and reports `room N`.
fn create(c: &mut Connection, name: &str, room: &str) {
    match c.request(Request::CreateRoom {
        name: room.to_string(),
        capacity: 10,
    }) {
        Ok(Reply::Room { room, .. }) => say(format!("room {}", room.id)),
        other => panic!("{name}: create: {other:?}"),
    }
}

/// A room member that stays connected for as long as it runs (the
/// connection answers the server's pings) and reports what the room tells
/// it as it comes: `event message FROM TEXT`, `event away NAME`, `event
/// back NAME`, `event joined NAME`, `event left NAME REASON`, and `lost
/// WHY` when its own connection ends (then it stops). Its commands,
/// taken whenever they come: `connect ADDR NAME`, `create ROOM`, `say
/// TEXT` (reported `said TEXT` once the server took it), `quit`.
fn observer() {
    let (tx, commands) = mpsc::channel();
    thread::spawn(move || {
        for line in std::io::stdin().lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let mut conn: Option<Connection> = None;
    let mut name = String::new();
    loop {
        let line = match conn.as_mut() {
            None => match commands.recv() {
                Ok(line) => line,
                Err(_) => return,
            },
            Some(c) => {
                let event = match c.next_event(Some(Duration::from_millis(50))) {
                    Ok(event) => event,
                    Err(e) => {
                        say(format!("lost {e}"));
                        return;
                    }
                };
                match event {
                    Some(Event::RoomMessage { line, .. }) => {
                        say(format!("event message {} {}", line.from, line.text))
                    }
                    Some(Event::Away { name, .. }) => say(format!("event away {name}")),
                    Some(Event::Back { name, .. }) => say(format!("event back {name}")),
                    Some(Event::Joined { name, .. }) => say(format!("event joined {name}")),
                    Some(Event::Left { name, reason, .. }) => {
                        say(format!("event left {name} {reason:?}"))
                    }
                    Some(Event::Ping) | None => {}
                    Some(other) => say(format!("event {other:?}")),
                }
                match commands.try_recv() {
                    Ok(line) => line,
                    Err(TryRecvError::Empty) => continue,
                    Err(TryRecvError::Disconnected) => return,
                }
            }
        };
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["connect", addr, who] => {
                conn = Some(sign_up(addr, who));
                name = who.to_string();
                say("registered");
            }
            ["create", room] => create(conn.as_mut().unwrap(), &name, room),
            ["say", ..] => {
                let text = line["say ".len()..].to_string();
                let reply = conn
                    .as_mut()
                    .unwrap()
                    .request_within(
                        Request::Say {
                            text: text.clone(),
                            client_id: 0,
                        },
                        Duration::from_secs(10),
                    )
                    .unwrap_or_else(|e| panic!("{name}: say {text:?}: {e}"));
                assert_eq!(reply, Reply::Ok, "{name}: say {text:?}");
                say(format!("said {text}"));
            }
            ["quit"] => return,
            _ => panic!("unknown command {line:?}"),
        }
    }
}

// ---- the tests ----

#[test]
fn messages_survive_delay_and_loss_and_a_cut_link_is_noticed_on_both_sides() {
    let started = Instant::now();
    let Some(mut lab) = Lab::build() else {
        return;
    };

    // Delay and loss: netem on both ends of each client link if the kernel
    // has it; otherwise nftables for loss and a delaying relay.
    let netem = format!("root netem delay {DELAY_MS}ms loss {LOSS_PERCENT}%");
    let netem_result = lab.exec(
        "c1",
        "tc",
        &["qdisc", "add", "dev", "eth0"]
            .iter()
            .copied()
            .chain(netem.split_whitespace())
            .collect::<Vec<_>>(),
    );
    let (how, relayed) = match netem_result {
        Ok(_) => {
            for (host, dev) in [("c2", "eth0"), ("rtr", "r1"), ("rtr", "r2")] {
                let mut args = vec!["qdisc", "add", "dev", dev];
                args.extend(netem.split_whitespace());
                lab.exec(host, "tc", &args).unwrap();
            }
            (
                format!(
                    "tc netem: {DELAY_MS} ms delay and {LOSS_PERCENT}% loss each way on both client links"
                ),
                false,
            )
        }
        Err(netem_error) => {
            let rules = tempfile::NamedTempFile::new().unwrap();
            std::fs::write(rules.path(), loss_rules()).unwrap();
            let path = rules.path().to_str().unwrap();
            let loss = ["c1", "c2"]
                .iter()
                .map(|host| lab.exec(host, "nft", &["-f", path]))
                .collect::<Result<Vec<_>, _>>();
            let loss = match loss {
                Ok(_) => format!("loss {LOSS_PERCENT}% each way on both client links by nftables"),
                Err(e) => {
                    format!("NO LOSS applied: nftables failed too ({e}; apt-get install nftables)")
                }
            };
            (
                format!(
                    "tc netem is missing here ({netem_error}); {loss}; delay {DELAY_MS} ms each way by a \
                     relay on the router"
                ),
                true,
            )
        }
    };
    println!("network: {how}");

    // The server, on its host. The cut client leaves at once (no grace
    // period): the room is told.
    let data = tempfile::tempdir().unwrap();
    let listen = format!("{SERVER_IP}:{PORT}");
    let key = lab.serve(data.path(), 0);

    let target = |client_net: &str| {
        if relayed {
            format!("10.250.{client_net}.254:{PORT}")
        } else {
            listen.clone()
        }
    };
    if relayed {
        let mut relay = Helper::start(
            &mut lab,
            "rtr",
            "relay",
            &[
                (ROLE, "relay"),
                ("CHATAPP_RELAY_LISTEN", "0.0.0.0:7878"),
                ("CHATAPP_RELAY_UPSTREAM", &listen),
                ("CHATAPP_RELAY_DELAY_MS", &DELAY_MS.to_string()),
            ],
        );
        assert_eq!(relay.report(Duration::from_secs(10)), "ready");
    }
    let envs = [(ROLE, "client"), ("CHATAPP_NETNS_KEY", key.as_str())];
    let mut ann = Helper::start(&mut lab, "c1", "ann", &envs);
    let mut bob = Helper::start(&mut lab, "c2", "bob", &envs);
    let long = Duration::from_secs(20);
    for (helper, net, name) in [(&mut ann, "1", "ann"), (&mut bob, "2", "bob")] {
        let report = helper.ask(&format!("connect {} {name}", target(net)), long);
        assert!(report.starts_with("registered"), "{name}: {report}");
    }
    let room = ann.ask("create lab", long);
    let room = room.strip_prefix("room ").expect("a room").to_string();
    assert_eq!(bob.ask(&format!("join {room}"), long), "joined");
    let rtt = ann.ask("rtt", long);
    println!("ann's round trips to the server (min, median, max ms): {rtt}");
    let median: u64 = rtt.split_whitespace().nth(2).unwrap().parse().unwrap();
    assert!(median >= 2 * DELAY_MS, "the delay is in place: {rtt}");

    // Both talk at once, 30 lines each at 4 a second; each hears both, all.
    let talk = Instant::now();
    ann.send(&format!("say {LINES} 250"));
    bob.send(&format!("say {LINES} 250"));
    for helper in [&mut ann, &mut bob] {
        let report = helper.report(long);
        assert!(
            report.starts_with(&format!("said {LINES}")),
            "{}: {report}",
            helper.name
        );
    }
    let expect = format!("expect {LINES} 15000 ann bob");
    let heard: Vec<String> = [&mut ann, &mut bob]
        .into_iter()
        .map(|h| h.ask(&expect, long))
        .collect();
    let all = format!("got [{LINES}, {LINES}] in_order=true other=[]");
    for (who, report) in ["ann", "bob"].iter().zip(&heard) {
        println!("{who} heard: {report}");
        assert!(report.starts_with(&all), "{who}: {report}");
    }
    let (seen, dropped) = if relayed {
        let (s1, d1) = loss_counts(&lab, "c1");
        let (s2, d2) = loss_counts(&lab, "c2");
        (s1 + s2, d1 + d2)
    } else {
        (0, 0)
    };
    println!(
        "{} lines, every one delivered to both in order, in {:.1} s{}",
        2 * LINES,
        talk.elapsed().as_secs_f64(),
        if relayed {
            format!("; nftables dropped {dropped} of {seen} packets on the client links")
        } else {
            String::new()
        }
    );

    // Cut bob's link. The server hears nothing more from him: it drops him
    // at the idle timeout and tells ann; bob finds his connection dead.
    assert!(bob.ask("probe 5000", long).starts_with("answered Pong"));
    let cut = Instant::now();
    lab.ip("c2", "link set eth0 down").unwrap();
    let wait = ((IDLE_CLOSE + 3.0) * 1000.0) as u64;
    ann.send(&format!("wait-left bob {wait}"));
    bob.send(&format!("probe {}", ((IDLE_CLOSE + 2.0) * 1000.0) as u64));
    let ann_saw = ann.report(long);
    let ann_at = cut.elapsed();
    // ann goes on, alone. Asked at once: a helper waiting for its next
    // command reads nothing, so it answers none of the server's pings, and
    // by the time bob's probe gives up (2 s later) the server could drop
    // ann as silent too.
    let ann_after = ann.ask("probe 5000", long);
    let bob_saw = bob.report(long);
    println!(
        "bob's link cut: ann told after {:.1} s: {ann_saw}; bob's client: {bob_saw}",
        ann_at.as_secs_f64()
    );
    assert!(
        ann_saw.starts_with(&format!("left {:?}", LeaveReason::Disconnected)),
        "{ann_saw}"
    );
    let idle = Duration::from_secs_f64(IDLE_CLOSE);
    assert!(
        ann_at >= idle - Duration::from_millis(300) && ann_at <= idle + Duration::from_millis(1500),
        "told after {ann_at:?}, the idle timeout is {idle:?}"
    );
    assert!(bob_saw.starts_with("error after"), "{bob_saw}");

    assert!(ann_after.starts_with("answered Pong"), "ann: {ann_after}");
    ann.send("quit");
    bob.send("quit");
    drop(lab);
    println!(
        "the whole test took {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

/// How long the continuity test cuts the link.
const CUT: Duration = Duration::from_secs(30);
/// By when, after the cut, the client must have said its connection is
/// lost: it gives up on a server it has not heard from for 20 s.
const NOTICE: Duration = Duration::from_secs(25);
/// By when, after the link is back, the client must be back: a connect
/// attempt times out after 10 s and the waits between attempts grow to
/// 30 s at most.
const RETURN: Duration = Duration::from_secs(90);

/// The issue "Continuity": a 30 s cut between one client and the server.
/// carol uses the real client, in a terminal on `c2`; olive, on `c1`, is
/// in the room with her. While carol's link is down, olive says three
/// lines (one as soon as it is cut, one once the server has let carol go,
/// one while carol's client tries to reconnect), and carol sends two lines
/// and starts a third. Once the link is back, carol's client must come
/// back by itself, without asking for the password: carol sees each of
/// olive's lines once, olive gets carol's two lines once each and in
/// order, the third is still on carol's input line and goes whole, and
/// olive was told that carol was away and then that she was back.
#[test]
fn a_thirty_second_cut_is_ridden_out_by_the_real_client() {
    let started = Instant::now();
    let Some(mut lab) = Lab::build() else {
        return;
    };
    let data = tempfile::tempdir().unwrap();
    // The server drops a silent client at its idle deadline (4 s) and keeps
    // its place in its rooms for 60 s.
    let key = lab.serve(data.path(), 60);
    let listen = format!("{SERVER_IP}:{PORT}");
    let long = Duration::from_secs(20);

    let envs = [(ROLE, "observer"), ("CHATAPP_NETNS_KEY", key.as_str())];
    let mut olive = Helper::start(&mut lab, "c1", "olive", &envs);
    assert_eq!(
        olive.ask(&format!("connect {listen} olive"), long),
        "registered"
    );
    let room = olive.ask("create Porch", long);
    let id = room.strip_prefix("room ").expect("a room").to_string();

    let home = Home::new();
    let mut command = lab.command("c2", Path::new(env!("CARGO_BIN_EXE_chatapp")));
    command.args(["connect", "--accept-new-server", &listen]);
    home.environment(&mut command);
    let mut carol = Client::spawn_command("carol", command);
    carol.expect("Trusting the new server");
    pty::register(&mut carol, "carol");
    pty::join_room(&mut carol, "Porch", &id);
    olive.until("event joined carol", long);
    carol.line("hello from c2");
    pty::expect_message(&mut carol, "carol", "hello from c2");
    olive.until("event message carol hello from c2", long);

    // The cut: the router's end of carol's link goes down. Nothing passes
    // either way, and nothing says so to either end: carol's host only
    // sees its link lose its carrier.
    let olive_said = [
        "one, just after the cut",
        "two, once the server let carol go",
        "three, while carol's client reconnects",
    ];
    let carol_said = ["first line in the dark", "second line in the dark"];
    let half = "and a third, half ty";
    let carol_from = carol.transcript().len();
    let olive_from = olive.heard.len();
    let cut = Instant::now();
    lab.ip("rtr", "link set r2 down").unwrap();
    let olive_says = |olive: &mut Helper, text: &str| {
        olive.send(&format!("say {text}"));
        olive.until(&format!("said {text}"), long);
    };
    olive_says(&mut olive, olive_said[0]);
    let by_notice = |cut: Instant| (cut + NOTICE).saturating_duration_since(Instant::now());
    let away = olive.until("event away carol", by_notice(cut));
    let away = olive.when[away] - cut;
    olive_says(&mut olive, olive_said[1]);
    carol.expect_within("Connection lost: ", by_notice(cut));
    let noticed = cut.elapsed();
    carol.expect("Reconnecting by itself; what you type is kept.");
    olive_says(&mut olive, olive_said[2]);
    for text in carol_said {
        carol.line(text);
        carol.expect(&format!(
            "carol: {text} (pending: sent when the connection is back)"
        ));
    }
    carol.send(half);
    let input = format!("> {half}");
    carol.wait_screen(
        "the half-typed line over the reconnecting status",
        |rows, (row, _)| {
            let row = usize::from(row);
            rows[row].trim_end() == input
                && rows
                    .get(row + 1)
                    .is_some_and(|status| status.starts_with("Connection lost, reconnecting"))
        },
    );
    assert!(
        cut.elapsed() < CUT,
        "all that was to happen during the cut took {:?}",
        cut.elapsed()
    );
    thread::sleep(CUT.saturating_sub(cut.elapsed()));
    lab.ip("rtr", "link set r2 up").unwrap();
    let restored = Instant::now();
    let cut_for = cut.elapsed();

    // carol's client comes back by itself.
    carol.expect_within("Connected again.", RETURN);
    let back = restored.elapsed();
    for text in olive_said {
        pty::expect_message(&mut carol, "olive", text);
    }
    let told_back = olive.until("event back carol", long);
    let told_back = olive.when[told_back] - restored;
    for text in carol_said {
        olive.until(&format!("event message carol {text}"), long);
    }
    // The half-typed line is still hers to finish, and goes whole.
    carol.wait_screen("the half-typed line, back at work", |rows, (row, _)| {
        rows[usize::from(row)].trim_end() == input
    });
    carol.send("\r");
    olive.until(&format!("event message carol {half}"), long);
    // A last word each way: anything that was to come twice has come.
    olive_says(&mut olive, "that is all");
    pty::expect_message(&mut carol, "olive", "that is all");
    carol.line("over and out");
    olive.until("event message carol over and out", long);

    let transcript = carol.transcript();
    let since_cut = &transcript[carol_from..];
    for text in olive_said {
        let line = format!("olive: {text}");
        assert_eq!(
            since_cut.matches(&line).count(),
            1,
            "carol should see {line:?} once:\n{since_cut}"
        );
    }
    assert!(
        !since_cut.contains("Password"),
        "the password was asked for again:\n{since_cut}"
    );
    let heard = &olive.heard[olive_from..];
    let from_carol: Vec<&str> = heard
        .iter()
        .filter_map(|line| line.strip_prefix("event message carol "))
        .collect();
    assert_eq!(
        from_carol,
        [carol_said[0], carol_said[1], half, "over and out"],
        "what olive got from carol, in order:\n{}",
        heard.join("\n")
    );
    let at = |wanted: &str| heard.iter().filter(|line| *line == wanted).count();
    assert_eq!(
        (at("event away carol"), at("event back carol")),
        (1, 1),
        "olive should be told once that carol was away and once that she was back:\n{}",
        heard.join("\n")
    );
    let away_at = heard.iter().position(|line| line == "event away carol");
    let back_at = heard.iter().position(|line| line == "event back carol");
    assert!(away_at < back_at, "away, then back:\n{}", heard.join("\n"));
    assert!(
        !heard
            .iter()
            .any(|line| line.starts_with("event left carol")),
        "carol never left the room:\n{}",
        heard.join("\n")
    );

    println!(
        "carol's link cut for {:.1} s: the room was told she was away after {:.1} s, her client \
         noticed after {:.1} s",
        cut_for.as_secs_f64(),
        away.as_secs_f64(),
        noticed.as_secs_f64()
    );
    println!(
        "link back: carol's client was back {:.1} s later, and the room told so {:.1} s later",
        back.as_secs_f64(),
        told_back.as_secs_f64()
    );
    olive.send("quit");
    drop(carol);
    drop(lab);
    println!(
        "the whole test took {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
