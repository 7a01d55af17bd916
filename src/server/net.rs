//! The event loop: the only code that knows mio and sockets. It accepts
//! connections, runs each one's Noise handshake, turns frames into hub
//! inputs and hub outputs into frames, and hands slow work to the workers.
//!
//! A turn reads at most [`READ_BUDGET`] bytes from each connection, and
//! none from one that is not taking its output (backpressure, see
//! [`HIGH_WATER`]). Output is queued per connection while a turn runs, and
//! at its end sealed together (one Noise message for all of it) and written
//! once, so a burst of messages costs one seal and one `write` per
//! connection, not one per message. Write interest is derived from the
//! queue after every turn (registered only while bytes are left unsent).

use super::bus::BusEvent;
use super::cluster::{Cluster, Heard};
use super::directory::Directory;
use super::hub::{ConnId, ConnMap, Hub, Input, Level, Output};
use super::proxy;
use super::turns::TurnLog;
use super::workers::Workers;
use crate::wire::msg::{self, ClientFrame, ServerFrame};
use crate::wire::noise::{ServerHandshake, StaticKey, Transport};
use crate::wire::{WireError, frame};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const LISTENER: Token = Token(0);
const WAKER: Token = Token(1);
const SIGNALS: Token = Token(2);
const FIRST_CONN: u64 = 3;

// The limits on what a client may leave waiting, public where they were
// first defined, for the tests that push against them.
pub use super::limits::{HIGH_WATER, MAX_ROOM_UNCOMMITTED, MAX_UNCOMMITTED, MAX_UNSENT};
/// Bytes read from one connection in one turn of the loop: a client with
/// a lot to say waits its turn, and everyone else is served in between.
const READ_BUDGET: usize = 4 * 1024;
/// Whether a read that returns less than it asked for has emptied the
/// socket, so that no read is needed to see `WouldBlock`: on Linux, epoll
/// reports every arrival of new bytes. mio elsewhere (Windows) arms a
/// socket again only once a read has returned `WouldBlock`.
const SHORT_READ_EMPTIES: bool = cfg!(target_os = "linux");
/// How long shutdown waits for clients to take their last bytes.
const SHUTDOWN_FLUSH: Duration = Duration::from_secs(2);

struct Closing {
    reason: String,
    by: Instant,
}

/// How long a closing connection may take to read its last bytes.
const LINGER: Duration = Duration::from_secs(2);

/// How soon `accept` is tried again after it failed for want of
/// resources (out of file descriptors, say). The listener is
/// edge-triggered: it reports readiness only when a new connection
/// arrives, so connections already queued would wait for the next
/// newcomer unless the loop tries again by itself. Often enough that a
/// queued client is answered well within a second of descriptors freeing;
/// seldom enough that a server out of them does not spin.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// `accept` failed and connections may still be queued on the listener.
struct AcceptBlocked {
    since: Instant,
    /// When to try again, unless a connection closes before.
    retry_at: Instant,
    /// Connections open at the last failure: fewer means descriptors were
    /// freed, and the queue is worth trying at once.
    conns: usize,
}

enum Phase {
    /// A connection from a load balancer named in `--proxy-protocol`,
    /// waiting for the PROXY header that names its client. The hub and the
    /// per-address count do not know it yet.
    Proxy,
    /// Boxed: a handshake state is large and lives only for one message.
    Handshake(Box<ServerHandshake>),
    Open(Transport),
}

struct Connection {
    stream: TcpStream,
    peer: SocketAddr,
    /// The peer's address as counted in `per_address`: canonical, so that
    /// an IPv4 client of a dual-stack listener is released under the same
    /// key it was counted under. Behind a load balancer, the client's.
    ip: IpAddr,
    /// Whether `ip` holds one of `per_address`'s counts.
    counted: bool,
    /// `None` only while a handshake is being taken out to be finished.
    phase: Option<Phase>,
    inbox: Vec<u8>,
    /// Messages for the client this turn, encoded, sealed together into
    /// `outbox` (as few transport messages as fit) when the turn ends.
    plain: Vec<u8>,
    /// Sealed frames not yet written to the socket.
    outbox: Vec<u8>,
    /// Close once the outbox is written, or at the deadline if the client
    /// will not take it.
    closing: Option<Closing>,
    writable: bool,
    /// In the dirty list already: each connection is flushed once a turn,
    /// however many messages it was sent.
    queued: bool,
    /// In the `unread` list already: its socket may hold input that was
    /// left for a later turn (mio is edge-triggered: no event will say so).
    unread: bool,
}

impl Connection {
    /// Bytes queued for the client: sealed, and still to be sealed.
    fn unsent(&self) -> usize {
        self.outbox.len() + self.plain.len()
    }

    /// Encrypts the messages waiting in `plain` into `outbox`, as one
    /// transport message (the caller keeps `plain` within one's size).
    fn seal(&mut self) {
        if self.plain.is_empty() {
            return;
        }
        if let Some(Phase::Open(transport)) = &mut self.phase {
            // Fails only for a plaintext too large, which `Net::pack` prevents.
            let _ = transport.seal_into(&self.plain, &mut self.outbox);
        }
        self.plain.clear();
        release_if_idle(&mut self.plain);
    }
}

/// What the loop needs that the server module prepared.
pub struct Parts {
    pub listener: TcpListener,
    pub poll: Poll,
    pub key: StaticKey,
    pub hub: Hub,
    pub workers: Workers,
    pub inputs: Receiver<Input>,
    pub stop: Arc<AtomicBool>,
    pub log_level: Level,
    /// SIGINT and SIGTERM, when this server is the process's own.
    pub signals: Option<Signals>,
    pub limits: NetLimits,
    /// The bus to other servers sharing the database, if any.
    pub cluster: Option<Cluster>,
}

/// Limits the event loop itself enforces, before the hub sees a client.
#[derive(Debug, Clone)]
pub struct NetLimits {
    /// Connections one address may hold at once.
    pub max_per_address: usize,
    /// Loopback is exempt (load tests and a local proxy connect from it).
    pub exempt_loopback: bool,
    /// Load balancers whose connections start with a PROXY protocol v2
    /// header naming the client (`--proxy-protocol`): their clients are
    /// counted under their own addresses, the balancer under none.
    pub proxies: Vec<IpAddr>,
}

impl Default for NetLimits {
    fn default() -> NetLimits {
        NetLimits {
            max_per_address: super::limits::MAX_PER_ADDRESS,
            exempt_loopback: true,
            proxies: Vec::new(),
        }
    }
}

pub fn run(parts: Parts) -> io::Result<()> {
    let Parts {
        mut listener,
        mut poll,
        key,
        hub,
        workers,
        inputs,
        stop,
        log_level,
        signals,
        limits,
        mut cluster,
    } = parts;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    let mut signals = signals;
    let mut net = Net {
        conns: ConnMap::default(),
        next: FIRST_CONN,
        key,
        hub,
        directory: Directory::default(),
        workers,
        log_level,
        plain: Vec::new(),
        encoded: Vec::new(),
        dirty: Vec::new(),
        unread: Vec::new(),
        limits,
        per_address: HashMap::new(),
        lingering: Vec::new(),
        accept_blocked: None,
    };
    let mut events = Events::with_capacity(1024);
    let mut scratch = vec![0u8; 64 * 1024];
    let mut turns = TurnLog::new(Instant::now());
    loop {
        let mut timeout = net.hub.poll_timeout().map(|at| {
            let wait = at.saturating_sub(now_millis()).max(0);
            Duration::from_millis(wait as u64)
        });
        if !net.lingering.is_empty() {
            // Check lingering connections' deadlines every so often.
            timeout = Some(timeout.map_or(LINGER / 8, |t| t.min(LINGER / 8)));
            for conn in std::mem::take(&mut net.lingering) {
                net.touch(conn);
            }
        }
        if let Some(at) = net.workers.dispatch_at() {
            let wait = at.saturating_duration_since(Instant::now());
            timeout = Some(timeout.map_or(wait, |t| t.min(wait)));
        }
        if let Some(at) = cluster.as_ref().and_then(|c| c.next_read) {
            let wait = at.saturating_duration_since(Instant::now());
            timeout = Some(timeout.map_or(wait, |t| t.min(wait)));
        }
        if let Some(blocked) = &net.accept_blocked {
            let wait = blocked.retry_at.saturating_duration_since(Instant::now());
            timeout = Some(timeout.map_or(wait, |t| t.min(wait)));
        }
        if net.can_read_more() {
            timeout = Some(Duration::ZERO);
        }
        if let Err(e) = poll.poll(&mut events, timeout) {
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        let turn_start = Instant::now();
        // Input left from earlier turns first, then what is new.
        net.read_more(&mut scratch);
        for event in events.iter() {
            match event.token() {
                LISTENER => net.accept(&listener, &poll),
                WAKER => {}
                SIGNALS => {
                    if signals.as_mut().is_some_and(Signals::stop_requested) {
                        stop.store(true, Ordering::SeqCst);
                    }
                }
                token => {
                    let conn = ConnId(token.0 as u64);
                    if event.is_readable() || event.is_read_closed() || event.is_error() {
                        net.read(conn, &mut scratch);
                    }
                    if event.is_read_closed() || event.is_error() {
                        // A short read stops before the end of the stream:
                        // come back for it, as no new event will come.
                        net.read_later(conn);
                    }
                    if event.is_writable() {
                        net.touch(conn);
                    }
                }
            }
        }
        while let Ok(input) = inputs.try_recv() {
            net.feed(input);
        }
        if let Some(cluster) = &mut cluster {
            net.hear(cluster);
        }
        if net.hub.halted().is_some() {
            // Nothing more goes to the store: see `Hub::halted`.
            net.workers.abandon();
            stop.store(true, Ordering::SeqCst);
        }
        let now = now_millis();
        if net.hub.poll_timeout().is_some_and(|at| at <= now) {
            net.hub.handle_timeout(now);
            net.drain_hub();
        }
        if stop.load(Ordering::SeqCst) {
            break;
        }
        net.flush(&poll);
        // After the flush, which drops the connections that closed.
        net.accept_again(&listener, &poll);
        net.workers.dispatch(Instant::now());
        if let Some(line) = turns.turn(turn_start, Instant::now()) {
            net.log(Level::Debug, line);
        }
    }
    net.log(Level::Info, turns.final_line());
    net.shut_down(&mut poll, &mut listener, &inputs);
    match net.hub.halted() {
        Some(why) => Err(io::Error::other(why.to_string())),
        None => Ok(()),
    }
}

struct Net {
    conns: ConnMap<Connection>,
    next: u64,
    key: StaticKey,
    hub: Hub,
    /// Who is connected where, for resolving broadcasts; kept up to date
    /// by the hub's [`Output::Directory`] changes.
    directory: Directory,
    workers: Workers,
    log_level: Level,
    /// Reused buffers: decrypted input, encoded output.
    plain: Vec<u8>,
    encoded: Vec<u8>,
    /// Connections with output queued this turn.
    dirty: Vec<ConnId>,
    /// Connections whose input was left in the socket for a later turn.
    unread: Vec<ConnId>,
    limits: NetLimits,
    per_address: HashMap<IpAddr, usize>,
    /// Closing connections still writing their last bytes.
    lingering: Vec<ConnId>,
    /// Set while `accept` cannot take the connections queued on the
    /// listener (see [`ACCEPT_RETRY`]).
    accept_blocked: Option<AcceptBlocked>,
}

fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Net {
    fn accept(&mut self, listener: &TcpListener, poll: &Poll) {
        loop {
            match listener.accept() {
                Ok((mut stream, peer)) => {
                    // Canonical: on a dual-stack listener an IPv4 client
                    // shows as ::ffff:a.b.c.d, which is not "loopback".
                    let ip = peer.ip().to_canonical();
                    let proxied = self.limits.proxies.contains(&ip);
                    if !proxied && !self.admit(peer, ip) {
                        continue; // dropping the stream closes it
                    }
                    let conn = ConnId(self.next);
                    self.next += 1;
                    let token = Token(conn.0 as usize);
                    if let Err(e) = poll
                        .registry()
                        .register(&mut stream, token, Interest::READABLE)
                    {
                        self.log(Level::Warn, format!("{peer}: cannot register: {e}"));
                        continue;
                    }
                    let _ = stream.set_nodelay(true);
                    self.conns.insert(
                        conn,
                        Connection {
                            stream,
                            peer,
                            ip,
                            counted: !proxied,
                            phase: Some(if proxied {
                                Phase::Proxy
                            } else {
                                Phase::Handshake(Box::new(ServerHandshake::new(&self.key)))
                            }),
                            inbox: Vec::new(),
                            plain: Vec::new(),
                            outbox: Vec::new(),
                            closing: None,
                            writable: false,
                            queued: false,
                            unread: false,
                        },
                    );
                    if !proxied {
                        self.hub_input(Input::Connected {
                            conn,
                            peer: peer.to_string(),
                            ip: ip.to_string(),
                        });
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if let Some(blocked) = self.accept_blocked.take() {
                        self.log(
                            Level::Warn,
                            format!(
                                "accepting connections again after {} ms",
                                blocked.since.elapsed().as_millis()
                            ),
                        );
                    }
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // A queued connection that was reset before it was taken:
                // it alone is gone, the rest of the queue is still there.
                Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => continue,
                Err(e) => {
                    // Out of file descriptors (EMFILE, ENFILE) or kernel
                    // memory (ENOBUFS, ENOMEM), for the most part: keep
                    // serving the connections we have, and try the queue
                    // again soon (see ACCEPT_RETRY). Logged once per
                    // episode, not once per try.
                    let now = Instant::now();
                    let conns = self.conns.len();
                    match &mut self.accept_blocked {
                        Some(blocked) => {
                            blocked.retry_at = now + ACCEPT_RETRY;
                            blocked.conns = conns;
                        }
                        None => {
                            self.log(
                                Level::Error,
                                format!(
                                    "accept failed: {e}: {conns} connections open; \
                                     trying again every {} ms and whenever one closes",
                                    ACCEPT_RETRY.as_millis()
                                ),
                            );
                            self.accept_blocked = Some(AcceptBlocked {
                                since: now,
                                retry_at: now + ACCEPT_RETRY,
                                conns,
                            });
                        }
                    }
                    return;
                }
            }
        }
    }

    /// Counts a connection from `ip` unless that address holds its limit
    /// already (loopback may be exempt); false, logged, when it does.
    fn admit(&mut self, peer: SocketAddr, ip: IpAddr) -> bool {
        let exempt = self.limits.exempt_loopback && ip.is_loopback();
        let count = self.per_address.get(&ip).copied().unwrap_or(0);
        if !exempt && count >= self.limits.max_per_address {
            self.log(
                Level::Warn,
                format!("{peer}: refused: already {count} connections from {ip}"),
            );
            return false;
        }
        *self.per_address.entry(ip).or_default() += 1;
        true
    }

    /// A balancer's connection: reads the PROXY header at the start of its
    /// input, and from then on treats the connection as its client's (the
    /// client's address counted and limited, the hub told). False while
    /// the header is incomplete, or when the connection was refused.
    fn take_proxy_header(&mut self, conn: ConnId) -> bool {
        let Some(c) = self.conns.get_mut(&conn) else {
            return false;
        };
        if !matches!(c.phase, Some(Phase::Proxy)) {
            return true;
        }
        let balancer = c.peer;
        let (header, used) = match proxy::parse(&c.inbox) {
            Ok(Some(found)) => found,
            Ok(None) => return false,
            Err(why) => {
                self.log(Level::Warn, format!("{balancer}: closed: {why}"));
                self.drop_conn(conn, "a bad PROXY protocol header");
                return false;
            }
        };
        c.inbox.drain(..used);
        if let proxy::Header::Proxied(client) = header {
            c.peer = client;
            c.ip = client.ip().to_canonical();
        }
        let (peer, ip) = (c.peer, c.ip);
        // The balancer speaking for itself (a health check) is not counted.
        if !self.limits.proxies.contains(&ip) && !self.admit(peer, ip) {
            self.drop_conn(conn, "too many connections from its address");
            return false;
        }
        let c = self.conns.get_mut(&conn).expect("still open");
        c.counted = !self.limits.proxies.contains(&ip);
        c.phase = Some(Phase::Handshake(Box::new(ServerHandshake::new(&self.key))));
        self.log(
            Level::Debug,
            format!("{peer}: through the load balancer {balancer}"),
        );
        self.hub_input(Input::Connected {
            conn,
            peer: peer.to_string(),
            ip: ip.to_string(),
        });
        true
    }

    /// Tries the listener's queue again while `accept` is blocked, once
    /// [`ACCEPT_RETRY`] has passed or a connection has closed since the
    /// last failure.
    fn accept_again(&mut self, listener: &TcpListener, poll: &Poll) {
        let Some(blocked) = &self.accept_blocked else {
            return;
        };
        if Instant::now() >= blocked.retry_at || self.conns.len() < blocked.conns {
            self.accept(listener, poll);
        }
    }

    /// Reads at most [`READ_BUDGET`] bytes and handles the frames in them.
    /// mio is edge-triggered, so a connection that may have more (the
    /// budget used up) goes on the `unread` list for the next turn;
    /// otherwise it is read until `WouldBlock` (on Linux a short read has
    /// emptied the socket, see [`SHORT_READ_EMPTIES`]), and new bytes bring
    /// a new event.
    /// A connection that is not keeping up with its output, or any while
    /// the store is behind, is not read: its bytes wait in the kernel and
    /// TCP slows its sender down.
    fn read(&mut self, conn: ConnId, scratch: &mut [u8]) {
        let may_read = self.may_read(conn);
        let Some(c) = self.conns.get_mut(&conn) else {
            return; // an event for a connection already closed
        };
        if !may_read {
            later(c, &mut self.unread, conn);
            return;
        }
        let mut budget = READ_BUDGET;
        let closed = loop {
            let Some(c) = self.conns.get_mut(&conn) else {
                return;
            };
            match c.stream.read(&mut scratch[..budget]) {
                Ok(0) => break "closed by the client".to_string(),
                Ok(n) => {
                    c.inbox.extend_from_slice(&scratch[..n]);
                    budget -= n;
                    if budget == 0 {
                        later(c, &mut self.unread, conn);
                    }
                    self.take_frames(conn);
                    if budget == 0 || SHORT_READ_EMPTIES {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => break format!("read failed: {e}"),
            }
        };
        self.drop_conn(conn, &closed);
    }

    /// Puts a connection on the list to be read in a later turn.
    fn read_later(&mut self, conn: ConnId) {
        if let Some(c) = self.conns.get_mut(&conn) {
            later(c, &mut self.unread, conn);
        }
    }

    /// Whether a connection left for later can be read now: the loop then
    /// polls without waiting.
    fn can_read_more(&self) -> bool {
        !self.store_behind() && self.unread.iter().any(|&conn| self.may_read(conn))
    }

    /// The backpressure rules: whether the loop takes `conn`'s requests now
    /// (false for a connection that is gone).
    fn may_read(&self, conn: ConnId) -> bool {
        !self.store_behind()
            && self
                .conns
                .get(&conn)
                .is_some_and(|c| c.unsent() < HIGH_WATER)
            && self.hub.room_uncommitted(conn) < MAX_ROOM_UNCOMMITTED
    }

    /// Reads the connections left for later, in order, until the store
    /// falls behind (the rest stay on the list as they are: thousands of
    /// clients may be waiting, and a turn should not walk them all for
    /// nothing); those that still may not be read go back on the list.
    fn read_more(&mut self, scratch: &mut [u8]) {
        let mut waiting = std::mem::take(&mut self.unread).into_iter();
        for conn in waiting.by_ref() {
            if self.store_behind() {
                self.unread.push(conn);
                break;
            }
            if let Some(c) = self.conns.get_mut(&conn) {
                c.unread = false;
                self.read(conn, scratch);
            }
        }
        self.unread.extend(waiting);
    }

    /// Whether enough messages wait for the store that no more are read.
    fn store_behind(&self) -> bool {
        self.hub.uncommitted() >= MAX_UNCOMMITTED
    }

    /// Handles every whole frame in the connection's input buffer.
    fn take_frames(&mut self, conn: ConnId) {
        if !self.take_proxy_header(conn) {
            return;
        }
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let mut inbox = std::mem::take(&mut c.inbox);
        let mut used = 0;
        while let Some((body, len)) = frame::parse(&inbox[used..]) {
            used += len;
            match self.take_frame(conn, body) {
                Ok(true) => {}
                Ok(false) => return,
                Err(e) => {
                    self.refuse(conn, &e);
                    return;
                }
            }
        }
        inbox.drain(..used);
        release_if_idle(&mut inbox);
        if let Some(c) = self.conns.get_mut(&conn) {
            c.inbox = inbox;
        }
    }

    /// One frame: the handshake's first message, or a request. `Ok(false)`
    /// when the connection is gone or closing and reads no more.
    fn take_frame(&mut self, conn: ConnId, body: &[u8]) -> Result<bool, WireError> {
        let Some(c) = self.conns.get_mut(&conn) else {
            return Ok(false);
        };
        if c.closing.is_some() {
            return Ok(false);
        }
        let input = match c.phase.as_mut() {
            Some(Phase::Open(transport)) => {
                transport.open_into(body, &mut self.plain)?;
                let frame = msg::decode::<ClientFrame>(&self.plain)?;
                Input::Request { conn, frame }
            }
            _ => {
                let Some(Phase::Handshake(hs)) = c.phase.take() else {
                    return Ok(false);
                };
                let (reply, transport) = hs.respond(body)?;
                frame::push(&mut c.outbox, &reply);
                c.phase = Some(Phase::Open(transport));
                mark(c, &mut self.dirty, conn);
                return Ok(true);
            }
        };
        self.hub_input(input);
        Ok(true)
    }

    /// Bad input: tell the client why (if the channel is up), then close.
    fn refuse(&mut self, conn: ConnId, error: &WireError) {
        let reason = error.to_string();
        let open = self
            .conns
            .get(&conn)
            .is_some_and(|c| matches!(c.phase, Some(Phase::Open(_))));
        if open && !matches!(error, WireError::Decrypt) {
            self.queue(
                conn,
                &ServerFrame::Event {
                    event: crate::wire::msg::Event::Bye {
                        reason: reason.clone(),
                        resume: false,
                    },
                },
            );
        }
        self.close(conn, reason);
    }

    /// Marks a connection to be closed once its output is written.
    fn close(&mut self, conn: ConnId, reason: String) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.closing.get_or_insert(Closing {
                reason,
                by: Instant::now() + LINGER,
            });
            mark(c, &mut self.dirty, conn);
        }
    }

    fn hub_input(&mut self, input: Input) {
        self.hub.handle(now_millis(), input);
        self.drain_hub();
    }

    /// What the bus brought: other servers' commits for the hub, and
    /// reads of the database after (and, every so often, during) an
    /// outage.
    fn hear(&mut self, cluster: &mut Cluster) {
        let now = Instant::now();
        let events: Vec<BusEvent> = cluster.bus.drain().collect();
        let mut catch_up = cluster.read_due(now);
        for event in events {
            match cluster.heard(event, now) {
                Heard::Writes(writes) => self.hub_input(Input::Replicated { writes }),
                Heard::CatchUp => catch_up = true,
                Heard::Nothing(Some((level, line))) => self.log(level, line),
                Heard::Nothing(None) => {}
            }
        }
        if catch_up {
            self.hub.catch_up_all();
            self.drain_hub();
        }
    }

    fn feed(&mut self, input: Input) {
        self.workers.observe(&input);
        self.hub_input(input);
    }

    fn drain_hub(&mut self) {
        while let Some(output) = self.hub.poll_output() {
            match output {
                Output::Send { conn, frame } => self.queue(conn, &frame),
                Output::Broadcast { audience, frame } => {
                    if msg::encode_into(&frame, &mut self.encoded).is_err() {
                        self.log(Level::Error, format!("cannot encode {frame:?}"));
                        continue;
                    }
                    // The directory lends the audience's connections (a
                    // room's own list): nothing is copied or allocated.
                    for conn in self.directory.resolve(&audience) {
                        pack(&mut self.conns, &self.encoded, &mut self.dirty, conn);
                    }
                }
                Output::Directory(change) => self.directory.apply(change),
                Output::Close { conn } => self.close(conn, "closed by the server".into()),
                Output::Auth(job) => self.workers.auth(job),
                Output::Store(job) => self.workers.store(job),
                Output::Log { level, line } => self.log(level, line),
            }
        }
    }

    fn queue(&mut self, conn: ConnId, frame: &ServerFrame) {
        match msg::encode_into(frame, &mut self.encoded) {
            Ok(()) => self.pack(conn),
            Err(e) => self.log(Level::Error, format!("cannot encode a reply: {e}")),
        }
    }

    /// Adds the encoded message to what the connection is sent this turn.
    fn pack(&mut self, conn: ConnId) {
        pack(&mut self.conns, &self.encoded, &mut self.dirty, conn);
    }

    /// Queues a connection for the end-of-turn flush.
    fn touch(&mut self, conn: ConnId) {
        if let Some(c) = self.conns.get_mut(&conn) {
            mark(c, &mut self.dirty, conn);
        }
    }

    /// Writes what each connection touched this turn has queued; closes
    /// those that are done; sets write interest where bytes are left.
    fn flush(&mut self, poll: &Poll) {
        let mut dirty = std::mem::take(&mut self.dirty);
        // Dropping a connection tells the hub, which may queue output for
        // others (their room hears it left): flush those too, this turn.
        while !dirty.is_empty() {
            self.flush_some(poll, &mut dirty);
            std::mem::swap(&mut dirty, &mut self.dirty);
        }
        self.dirty = dirty;
    }

    fn flush_some(&mut self, poll: &Poll, dirty: &mut Vec<ConnId>) {
        for conn in dirty.drain(..) {
            let Some(c) = self.conns.get_mut(&conn) else {
                continue;
            };
            c.queued = false;
            c.seal();
            let mut written = 0;
            let mut failed = None;
            while written < c.outbox.len() {
                match c.stream.write(&c.outbox[written..]) {
                    Ok(0) => {
                        failed = Some("the client stopped accepting data".to_string());
                        break;
                    }
                    Ok(n) => written += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        failed = Some(format!("write failed: {e}"));
                        break;
                    }
                }
            }
            c.outbox.drain(..written);
            release_if_idle(&mut c.outbox);
            if let Some(reason) = failed {
                self.drop_conn(conn, &reason);
                continue;
            }
            if let Some(closing) = &c.closing {
                if c.outbox.is_empty() || Instant::now() >= closing.by {
                    let reason = closing.reason.clone();
                    self.drop_conn(conn, &reason);
                    continue;
                }
                self.lingering.push(conn);
            }
            let want = !c.outbox.is_empty();
            if want != c.writable {
                c.writable = want;
                let interest = if want {
                    Interest::READABLE | Interest::WRITABLE
                } else {
                    Interest::READABLE
                };
                let token = Token(conn.0 as usize);
                if let Err(e) = poll.registry().reregister(&mut c.stream, token, interest) {
                    let reason = format!("cannot poll: {e}");
                    self.drop_conn(conn, &reason);
                }
            }
        }
    }

    fn drop_conn(&mut self, conn: ConnId, reason: &str) {
        let Some(c) = self.conns.remove(&conn) else {
            return;
        };
        let reason = c
            .closing
            .as_ref()
            .map_or(reason, |closing| &closing.reason)
            .to_string();
        if matches!(c.phase, Some(Phase::Handshake(_) | Phase::Proxy) | None) {
            self.log(
                Level::Debug,
                format!("{}: dropped before the handshake: {reason}", c.peer),
            );
        }
        if c.counted
            && let Some(n) = self.per_address.get_mut(&c.ip)
        {
            *n -= 1;
            if *n == 0 {
                self.per_address.remove(&c.ip);
            }
        }
        // The hub heard of a balancer's connection only with its header.
        let known = !matches!(c.phase, Some(Phase::Proxy));
        drop(c); // closes the socket; mio deregisters on drop
        if known {
            self.hub_input(Input::Disconnected { conn, reason });
        }
    }

    fn shut_down(&mut self, poll: &mut Poll, listener: &mut TcpListener, inputs: &Receiver<Input>) {
        let _ = poll.registry().deregister(listener);
        self.log(Level::Info, "stopping: closing connections".to_string());
        self.hub.shutdown(now_millis());
        self.drain_hub();
        // Give clients a moment to take their goodbyes; do not wait forever.
        let deadline = Instant::now() + SHUTDOWN_FLUSH;
        let mut events = Events::with_capacity(256);
        loop {
            let all: Vec<ConnId> = self.conns.keys().copied().collect();
            for conn in all {
                self.touch(conn);
            }
            self.flush(poll);
            while let Ok(input) = inputs.try_recv() {
                self.feed(input);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if self.conns.is_empty() || left.is_zero() {
                break;
            }
            let _ = poll.poll(&mut events, Some(left.min(Duration::from_millis(50))));
        }
        let rest: Vec<ConnId> = self.conns.keys().copied().collect();
        for conn in rest {
            self.drop_conn(conn, "the server is shutting down");
        }
        self.workers.finish();
        self.log(Level::Info, "stopped".to_string());
    }

    fn log(&self, level: Level, line: String) {
        if level <= self.log_level {
            super::log::emit(level, &line);
        }
    }
}

/// Adds the encoded message to what the connection is sent this turn;
/// [`Connection::seal`] encrypts it, with the rest, at the flush. Apart
/// from [`Net`] so that a broadcast can pack while it borrows the directory.
fn pack(conns: &mut ConnMap<Connection>, encoded: &[u8], dirty: &mut Vec<ConnId>, conn: ConnId) {
    let Some(c) = conns.get_mut(&conn) else {
        return;
    };
    if !matches!(c.phase, Some(Phase::Open(_))) || c.closing.is_some() {
        return;
    }
    if c.plain.len() + encoded.len() > frame::MAX_PLAINTEXT {
        c.seal();
    }
    c.plain.extend_from_slice(encoded);
    if c.unsent() > MAX_UNSENT {
        // Nothing more is owed to a client this far behind: it catches
        // up from history when it comes back.
        c.plain.clear();
        c.outbox.clear();
        c.closing = Some(Closing {
            reason: format!("too slow: more than {MAX_UNSENT} bytes waiting to be sent"),
            by: Instant::now(),
        });
    }
    mark(c, dirty, conn);
}

fn later(c: &mut Connection, unread: &mut Vec<ConnId>, conn: ConnId) {
    if !c.unread {
        c.unread = true;
        unread.push(conn);
    }
}

fn mark(c: &mut Connection, dirty: &mut Vec<ConnId>, conn: ConnId) {
    if !c.queued {
        c.queued = true;
        dirty.push(conn);
    }
}

/// Frees an empty buffer's memory once a burst has grown it: thousands of
/// idle connections should not each keep the high-water mark of its past.
fn release_if_idle(buf: &mut Vec<u8>) {
    // Above what a busy connection writes in a turn, so the buffer is not
    // freed and grown again turn after turn.
    if buf.is_empty() && buf.capacity() > 16 * 1024 {
        *buf = Vec::new();
    }
}

/// Registers the loop's waker; workers use it to rouse the loop.
pub fn waker(poll: &Poll) -> io::Result<Arc<Waker>> {
    Ok(Arc::new(Waker::new(poll.registry(), WAKER)?))
}

/// SIGINT and SIGTERM, delivered through the poll like any other event.
#[cfg(unix)]
pub struct Signals(signal_hook_mio::v1_0::Signals);

#[cfg(unix)]
impl Signals {
    pub fn register(poll: &Poll) -> io::Result<Signals> {
        use signal_hook::consts::{SIGINT, SIGTERM};
        let mut signals = signal_hook_mio::v1_0::Signals::new([SIGINT, SIGTERM])?;
        poll.registry()
            .register(&mut signals, SIGNALS, Interest::READABLE)?;
        Ok(Signals(signals))
    }

    fn stop_requested(&mut self) -> bool {
        self.0.pending().next().is_some()
    }
}

/// Elsewhere the console's Ctrl-C ends the process; the store commits each
/// group as it goes, so nothing acknowledged is lost.
#[cfg(not(unix))]
pub struct Signals;

#[cfg(not(unix))]
impl Signals {
    pub fn register(_: &Poll) -> io::Result<Signals> {
        Ok(Signals)
    }

    fn stop_requested(&mut self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use crate::client::proto::{self, ClientError};
    use crate::server::{self, Config};
    use crate::store::password::HashCost;
    use std::time::{Duration, Instant};

    /// An IPv4 client of a dual-stack listener was counted under its
    /// canonical address (127.0.0.1) but released under the mapped one
    /// (::ffff:127.0.0.1), so its count never went down and the address
    /// was refused for good once it had reached its limit.
    #[test]
    fn an_ipv4_client_of_a_dual_stack_listener_gets_its_connection_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::new(dir.path().to_path_buf());
        config.hash_cost = HashCost::TEST;
        config.net_limits.max_per_address = 1;
        config.net_limits.exempt_loopback = false;
        let server = server::start("[::]:0".parse().unwrap(), config)
            .expect("a dual-stack listener on [::] (this test needs IPv6)");
        let addr = format!("127.0.0.1:{}", server.addr.port());
        drop(proto::connect(&addr).expect("the first connection is let in"));
        // The server sees the close in a later turn: until then the one
        // connection allowed is still taken.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match proto::connect(&addr) {
                Ok(_) => break,
                Err(ClientError::Refused { .. }) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => panic!("the address never got its connection back: {e}"),
            }
        }
        server.stop().unwrap();
    }
}
