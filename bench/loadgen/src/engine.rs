//! The load generator's event loop: one thread, mio, many client
//! connections of one protocol. It connects and logs clients in, puts them
//! in rooms, then sends messages on an open-loop schedule and matches every
//! delivery against what was sent ([`Tracker`]).
//!
//! Both protocols are spoken for real: chatapp's Noise NX handshake,
//! encrypted frames and MessagePack requests (with accounts logging in), and
//! IRC's NICK/USER/JOIN/PRIVMSG lines.
//!
//! The chatapp side shares all of the protocol with chatapp itself
//! (`chatapp::wire`: framing, the Noise handshake and transport, the
//! messages and their encoding). Only the driving is its own: chatapp's
//! client protocol module and the tests' raw client are blocking, one
//! connection per thread, while this loop keeps tens of thousands of
//! connections non-blocking on one thread and reuses its buffers, which
//! is what lets it deliver millions of messages a second.

use crate::hist::Histogram;
use crate::probe::{self, Probe};
use crate::track::{Tracker, find_stamp, payload};
use chatapp::wire::frame;
use chatapp::wire::msg::{self, ClientFrame, ErrorCode, Event, Reply, Request, ServerFrame};
use chatapp::wire::noise::{ClientHandshake, Transport};
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::ops::Range;
use std::time::{Duration, Instant};

/// Request ids with this bit are control requests (login, rooms, pings);
/// without it, the id is a message's: the step's low 7 bits, then its number.
const CTL: u32 = 0x8000_0000;
const MSG_BITS: u32 = 24;
const MSG_MASK: u32 = (1 << MSG_BITS) - 1;
/// How a chatapp event starts on the wire: `{"type": "event", ...`.
const EVENT_PREFIX: &[u8] = b"\x82\xa4type\xa5event";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Proto {
    /// chatapp; every account has this password.
    Chat {
        password: String,
    },
    Irc,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum St {
    Idle,
    Connecting,
    Handshake,
    LoggingIn,
    Ready,
    Joining,
    InRoom,
    /// Closed by us.
    Closed,
    /// Refused, failed or dropped.
    Failed,
}

struct Client {
    stream: Option<TcpStream>,
    st: St,
    name: String,
    hs: Option<ClientHandshake>,
    tr: Option<Transport>,
    inbox: Vec<u8>,
    outbox: Vec<u8>,
    /// Loadgen clock (µs) when its connection began.
    t0: u64,
    /// The chatapp room id, or the IRC channel's number.
    room: Option<u64>,
    next_ctl: u32,
    storm: bool,
    /// A handshake started ahead of time (its first message made), so the
    /// timed phase spends only the rest of it.
    ready_hs: Option<(ClientHandshake, Vec<u8>)>,
    /// The resume token of its last `logged_in` reply (kept across
    /// reconnections).
    token: Option<String>,
    /// Logged in, waiting for the answer to its session check (`catch_up`).
    checking: bool,
    /// The server it reached, of several (its `logged_in` says).
    node: Option<u32>,
}

impl Client {
    fn new() -> Client {
        Client {
            stream: None,
            st: St::Idle,
            name: String::new(),
            hs: None,
            tr: None,
            inbox: Vec::new(),
            outbox: Vec::new(),
            t0: 0,
            room: None,
            next_ctl: 0,
            storm: false,
            ready_hs: None,
            token: None,
            checking: false,
            node: None,
        }
    }
}

/// Counters outside the tracker.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    /// Connections that closed without us asking (after logging in).
    pub disconnects: u64,
    /// Connections that failed before logging in.
    pub connect_failures: u64,
    /// Copies of a client's own message sent back to it (chatapp does).
    pub echoes: u64,
    /// Deliveries of messages from an earlier step.
    pub stale: u64,
    /// Replies acknowledging a message as stored.
    pub acks: u64,
    /// Acknowledgements of an earlier step's messages (its drain ends
    /// with the last delivery, which can come before the sender's `ok`).
    pub late_acks: u64,
    /// Why things went wrong, with counts (first words of the reason).
    pub problems: BTreeMap<String, u64>,
}

impl Stats {
    fn problem(&mut self, what: impl Into<String>) {
        let mut what = what.into();
        what.truncate(90);
        *self.problems.entry(what).or_default() += 1;
    }
}

/// The result of a connect phase.
#[derive(Debug, Clone)]
pub struct ConnectReport {
    pub ok: usize,
    pub failed: usize,
    pub secs: f64,
    /// CPU the load generator used meanwhile, µs.
    pub loadgen_cpu_us: u64,
    /// Connect to logged in (IRC: to the welcome), µs.
    pub registration: Histogram,
}

/// Who sends in a step.
#[derive(Debug, Clone)]
pub enum Traffic {
    /// Round robin over these clients, each saying its message to its room;
    /// the second field is the deliveries owed (the room's other members).
    Rooms(Vec<(usize, u32)>),
    /// Round robin over these clients, each writing to another of them:
    /// a different one each round, or (with `Some(k)`) its next `k` in
    /// turn, so that conversations repeat.
    Private(Vec<usize>, Option<usize>),
}

#[derive(Debug, Clone)]
pub struct LoadSpec {
    /// Messages a second; `None`: all at once (a burst).
    pub rate: Option<f64>,
    pub total: u64,
    pub traffic: Traffic,
    /// How long to wait for deliveries after the last send.
    pub drain: Duration,
    /// Bytes of each message's text.
    pub text_len: usize,
    /// Run the login storm while sending.
    pub storm: Option<StormSpec>,
}

/// Logins going on alongside a step: `slots` clients, each connecting,
/// logging in and closing, over and over.
#[derive(Debug, Clone)]
pub struct StormSpec {
    pub slots: Range<usize>,
    /// chatapp: names `storm{j % accounts}`; IRC: unique nicks.
    pub accounts: usize,
}

#[derive(Debug, Clone, Default)]
pub struct StormReport {
    pub logins: u64,
    pub failed: u64,
    pub latency: Histogram,
}

/// One step's measurements.
#[derive(Debug)]
pub struct StepReport {
    pub tracker: Tracker,
    pub stats: Stats,
    /// Wall time from the first scheduled send to the end of the drain.
    pub secs: f64,
    /// From the first scheduled send to the last delivery.
    pub delivery_secs: f64,
    /// How late the last message left compared with its schedule (µs).
    pub send_lag_us: u64,
    /// Every chatapp server's (several behind a balancer).
    pub server_cpu_us: u64,
    /// The other processes measured (by name: the database, the bus, the
    /// balancer), in the order given.
    pub others_cpu_us: Vec<(String, u64)>,
    pub loadgen_cpu_us: u64,
    pub peak_rss_kib: u64,
    pub storm: Option<StormReport>,
}

impl StepReport {
    pub fn deliveries_per_sec(&self) -> f64 {
        if self.delivery_secs > 0.0 {
            self.tracker.delivered as f64 / self.delivery_secs
        } else {
            0.0
        }
    }

    pub fn cpu_us_per_delivery(&self) -> f64 {
        if self.tracker.delivered > 0 {
            self.server_cpu_us as f64 / self.tracker.delivered as f64
        } else {
            0.0
        }
    }
}

pub struct Engine {
    poll: Poll,
    events: Events,
    addr: SocketAddr,
    proto: Proto,
    clients: Vec<Client>,
    epoch: Instant,
    pub tracker: Tracker,
    step: u32,
    pub stats: Stats,
    /// The servers under test (several behind a balancer): their CPU and
    /// memory are summed.
    pub probes: Vec<Probe>,
    /// Also measure the CPU of every process of each of these names (the
    /// database server's, the bus's, the balancer's) during each step.
    pub others: Vec<String>,
    scratch: Vec<u8>,
    /// When the bytes being handled were read: a delivery's arrival time.
    read_us: u64,
    plain: Vec<u8>,
    enc: Vec<u8>,
    text: String,
    dirty: Vec<usize>,
    ready: usize,
    failed: usize,
    in_room: usize,
    registration: Histogram,
    storm: Option<(StormSpec, StormReport, usize)>,
    /// chatapp: log in with the client's resume token, when it holds one,
    /// instead of the password.
    pub resume: bool,
    /// chatapp: clients of this range count as logged in only once a
    /// `catch_up` of their dialogue with the next client of the range
    /// (wrapping) has been answered: proof the session works.
    pub catch_up: Option<Range<usize>>,
}

fn room_name(room: u64) -> String {
    format!("r{room}")
}

impl Engine {
    /// An engine for `n` clients of `proto` against `addr`. Client `i` is
    /// named `names(i)` (its account, or its IRC nick).
    pub fn new(
        addr: SocketAddr,
        proto: Proto,
        n: usize,
        names: impl Fn(usize) -> String,
    ) -> io::Result<Engine> {
        let clients = (0..n)
            .map(|i| {
                let mut c = Client::new();
                c.name = names(i);
                c
            })
            .collect();
        Ok(Engine {
            poll: Poll::new()?,
            events: Events::with_capacity(4096),
            addr,
            proto,
            clients,
            epoch: Instant::now(),
            tracker: Tracker::new(),
            step: 0,
            stats: Stats::default(),
            probes: Vec::new(),
            others: Vec::new(),
            scratch: vec![0; 256 * 1024],
            read_us: 0,
            plain: Vec::new(),
            enc: Vec::new(),
            text: String::new(),
            dirty: Vec::new(),
            ready: 0,
            failed: 0,
            in_room: 0,
            registration: Histogram::new(),
            storm: None,
            resume: false,
            catch_up: None,
        })
    }

    /// Microseconds on the load generator's clock.
    pub fn now_us(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }

    pub fn len(&self) -> usize {
        self.clients.len()
    }

    pub fn is_empty(&self) -> bool {
        self.clients.is_empty()
    }

    /// Clients of `range` holding a resume token.
    pub fn tokens(&self, range: Range<usize>) -> usize {
        self.clients[range]
            .iter()
            .filter(|c| c.token.is_some())
            .count()
    }

    /// Client `i`'s resume token, if a `logged_in` reply gave it one.
    pub fn token(&self, i: usize) -> Option<&str> {
        self.clients[i].token.as_deref()
    }

    /// The counters so far, leaving fresh ones.
    pub fn take_stats(&mut self) -> Stats {
        std::mem::take(&mut self.stats)
    }

    /// Clients logged in (and not since closed or failed).
    pub fn alive(&self, range: Range<usize>) -> usize {
        self.clients[range]
            .iter()
            .filter(|c| matches!(c.st, St::Ready | St::Joining | St::InRoom))
            .count()
    }

    // ---- phases ----

    /// Connects and logs in clients `range`, at most `concurrency` at a time.
    pub fn connect(
        &mut self,
        range: Range<usize>,
        concurrency: usize,
        timeout: Duration,
    ) -> ConnectReport {
        let (ready0, failed0) = (self.ready, self.failed);
        self.registration = Histogram::new();
        let total = range.len();
        if matches!(self.proto, Proto::Chat { .. }) {
            // The client's ephemeral key, made before the clock starts: the
            // load generator does as much crypto per handshake as the
            // server, and must not be what limits the connect rate.
            for i in range.clone() {
                self.clients[i].ready_hs = Some(ClientHandshake::start());
            }
        }
        let start = Instant::now();
        let cpu0 = probe::self_cpu_us();
        let deadline = start + timeout;
        let mut next = range.start;
        loop {
            let done = (self.ready - ready0) + (self.failed - failed0);
            while next < range.end && (next - range.start).saturating_sub(done) < concurrency {
                self.begin_connect(next, false);
                next += 1;
            }
            self.flush();
            let done = (self.ready - ready0) + (self.failed - failed0);
            if done >= total || Instant::now() >= deadline {
                break;
            }
            self.turn(Duration::from_millis(20));
        }
        let secs = start.elapsed().as_secs_f64();
        let loadgen_cpu_us = probe::self_cpu_us() - cpu0;
        // Whatever is still on its way when time is up has failed.
        for i in range {
            if matches!(
                self.clients[i].st,
                St::Connecting | St::Handshake | St::LoggingIn
            ) {
                self.stats.problem("not logged in before the deadline");
                self.fail(i);
            }
        }
        ConnectReport {
            ok: self.ready - ready0,
            failed: self.failed - failed0,
            secs,
            loadgen_cpu_us,
            registration: self.registration.clone(),
        }
    }

    /// Puts clients in rooms: the first of each list creates the room (so
    /// on chatapp it is the admin), then the others join. Returns how many
    /// are in their room.
    pub fn join_rooms(&mut self, rooms: &[Vec<usize>], timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        let in0 = self.in_room;
        for (k, members) in rooms.iter().enumerate() {
            if let Some(&first) = members.first() {
                self.join(first, k as u64, members.len());
            }
        }
        self.flush();
        self.wait(deadline, |e| {
            e.in_room - in0 + e.failed_in(rooms) >= rooms.len()
        });
        for members in rooms {
            let room = members.first().and_then(|&f| self.clients[f].room);
            for &m in &members[1..] {
                match room {
                    Some(id) => self.join(m, id, 0),
                    None => self.stats.problem("the room's creator is not in it"),
                }
            }
        }
        self.flush();
        let want: usize = rooms.iter().map(Vec::len).sum();
        self.wait(deadline, |e| e.in_room - in0 >= want);
        self.in_room - in0
    }

    fn failed_in(&self, rooms: &[Vec<usize>]) -> usize {
        rooms
            .iter()
            .filter(|m| m.first().is_some_and(|&f| self.clients[f].st == St::Failed))
            .count()
    }

    /// Runs one step of load; see [`LoadSpec`].
    pub fn run(&mut self, spec: &LoadSpec) -> StepReport {
        self.step += 1;
        self.tracker = Tracker::new();
        let stats0 = std::mem::take(&mut self.stats);
        let server_cpu0 = self.server_cpu_us();
        let others0: Vec<u64> = self.others.iter().map(|n| probe::named_cpu_us(n)).collect();
        let reset_peak = !self.probes.is_empty() && self.probes.iter().all(|p| p.reset_peak());
        let mut peak = self.server_rss_kib();
        let self_cpu0 = probe::self_cpu_us();
        if let Some(storm) = &spec.storm {
            for i in storm.slots.clone() {
                self.clients[i].storm = true;
            }
            self.storm = Some((storm.clone(), StormReport::default(), 0));
        }
        let wall0 = Instant::now();
        let start = self.now_us() + 1000;
        let sched = |k: u64| match spec.rate {
            Some(r) => start + (k as f64 * 1e6 / r) as u64,
            None => start,
        };
        let total = spec.total;
        let send_end_budget = match spec.rate {
            Some(r) => (total as f64 / r * 2.0 * 1e6) as u64 + 5_000_000,
            None => 60_000_000,
        };
        let mut k = 0u64;
        let mut last_sent_at = 0u64;
        let mut send_lag = 0u64;
        let mut next_sample = Instant::now();
        let mut drain_until: Option<Instant> = None;
        loop {
            let now = self.now_us();
            if k < total && now > start + send_end_budget {
                self.stats.problem(format!(
                    "the load generator fell behind: {} messages not sent",
                    total - k
                ));
                k = total;
            }
            while k < total && sched(k) <= now {
                self.send(spec, k, sched(k));
                k += 1;
                last_sent_at = now;
                send_lag = now.saturating_sub(sched(k - 1));
                if k.is_multiple_of(256) {
                    self.flush(); // keep the pipes moving while a backlog is sent
                }
            }
            self.storm_fill();
            self.flush();
            if Instant::now() >= next_sample {
                peak = peak.max(self.server_rss_kib());
                next_sample = Instant::now() + Duration::from_millis(250);
            }
            if k >= total {
                let until = *drain_until.get_or_insert_with(|| Instant::now() + spec.drain);
                if self.tracker.outstanding() == 0 || Instant::now() >= until {
                    break;
                }
                self.turn(Duration::from_millis(5));
            } else {
                let wait = sched(k).saturating_sub(self.now_us());
                self.turn(Duration::from_micros(wait.min(10_000)));
            }
        }
        let _ = last_sent_at;
        let storm = self.storm.take().map(|(spec, report, _)| {
            for i in spec.slots {
                if !matches!(self.clients[i].st, St::Closed | St::Idle | St::Failed) {
                    self.close(i);
                }
                self.clients[i].storm = false;
            }
            report
        });
        let secs = wall0.elapsed().as_secs_f64();
        let delivery_secs = if self.tracker.delivered > 0 {
            self.tracker.last_delivery.saturating_sub(start) as f64 / 1e6
        } else {
            0.0
        };
        peak = peak.max(self.server_rss_kib());
        if reset_peak {
            peak = peak.max(self.probes.iter().map(|p| p.peak_kib()).sum());
        }
        let report = StepReport {
            tracker: std::mem::take(&mut self.tracker),
            stats: std::mem::replace(&mut self.stats, stats0),
            secs,
            delivery_secs,
            send_lag_us: send_lag,
            server_cpu_us: self.server_cpu_us().saturating_sub(server_cpu0),
            others_cpu_us: self
                .others
                .iter()
                .zip(others0)
                .map(|(name, cpu0)| (name.clone(), probe::named_cpu_us(name).saturating_sub(cpu0)))
                .collect(),
            loadgen_cpu_us: probe::self_cpu_us() - self_cpu0,
            peak_rss_kib: peak,
            storm,
        };
        self.stats.disconnects += report.stats.disconnects;
        report
    }

    /// CPU time of the servers under test so far, µs (summed).
    fn server_cpu_us(&self) -> u64 {
        self.probes.iter().map(|p| p.cpu_us()).sum()
    }

    /// Resident memory of the servers under test now, KiB (summed).
    fn server_rss_kib(&self) -> u64 {
        self.probes.iter().map(|p| p.rss_kib()).sum()
    }

    /// Lets the loop run for `d` (answering pings, taking stray deliveries).
    pub fn idle(&mut self, d: Duration) {
        let deadline = Instant::now() + d;
        self.wait(deadline, |_| false);
    }

    /// Closes every connection in `range`.
    pub fn close_range(&mut self, range: Range<usize>) {
        for i in range {
            if self.clients[i].stream.is_some() {
                self.close(i);
            }
        }
    }

    // ---- sending ----

    fn send(&mut self, spec: &LoadSpec, k: u64, sched_us: u64) {
        let (sender, expected, to) = match &spec.traffic {
            Traffic::Rooms(slots) => {
                let (c, e) = slots[(k % slots.len() as u64) as usize];
                (c, e, None)
            }
            Traffic::Private(pool, partners) => {
                let (pos, to) = private_pair(pool.len() as u64, *partners, k);
                (pool[pos as usize], 1, Some(pool[to as usize]))
            }
        };
        let n = self.tracker.add(expected);
        let mut text = std::mem::take(&mut self.text);
        payload(&mut text, self.step, n, sched_us, sender, spec.text_len);
        let sendable = matches!(self.clients[sender].st, St::InRoom)
            || (to.is_some() && matches!(self.clients[sender].st, St::Ready | St::InRoom));
        if !sendable || n > MSG_MASK {
            self.tracker.unsent(n);
            self.text = text;
            return;
        }
        match &self.proto {
            Proto::Chat { .. } => {
                let id = ((self.step & 0x7f) << MSG_BITS) | n;
                let req = match to {
                    Some(to) => Request::SendPrivate {
                        to: self.clients[to].name.clone(),
                        text: text.clone(),
                        client_id: 0,
                    },
                    None => Request::Say {
                        text: text.clone(),
                        client_id: 0,
                    },
                };
                self.request(sender, id, req);
            }
            Proto::Irc => {
                let target = match to {
                    Some(to) => self.clients[to].name.clone(),
                    None => format!("#{}", room_name(self.clients[sender].room.unwrap_or(0))),
                };
                let out = &mut self.clients[sender].outbox;
                out.extend_from_slice(b"PRIVMSG ");
                out.extend_from_slice(target.as_bytes());
                out.extend_from_slice(b" :");
                out.extend_from_slice(text.as_bytes());
                out.extend_from_slice(b"\r\n");
                self.dirty.push(sender);
            }
        }
        self.text = text;
    }

    /// Encrypts and queues a chatapp request.
    fn request(&mut self, i: usize, id: u32, req: Request) {
        let c = &mut self.clients[i];
        let Some(tr) = c.tr.as_mut() else {
            return;
        };
        if msg::encode_into(&ClientFrame { id, req }, &mut self.enc).is_err()
            || tr.seal_into(&self.enc, &mut c.outbox).is_err()
        {
            self.stats.problem("cannot encode a request");
            return;
        }
        self.dirty.push(i);
    }

    fn control(&mut self, i: usize, req: Request) {
        let c = &mut self.clients[i];
        c.next_ctl = c.next_ctl.wrapping_add(1);
        let id = CTL | (c.next_ctl & !CTL);
        self.request(i, id, req);
    }

    fn irc_line(&mut self, i: usize, line: &str) {
        let out = &mut self.clients[i].outbox;
        out.extend_from_slice(line.as_bytes());
        out.extend_from_slice(b"\r\n");
        self.dirty.push(i);
    }

    fn join(&mut self, i: usize, room: u64, create_for: usize) {
        if self.clients[i].st != St::Ready {
            return;
        }
        self.clients[i].st = St::Joining;
        match &self.proto {
            Proto::Chat { .. } => {
                let req = if create_for > 0 {
                    Request::CreateRoom {
                        name: room_name(room),
                        capacity: create_for.clamp(2, 1000) as u32,
                    }
                } else {
                    Request::JoinRoom { room }
                };
                self.control(i, req);
            }
            Proto::Irc => {
                self.clients[i].room = Some(room);
                self.irc_line(i, &format!("JOIN #{}", room_name(room)));
            }
        }
    }

    // ---- connections ----

    fn begin_connect(&mut self, i: usize, storm: bool) {
        let now = self.now_us();
        let c = &mut self.clients[i];
        *c = Client {
            name: std::mem::take(&mut c.name),
            ready_hs: c.ready_hs.take(),
            token: c.token.take(),
            storm,
            ..Client::new()
        };
        c.t0 = now;
        let mut stream = match TcpStream::connect(self.addr) {
            Ok(s) => s,
            Err(e) => {
                self.stats.problem(format!("connect: {e}"));
                self.fail(i);
                return;
            }
        };
        if let Err(e) = self.poll.registry().register(
            &mut stream,
            Token(i),
            Interest::READABLE | Interest::WRITABLE,
        ) {
            self.stats.problem(format!("register: {e}"));
            self.fail(i);
            return;
        }
        let c = &mut self.clients[i];
        c.stream = Some(stream);
        c.st = St::Connecting;
    }

    fn connected(&mut self, i: usize) {
        let _ = self.clients[i].stream.as_ref().map(|s| s.set_nodelay(true));
        match &self.proto {
            Proto::Chat { .. } => {
                let c = &mut self.clients[i];
                let (hs, first) = c.ready_hs.take().unwrap_or_else(ClientHandshake::start);
                frame::push(&mut c.outbox, &first);
                c.hs = Some(hs);
                c.st = St::Handshake;
                self.dirty.push(i);
            }
            Proto::Irc => {
                let name = self.clients[i].name.clone();
                self.clients[i].st = St::LoggingIn;
                self.irc_line(i, &format!("NICK {name}\r\nUSER {name} 0 * :{name}"));
            }
        }
    }

    fn logged_in(&mut self, i: usize) {
        let now = self.now_us();
        let c = &mut self.clients[i];
        if c.st != St::LoggingIn {
            return;
        }
        let took = now.saturating_sub(c.t0);
        if c.storm {
            if let Some((_, report, _)) = &mut self.storm {
                report.logins += 1;
                report.latency.record(took);
            }
            self.close(i);
            return;
        }
        c.st = St::Ready;
        self.ready += 1;
        self.registration.record(took);
    }

    fn joined(&mut self, i: usize, room: u64) {
        let c = &mut self.clients[i];
        if c.st == St::Joining {
            c.st = St::InRoom;
            c.room = Some(room);
            self.in_room += 1;
        }
    }

    /// Closes a connection we no longer want.
    fn close(&mut self, i: usize) {
        let c = &mut self.clients[i];
        if let Some(mut s) = c.stream.take() {
            let _ = self.poll.registry().deregister(&mut s);
        }
        c.st = St::Closed;
        c.outbox = Vec::new();
        c.inbox = Vec::new();
        c.tr = None;
        c.hs = None;
    }

    /// A connection that broke or was refused.
    fn fail(&mut self, i: usize) {
        let st = self.clients[i].st;
        let storm = self.clients[i].storm;
        self.close(i);
        self.clients[i].st = St::Failed;
        if storm {
            if let Some((_, report, _)) = &mut self.storm {
                report.failed += 1;
            }
            return;
        }
        match st {
            St::Connecting | St::Handshake | St::LoggingIn | St::Idle => {
                self.failed += 1;
                self.stats.connect_failures += 1;
            }
            St::Ready | St::Joining | St::InRoom => self.stats.disconnects += 1,
            St::Closed | St::Failed => {}
        }
    }

    /// Keeps the storm's slots busy: every idle slot starts a new login.
    fn storm_fill(&mut self) {
        let Some((spec, _, next)) = &mut self.storm else {
            return;
        };
        let mut starts = Vec::new();
        for i in spec.slots.clone() {
            if matches!(self.clients[i].st, St::Idle | St::Closed | St::Failed) {
                starts.push((i, *next));
                *next += 1;
            }
        }
        let accounts = spec.accounts.max(1);
        for (i, j) in starts {
            self.clients[i].name = match self.proto {
                Proto::Chat { .. } => format!("storm{}", j % accounts),
                Proto::Irc => format!("st{j}"),
            };
            self.begin_connect(i, true);
        }
    }

    // ---- the loop ----

    fn wait(&mut self, deadline: Instant, mut done: impl FnMut(&Engine) -> bool) -> bool {
        loop {
            self.flush();
            if done(self) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            self.turn((deadline - now).min(Duration::from_millis(20)));
        }
    }

    /// One poll and everything it reported.
    fn turn(&mut self, timeout: Duration) {
        let mut events = std::mem::replace(&mut self.events, Events::with_capacity(0));
        if let Err(e) = self.poll.poll(&mut events, Some(timeout))
            && e.kind() != io::ErrorKind::Interrupted
        {
            self.stats.problem(format!("poll: {e}"));
        }
        for ev in events.iter() {
            let i = ev.token().0;
            if i >= self.clients.len() || self.clients[i].stream.is_none() {
                continue;
            }
            if self.clients[i].st == St::Connecting {
                let stream = self.clients[i].stream.as_ref().expect("checked");
                match stream.take_error() {
                    Ok(None) => {}
                    Ok(Some(e)) | Err(e) => {
                        self.stats.problem(format!("connect: {e}"));
                        self.fail(i);
                        continue;
                    }
                }
                match stream.peer_addr() {
                    Ok(_) => self.connected(i),
                    Err(e) if e.kind() == io::ErrorKind::NotConnected => continue,
                    Err(e) => {
                        self.stats.problem(format!("connect: {e}"));
                        self.fail(i);
                        continue;
                    }
                }
            }
            if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                self.read(i);
            }
            if ev.is_writable() {
                self.dirty.push(i);
            }
        }
        self.events = events;
        self.flush();
    }

    fn read(&mut self, i: usize) {
        let mut scratch = std::mem::take(&mut self.scratch);
        while let Some(stream) = self.clients[i].stream.as_mut() {
            match stream.read(&mut scratch) {
                Ok(0) => {
                    self.lost(i, "closed by the server");
                    break;
                }
                Ok(n) => {
                    self.read_us = self.now_us();
                    // Whole frames are taken straight from what was read;
                    // only the start of a cut one waits in the inbox.
                    let mut inbox = std::mem::take(&mut self.clients[i].inbox);
                    let (buf, fresh) = if inbox.is_empty() {
                        (&scratch[..n], true)
                    } else {
                        inbox.extend_from_slice(&scratch[..n]);
                        (&inbox[..], false)
                    };
                    let used = match self.proto {
                        Proto::Chat { .. } => self.chat_input(i, buf),
                        Proto::Irc => self.irc_input(i, buf),
                    };
                    if self.clients[i].stream.is_none() {
                        break;
                    }
                    if fresh {
                        inbox.extend_from_slice(&scratch[used..n]);
                    } else {
                        inbox.drain(..used);
                    }
                    self.clients[i].inbox = inbox;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.lost(i, &format!("read: {e}"));
                    break;
                }
            }
        }
        self.scratch = scratch;
    }

    fn lost(&mut self, i: usize, why: &str) {
        let st = self.clients[i].st;
        if self.clients[i].storm && st == St::Closed {
            return;
        }
        self.stats.problem(format!("{why} ({st:?})"));
        self.fail(i);
    }

    fn flush(&mut self) {
        let mut dirty = std::mem::take(&mut self.dirty);
        dirty.sort_unstable();
        dirty.dedup();
        for &i in &dirty {
            let c = &mut self.clients[i];
            if c.st == St::Connecting {
                continue;
            }
            let Some(stream) = c.stream.as_mut() else {
                continue;
            };
            let mut written = 0;
            let mut broken = None;
            while written < c.outbox.len() {
                match stream.write(&c.outbox[written..]) {
                    Ok(0) => {
                        broken = Some("write returned 0".to_string());
                        break;
                    }
                    Ok(n) => written += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        broken = Some(format!("write: {e}"));
                        break;
                    }
                }
            }
            c.outbox.drain(..written);
            if let Some(why) = broken {
                self.lost(i, &why);
            }
        }
        dirty.clear();
        if self.dirty.is_empty() {
            self.dirty = dirty;
        }
    }

    // ---- chatapp input ----

    /// Takes the whole frames at the start of `inbox`; returns the bytes
    /// used (the client may be gone after them).
    fn chat_input(&mut self, i: usize, inbox: &[u8]) -> usize {
        let mut used = 0;
        while let Some((body, len)) = frame::parse(&inbox[used..]) {
            used += len;
            let c = &mut self.clients[i];
            if c.st == St::Handshake {
                let Some(hs) = c.hs.take() else { break };
                match hs.finish(body) {
                    Ok(pending) => {
                        // Our own server: its key needs no checking here.
                        c.tr = Some(pending.accept());
                        c.st = St::LoggingIn;
                        let Proto::Chat { password } = &self.proto else {
                            unreachable!()
                        };
                        let req = match (&c.token, self.resume) {
                            (Some(token), true) => Request::Resume {
                                token: token.clone(),
                            },
                            _ => Request::Login {
                                name: c.name.clone(),
                                password: password.clone(),
                            },
                        };
                        self.control(i, req);
                    }
                    Err(e) => {
                        self.stats.problem(format!("handshake: {e}"));
                        self.fail(i);
                        return used;
                    }
                }
                continue;
            }
            let Some(tr) = c.tr.as_mut() else {
                return used;
            };
            if tr.open_into(body, &mut self.plain).is_err() {
                self.stats.problem("a frame failed to decrypt");
                self.fail(i);
                return used;
            }
            // The server packs what it has for a client into one frame.
            let plain = std::mem::take(&mut self.plain);
            let gone = self.chat_messages(i, &plain);
            self.plain = plain;
            if gone {
                return used;
            }
        }
        used
    }

    /// The messages of one frame; true when the client is gone after them.
    fn chat_messages(&mut self, i: usize, plain: &[u8]) -> bool {
        for value in msg::values(plain) {
            let decoded = value.and_then(|bytes| {
                if bytes.starts_with(EVENT_PREFIX)
                    && let Some(stamp) = find_stamp(bytes)
                {
                    return Ok(Some(stamp));
                }
                match msg::decode::<ServerFrame>(bytes)? {
                    ServerFrame::Reply { id, result } => self.chat_reply(i, id, result),
                    ServerFrame::Event { event } => self.chat_event(i, event),
                }
                Ok(None)
            });
            match decoded {
                Ok(Some(stamp)) => self.delivery(i, stamp),
                Ok(None) => {}
                Err(e) => {
                    self.stats.problem(format!("undecodable frame: {e}"));
                    self.fail(i);
                    return true;
                }
            }
            if self.clients[i].stream.is_none() {
                return true;
            }
        }
        false
    }

    fn chat_reply(&mut self, i: usize, id: u32, result: Reply) {
        if id & CTL == 0 {
            let step = (id >> MSG_BITS) & 0x7f;
            if step != self.step & 0x7f {
                // The answer to a message of an earlier step.
                if result == Reply::Ok {
                    self.stats.late_acks += 1;
                }
                return;
            }
            let n = id & MSG_MASK;
            match result {
                Reply::Ok => self.stats.acks += 1,
                Reply::Error {
                    code: ErrorCode::RateLimited,
                    ..
                } => self.tracker.refuse(n),
                Reply::Error { code, message } => {
                    self.stats.problem(format!("{code:?}: {message}"));
                    self.tracker.fail(n);
                }
                other => self.stats.problem(format!("unexpected reply {other:?}")),
            }
            return;
        }
        match result {
            Reply::LoggedIn { token, node, .. } => {
                self.clients[i].token = Some(token);
                self.clients[i].node = node;
                match self.catch_up.clone() {
                    Some(pool) if pool.contains(&i) && self.clients[i].st == St::LoggingIn => {
                        let next = pool.start + (i - pool.start + 1) % pool.len();
                        let with = self.clients[next].name.clone();
                        self.clients[i].checking = true;
                        self.control(
                            i,
                            Request::CatchUp {
                                of: msg::Topic::Dialogue { with },
                                after: 0,
                                limit: 50,
                            },
                        );
                    }
                    _ => self.logged_in(i),
                }
            }
            Reply::DialogueCaughtUp { .. } | Reply::RoomCaughtUp { .. }
                if self.clients[i].checking =>
            {
                self.clients[i].checking = false;
                self.logged_in(i);
            }
            Reply::Room { room, .. } => self.joined(i, room.id),
            Reply::Pong | Reply::Ok => {}
            Reply::Error { code, message } => {
                self.stats.problem(format!("{code:?}: {message}"));
                self.fail(i);
            }
            other => self.stats.problem(format!("unexpected reply {other:?}")),
        }
    }

    fn chat_event(&mut self, i: usize, event: Event) {
        match event {
            Event::Ping => self.control(i, Request::Ping),
            Event::Bye { reason, .. } => self.stats.problem(format!("bye: {reason}")),
            Event::RoomClosed { .. } | Event::Kicked { .. } => {
                self.stats.problem("put out of the room");
                if self.clients[i].st == St::InRoom {
                    self.clients[i].st = St::Ready;
                }
            }
            _ => {}
        }
    }

    fn delivery(&mut self, i: usize, stamp: crate::track::Stamp) {
        if stamp.step != self.step {
            self.stats.stale += 1;
        } else if stamp.sender == i {
            self.stats.echoes += 1;
        } else {
            let now = self.read_us;
            let (from, to) = (
                self.clients.get(stamp.sender).and_then(|c| c.node),
                self.clients[i].node,
            );
            let across = from.is_some() && to.is_some() && from != to;
            self.tracker
                .deliver(stamp.n, now.saturating_sub(stamp.sched_us), now, across);
        }
    }

    // ---- IRC input ----

    /// Takes the whole lines at the start of `inbox`; returns the bytes
    /// used (the client may be gone after them).
    fn irc_input(&mut self, i: usize, inbox: &[u8]) -> usize {
        let mut used = 0;
        while let Some(nl) = memchr::memchr(b'\n', &inbox[used..]) {
            let line = &inbox[used..used + nl];
            used += nl + 1;
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            self.irc_message(i, line);
            if self.clients[i].stream.is_none() {
                break;
            }
        }
        used
    }

    fn irc_message(&mut self, i: usize, line: &[u8]) {
        let mut rest = line;
        if rest.first() == Some(&b':') {
            match rest.iter().position(|&b| b == b' ') {
                Some(sp) => rest = &rest[sp + 1..],
                None => return,
            }
        }
        let sp = rest.iter().position(|&b| b == b' ').unwrap_or(rest.len());
        let (cmd, params) = (&rest[..sp], rest.get(sp + 1..).unwrap_or(b""));
        match cmd {
            b"PRIVMSG" => {
                let text = params
                    .windows(2)
                    .position(|w| w == b" :")
                    .map_or(params, |p| &params[p + 2..]);
                if let Some(stamp) = find_stamp(text) {
                    self.delivery(i, stamp);
                }
            }
            b"PING" => {
                let token = String::from_utf8_lossy(params).into_owned();
                self.irc_line(i, &format!("PONG {token}"));
            }
            b"001" => self.logged_in(i),
            b"366" => {
                let room = self.clients[i].room.unwrap_or(0);
                self.joined(i, room);
            }
            b"432" | b"433" | b"436" | b"437" | b"464" | b"465" | b"471" | b"473" | b"474"
            | b"475" => {
                self.stats
                    .problem(format!("IRC refused: {}", String::from_utf8_lossy(line)));
                self.fail(i);
            }
            b"ERROR" => self
                .stats
                .problem(format!("IRC error: {}", String::from_utf8_lossy(params))),
            _ => {}
        }
    }
}

/// Message `k` of a private-message step over `n` clients: who writes it
/// (round robin) and to whom. Round `r` pairs client `i` with `i + 1 + r`
/// (mod `n`), so every round opens new conversations; with `Some(p)`
/// partners, with `i + 1 + r mod p`, so each client writes to the same `p`
/// clients over and over. Nobody writes to itself (given two clients).
fn private_pair(n: u64, partners: Option<usize>, k: u64) -> (u64, u64) {
    let (pos, round) = (k % n, k / n);
    let others = (n - 1).max(1);
    let offset = match partners {
        Some(p) => round % (p as u64).clamp(1, others),
        None => round % others,
    };
    (pos, (pos + 1 + offset) % n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chatapp::wire::msg::RoomLine;
    use std::collections::BTreeSet;

    #[test]
    fn private_pairs_are_new_each_round_unless_partners_repeat() {
        let n = 10;
        let partners_of = |partners, who| -> BTreeSet<u64> {
            (0..n * 40)
                .map(|k| private_pair(n, partners, k))
                .filter(|&(from, _)| from == who)
                .map(|(_, to)| to)
                .collect()
        };
        // Round robin over the writers, never to itself.
        assert_eq!(private_pair(n, None, 0), (0, 1));
        assert_eq!(private_pair(n, None, 1), (1, 2));
        assert_eq!(
            private_pair(n, None, n),
            (0, 2),
            "round 1: the next but one"
        );
        assert_eq!(partners_of(None, 3), (0..n).filter(|&c| c != 3).collect());
        // With 3 partners, client 3 writes to 4, 5 and 6 only.
        assert_eq!(partners_of(Some(3), 3), [4, 5, 6].into());
        assert_eq!(partners_of(Some(3), 9), [0, 1, 2].into());
        // More partners than there are others: everyone else.
        assert_eq!(partners_of(Some(50), 0), (1..n).collect());
        assert_eq!(private_pair(2, None, 5), (1, 0));
    }

    #[test]
    fn events_start_with_the_prefix_and_replies_do_not() {
        let event = msg::encode(&ServerFrame::Event {
            event: Event::RoomMessage {
                room: 1,
                line: RoomLine {
                    id: 2,
                    seq: 1,
                    from: "a".into(),
                    text: "~1~2~3~4~".into(),
                    time: 5,
                },
            },
        })
        .unwrap();
        assert!(event.starts_with(EVENT_PREFIX));
        let reply = msg::encode(&ServerFrame::Reply {
            id: 1,
            result: Reply::Ok,
        })
        .unwrap();
        assert!(!reply.starts_with(EVENT_PREFIX));
    }
}
