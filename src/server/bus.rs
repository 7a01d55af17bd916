//! The bus between chatapp nodes: Redis pub/sub, carried by two threads
//! that feed the event loop the way the workers do, through a channel and
//! a wake of its `mio::Waker`. The loop publishes without ever waiting, and
//! drains what arrived once a turn.
//!
//! A subscribed Redis connection can do nothing but listen, so there are
//! two. `chatapp-bus-sub` subscribes to the node's channels and reports
//! each message, and whether Redis can be heard ([`BusEvent::Up`],
//! [`BusEvent::Down`]); `chatapp-bus-pub` takes what the loop publishes
//! from a bounded queue and sends it, many messages a round trip.
//!
//! Pub/sub keeps nothing: a message published while a node is not
//! subscribed never reaches it. So the bus does not try to be reliable. A
//! message that finds the queue full or Redis gone is dropped and counted
//! ([`Bus::dropped`]), and after every connection, the first and each one
//! after an outage, the subscriber says `Up`: the consumer then reads what
//! it missed from the database, where everything was stored before it was
//! published. A message may also arrive twice (a batch whose connection
//! failed is sent once more on a new one); the consumer tells them apart
//! by their sequence numbers, as it must anyway for what it read from the
//! database.
//!
//! Neither thread needs Redis at start: each connects, and reconnects after
//! any failure, by itself, waiting 0.1 s and doubling to 2 s between
//! tries. A connection that goes silent (a peer gone without closing it)
//! is found by a PING: sent after 2 s without a word from Redis, and
//! unanswered for 3 s more, it counts as lost.
//!
//! Only this module knows Redis; what a payload means is the consumer's
//! business (a payload is bytes, and is checked where it is decoded).

use super::hub::Level;
use super::log;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, SyncSender};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Messages the publisher's queue holds; past that, [`Bus::publish`]
/// drops them. A full queue means Redis takes less than the loop gives it.
pub const QUEUE: usize = 65_536;
/// Most PUBLISH commands sent in one round trip.
const MAX_BATCH: usize = 1024;
/// The subscriber's read timeout: how often it looks up from a quiet
/// connection, to see whether the bus is stopping or Redis went silent.
const TICK: Duration = Duration::from_millis(250);
/// Silence on the subscribed connection after which it sends a PING.
const QUIET: Duration = Duration::from_secs(2);
/// The longest Redis may take to answer (a PING, a batch of PUBLISH
/// commands) or to take what is written to it; past that the connection
/// counts as lost.
const REPLY_WAIT: Duration = Duration::from_secs(3);
/// The longest a new connection may take, its handshake included.
const CONNECT_WAIT: Duration = Duration::from_secs(2);
/// The first wait before Redis is tried again; each wait doubles, up to
/// [`RETRY_MAX`], until a try succeeds.
const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(2);
/// How often a thread waiting to try again looks at the stop flag.
const STOP_POLL: Duration = Duration::from_millis(20);
const EXAMPLE_URL: &str = "redis://127.0.0.1:6379/";

/// What the subscriber tells the loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BusEvent {
    /// A message on one of the bus's channels, as published.
    Message { channel: String, payload: Vec<u8> },
    /// Subscribed: after the first connection and after each reconnection.
    /// What was published while the bus was not subscribed is lost; the
    /// consumer reads it from the database.
    Up,
    /// The connection to Redis was lost, or could not be made; said once
    /// an outage, however many tries it takes to end it. `reason` names
    /// the address and what went wrong.
    Down { reason: String },
}

/// Why a bus could not start.
#[derive(Debug)]
pub enum BusError {
    /// The URL cannot be used; `reason` says why. `url` is as given, with
    /// any password hidden.
    Url { url: String, reason: String },
    /// One of the bus's threads could not be started.
    Spawn(std::io::Error),
}

impl fmt::Display for BusError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BusError::Url { url, reason } => {
                write!(f, "--bus {url}: {reason}: give a URL like {EXAMPLE_URL}")
            }
            BusError::Spawn(_) => f.write_str("cannot start the bus's threads"),
        }
    }
}

impl std::error::Error for BusError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            BusError::Url { .. } => None,
            BusError::Spawn(e) => Some(e),
        }
    }
}

/// A channel and a payload, on their way to Redis.
type Outgoing = (String, Vec<u8>);

/// The bus of one node: what it publishes goes out through Redis, and what
/// is published on its channels, by any node, comes back as [`BusEvent`]s.
/// Dropping it stops its threads.
pub struct Bus {
    events: Receiver<BusEvent>,
    /// The publisher's queue; `None` once stopped, which tells the
    /// publisher to stop.
    outbox: Option<SyncSender<Outgoing>>,
    counts: Arc<Counts>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

/// Publishes on the bus from any thread; see [`Bus::outbox`].
#[derive(Clone)]
pub struct Outbox {
    tx: SyncSender<Outgoing>,
    counts: Arc<Counts>,
}

impl Outbox {
    /// As [`Bus::publish`].
    pub fn publish(&self, channel: &str, payload: Vec<u8>) {
        if self.tx.try_send((channel.to_owned(), payload)).is_err() {
            self.counts.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[derive(Default)]
struct Counts {
    published: AtomicU64,
    dropped: AtomicU64,
    skipped: AtomicU64,
}

impl Bus {
    /// Checks `url` and starts the two threads, subscribing to `channels`;
    /// `waker` is woken whenever an event is ready. Redis need not be
    /// reachable yet: whether it is comes as [`BusEvent::Up`] or
    /// [`BusEvent::Down`]. Only a URL that cannot work is an error here.
    pub fn start(
        url: &str,
        channels: Vec<String>,
        waker: Arc<mio::Waker>,
    ) -> Result<Bus, BusError> {
        let link = Link::new(url).map_err(|reason| BusError::Url {
            url: shown(url),
            reason,
        })?;
        let (events_tx, events) = mpsc::channel();
        let (outbox_tx, outbox) = mpsc::sync_channel(QUEUE);
        let mut bus = Bus {
            events,
            outbox: Some(outbox_tx),
            counts: Arc::default(),
            stop: Arc::default(),
            threads: Vec::new(),
        };
        let subscriber = Subscriber {
            link: link.clone(),
            channels,
            events: Events {
                tx: events_tx,
                waker,
            },
            counts: bus.counts.clone(),
            stop: bus.stop.clone(),
            backoff: Backoff::default(),
            down: false,
        };
        bus.spawn("chatapp-bus-sub", move || subscriber.run())?;
        let publisher = Publisher {
            link,
            outbox,
            counts: bus.counts.clone(),
            stop: bus.stop.clone(),
            backoff: Backoff::default(),
            down: false,
        };
        bus.spawn("chatapp-bus-pub", move || publisher.run())?;
        Ok(bus)
    }

    /// Hands `payload` to the publisher for `channel`; never waits. When
    /// the queue is full, or once the bus is stopped, the message is
    /// dropped and counted.
    pub fn publish(&self, channel: &str, payload: Vec<u8>) {
        let queued = self
            .outbox
            .as_ref()
            .is_some_and(|tx| tx.try_send((channel.to_owned(), payload)).is_ok());
        if !queued {
            self.counts.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A handle that publishes as [`Bus::publish`] does, for another
    /// thread (the store thread publishes what it commits). The publisher
    /// thread stops only once every handle is gone too.
    pub fn outbox(&self) -> Option<Outbox> {
        Some(Outbox {
            tx: self.outbox.clone()?,
            counts: self.counts.clone(),
        })
    }

    /// The next event, if one is ready.
    pub fn try_recv(&self) -> Option<BusEvent> {
        self.events.try_recv().ok()
    }

    /// The next event, waiting up to `timeout` for one.
    pub fn wait(&self, timeout: Duration) -> Option<BusEvent> {
        self.events.recv_timeout(timeout).ok()
    }

    /// Every event ready now, in order.
    pub fn drain(&self) -> impl Iterator<Item = BusEvent> + '_ {
        self.events.try_iter()
    }

    /// Messages Redis took.
    pub fn published(&self) -> u64 {
        self.counts.published.load(Ordering::Relaxed)
    }

    /// Messages not known to have reached Redis: those that found the
    /// queue full, or Redis unreachable, or were in a batch that failed.
    pub fn dropped(&self) -> u64 {
        self.counts.dropped.load(Ordering::Relaxed)
    }

    /// Messages that came from Redis in a shape the bus does not carry (a
    /// payload that is not bytes, a channel name that is not text) and
    /// were left out.
    pub fn skipped(&self) -> u64 {
        self.counts.skipped.load(Ordering::Relaxed)
    }

    /// Stops both threads and waits for them. Prompt, except that a thread
    /// in the middle of a connection attempt or waiting for an answer from
    /// Redis finishes that first (2 s and 3 s at most). What is still
    /// queued is not sent.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.outbox = None;
        for thread in self.threads.drain(..) {
            // The threads do not panic; if one did, there is nothing left
            // to stop.
            let _ = thread.join();
        }
    }

    fn spawn(&mut self, name: &str, run: impl FnOnce() + Send + 'static) -> Result<(), BusError> {
        let thread = thread::Builder::new()
            .name(name.into())
            .spawn(run)
            .map_err(BusError::Spawn)?;
        self.threads.push(thread);
        Ok(())
    }
}

impl Drop for Bus {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Where events go: the loop's channel plus the waker that rouses it.
struct Events {
    tx: Sender<BusEvent>,
    waker: Arc<mio::Waker>,
}

impl Events {
    fn send(&self, event: BusEvent) {
        // A send fails only when the bus has gone; then nobody is waiting.
        if self.tx.send(event).is_ok() {
            let _ = self.waker.wake();
        }
    }
}

/// A checked URL: the client for it (which connects only when asked) and
/// the address it names, for messages.
#[derive(Clone)]
struct Link {
    client: redis::Client,
    addr: String,
}

impl Link {
    /// Checks what can be checked without connecting; the error is the
    /// reason, worded for an operator.
    fn new(url: &str) -> Result<Link, String> {
        let Some((scheme, _)) = url.split_once("://") else {
            return Err("not a URL".into());
        };
        match scheme {
            "redis" => {}
            "rediss" | "valkeys" => {
                return Err("TLS (rediss://) is not supported: reach Redis over a \
                            private network, with redis://"
                    .into());
            }
            "unix" | "redis+unix" | "valkey+unix" => {
                return Err("Unix sockets are not supported: Redis is reached over TCP".into());
            }
            other => return Err(format!("{other}:// is not a Redis URL")),
        }
        let Some(parsed) = redis::parse_redis_url(url) else {
            return Err("not a valid URL: check the host and the port".into());
        };
        if parsed.host_str().is_none_or(str::is_empty) {
            return Err("the URL names no host".into());
        }
        let database = parsed.path().trim_start_matches('/');
        if !database.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!(
                "the path ({}) must be a database number such as /0, or nothing",
                parsed.path()
            ));
        }
        for (key, value) in parsed.query_pairs() {
            if key == "protocol" && !matches!(&*value, "2" | "resp2") {
                return Err(format!(
                    "protocol={value} is not supported: the bus speaks RESP2"
                ));
            }
        }
        let client = redis::Client::open(url).map_err(|e| e.to_string())?;
        let addr = match &client.get_connection_info().addr {
            redis::ConnectionAddr::Tcp(host, port) if host.contains(':') => {
                format!("[{host}]:{port}")
            }
            other => other.to_string(),
        };
        Ok(Link { client, addr })
    }

    /// A new connection, with [`REPLY_WAIT`] for reads and writes.
    fn connect(&self) -> Result<redis::Connection, String> {
        let con = self
            .client
            .get_connection_with_timeout(CONNECT_WAIT)
            .map_err(|e| self.failed(&e))?;
        con.set_write_timeout(Some(REPLY_WAIT))
            .and_then(|()| con.set_read_timeout(Some(REPLY_WAIT)))
            .map_err(|e| self.failed(&e))?;
        Ok(con)
    }

    /// Every message of `batch` in one round trip.
    fn publish(&self, con: &mut redis::Connection, batch: &[Outgoing]) -> Result<(), String> {
        let mut pipe = redis::pipe();
        for (channel, payload) in batch {
            pipe.cmd("PUBLISH").arg(channel).arg(payload).ignore();
        }
        pipe.exec(con).map_err(|e| self.failed(&e))
    }

    fn failed(&self, e: &redis::RedisError) -> String {
        format!("Redis at {}: {e}", self.addr)
    }
}

/// The `chatapp-bus-sub` thread.
struct Subscriber {
    link: Link,
    channels: Vec<String>,
    events: Events,
    counts: Arc<Counts>,
    stop: Arc<AtomicBool>,
    backoff: Backoff,
    /// Whether `Down` was said for the outage going on.
    down: bool,
}

impl Subscriber {
    fn run(mut self) {
        while !self.stopping() {
            let reason = match self.listen() {
                Ok(()) => return,
                Err(reason) => reason,
            };
            if !self.down {
                self.down = true;
                self.events.send(BusEvent::Down { reason });
            }
            let wait = self.backoff.next();
            self.pause(wait);
        }
    }

    /// One connection, from connecting to losing it: `Ok` when the bus
    /// stops, else why the connection was lost or could not be made.
    fn listen(&mut self) -> Result<(), String> {
        let mut con = self.link.connect()?;
        let mut pubsub = con.as_pubsub();
        let ended = self.subscribed(&mut pubsub);
        // Dropping a PubSub unsubscribes and waits for Redis to agree; the
        // connection is being thrown away, so that wait is kept short.
        let _ = pubsub.set_read_timeout(Some(Duration::from_millis(10)));
        ended
    }

    fn subscribed(&mut self, pubsub: &mut redis::PubSub) -> Result<(), String> {
        if !self.channels.is_empty() {
            pubsub
                .subscribe(self.channels.as_slice())
                .map_err(|e| self.link.failed(&e))?;
        }
        pubsub
            .set_read_timeout(Some(TICK))
            .map_err(|e| self.link.failed(&e))?;
        self.down = false;
        self.backoff.reset();
        self.events.send(BusEvent::Up);
        let mut heard = Instant::now();
        while !self.stopping() {
            match pubsub.get_message() {
                Ok(msg) => {
                    heard = Instant::now();
                    match event(&msg) {
                        Some(event) => self.events.send(event),
                        None => {
                            self.counts.skipped.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                Err(e) if e.is_timeout() => {
                    if heard.elapsed() >= QUIET {
                        self.ping(pubsub)?;
                        heard = Instant::now();
                    }
                }
                Err(e) => return Err(self.link.failed(&e)),
            }
        }
        Ok(())
    }

    /// Asks a quiet connection whether Redis is still there. Messages that
    /// arrive before the answer are kept for `get_message`.
    fn ping(&self, pubsub: &mut redis::PubSub) -> Result<(), String> {
        let failed = |e: redis::RedisError| {
            if e.is_timeout() {
                format!(
                    "Redis at {} did not answer a PING within {REPLY_WAIT:?}",
                    self.link.addr
                )
            } else {
                self.link.failed(&e)
            }
        };
        pubsub
            .set_read_timeout(Some(REPLY_WAIT))
            .map_err(|e| self.link.failed(&e))?;
        // Any answer will do: in subscribed mode it is ["pong", ""].
        pubsub.ping::<redis::Value>().map_err(failed)?;
        pubsub
            .set_read_timeout(Some(TICK))
            .map_err(|e| self.link.failed(&e))
    }

    fn pause(&self, wait: Duration) {
        let until = Instant::now() + wait;
        while !self.stopping() {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            thread::sleep(left.min(STOP_POLL));
        }
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }
}

/// A message from Redis as an event, or `None` if its payload is not
/// bytes (which PUBLISH never makes, but Redis is another program).
fn event(msg: &redis::Msg) -> Option<BusEvent> {
    let channel: String = msg.get_channel().ok()?;
    match msg.get_payload::<redis::Value>().ok()? {
        redis::Value::BulkString(payload) => Some(BusEvent::Message { channel, payload }),
        _ => None,
    }
}

/// The `chatapp-bus-pub` thread.
struct Publisher {
    link: Link,
    outbox: Receiver<Outgoing>,
    counts: Arc<Counts>,
    stop: Arc<AtomicBool>,
    backoff: Backoff,
    /// Whether the outage going on was logged.
    down: bool,
}

impl Publisher {
    fn run(mut self) {
        loop {
            let reason = match self.link.connect() {
                Ok(mut con) => {
                    if self.down {
                        log::emit(Level::Info, "bus: publishing to Redis again");
                    }
                    self.down = false;
                    self.backoff.reset();
                    match self.serve(&mut con) {
                        Ok(()) => return,
                        Err(reason) => reason,
                    }
                }
                Err(reason) => reason,
            };
            if !self.down {
                self.down = true;
                log::emit(
                    Level::Warn,
                    &format!(
                        "bus: cannot publish: {reason}; what is published meanwhile is \
                         dropped (other nodes catch up from the database)"
                    ),
                );
            }
            let until = Instant::now() + self.backoff.next();
            if !self.drop_until(until) {
                return;
            }
        }
    }

    /// Sends what is queued, a batch a round trip, until the bus stops
    /// (`Ok`) or the connection fails. A batch that fails is sent once
    /// more on a new connection, since most often Redis closed the old one
    /// while it sat idle (a restart): then it never took the batch. If it
    /// did take it (an answer that came too late), the messages arrive
    /// twice. If the new connection fails too, the batch is dropped.
    fn serve(&self, con: &mut redis::Connection) -> Result<(), String> {
        while let Some(batch) = self.next_batch() {
            let sent = self.link.publish(con, &batch).or_else(|_| {
                *con = self.link.connect()?;
                self.link.publish(con, &batch)
            });
            let count = batch.len() as u64;
            match sent {
                Ok(()) => self.counts.published.fetch_add(count, Ordering::Relaxed),
                Err(reason) => {
                    self.counts.dropped.fetch_add(count, Ordering::Relaxed);
                    return Err(reason);
                }
            };
        }
        Ok(())
    }

    /// Waits for a message, then takes what else is queued, up to
    /// [`MAX_BATCH`]; `None` when the bus stops.
    fn next_batch(&self) -> Option<Vec<Outgoing>> {
        let first = self.outbox.recv().ok()?;
        if self.stop.load(Ordering::SeqCst) {
            return None;
        }
        let mut batch = vec![first];
        batch.extend(self.outbox.try_iter().take(MAX_BATCH - 1));
        Some(batch)
    }

    /// Redis is unreachable: drops and counts what is published until
    /// `until`. False if the bus stopped meanwhile.
    fn drop_until(&self, until: Instant) -> bool {
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return true;
            }
            match self.outbox.recv_timeout(left) {
                Ok(_) => {
                    self.counts.dropped.fetch_add(1, Ordering::Relaxed);
                }
                Err(RecvTimeoutError::Timeout) => return true,
                Err(RecvTimeoutError::Disconnected) => return false,
            }
        }
    }
}

/// The waits between tries to reach Redis: [`RETRY_FIRST`], doubling up
/// to [`RETRY_MAX`], from the start again once a try succeeds.
#[derive(Debug)]
struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff { next: RETRY_FIRST }
    }
}

impl Backoff {
    fn next(&mut self) -> Duration {
        let wait = self.next;
        self.next = (wait * 2).min(RETRY_MAX);
        wait
    }

    fn reset(&mut self) {
        self.next = RETRY_FIRST;
    }
}

/// `url` for a message: a password in it is replaced by `***`.
fn shown(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let Some(at) = authority.rfind('@') else {
        return url.to_string();
    };
    let Some(colon) = authority[..at].find(':') else {
        return url.to_string();
    };
    format!("{scheme}://{}:***{}", &rest[..colon], &rest[at..])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(url: &str) -> String {
        match Link::new(url) {
            Ok(link) => panic!("{url} was taken, as {}", link.addr),
            Err(reason) => reason,
        }
    }

    #[test]
    fn urls_that_name_a_redis_over_tcp_are_taken() {
        for (url, addr) in [
            ("redis://127.0.0.1:6379/", "127.0.0.1:6379"),
            ("redis://127.0.0.1", "127.0.0.1:6379"),
            ("redis://localhost:6380/0", "localhost:6380"),
            ("redis://:secret@10.0.0.1:6379/2", "10.0.0.1:6379"),
            ("redis://user:secret@redis.internal/", "redis.internal:6379"),
            ("redis://[::1]:7000/", "[::1]:7000"),
            ("redis://127.0.0.1:6379/?protocol=resp2", "127.0.0.1:6379"),
        ] {
            match Link::new(url) {
                Ok(link) => assert_eq!(link.addr, addr, "{url}"),
                Err(reason) => panic!("{url} was refused: {reason}"),
            }
        }
    }

    #[test]
    fn urls_that_cannot_work_are_refused_with_the_reason() {
        for (url, says) in [
            ("", "not a URL"),
            ("127.0.0.1:6379", "not a URL"),
            ("http://127.0.0.1:6379/", "http:// is not a Redis URL"),
            ("rediss://127.0.0.1:6379/", "TLS"),
            ("redis+unix:///run/redis.sock", "Unix sockets"),
            ("redis://127.0.0.1:99999/", "check the host and the port"),
            ("redis://127.0.0.1:port/", "check the host and the port"),
            ("redis:///0", "no host"),
            ("redis://127.0.0.1:6379/chat", "database number"),
            ("redis://127.0.0.1:6379/?protocol=resp3", "RESP2"),
        ] {
            let reason = reason(url);
            assert!(reason.contains(says), "{url}: {reason:?}");
        }
    }

    #[test]
    fn a_refused_url_says_what_to_give_and_hides_its_password() {
        let error = BusError::Url {
            url: shown("redis://admin:hunter2@127.0.0.1:6379/chat"),
            reason: reason("redis://admin:hunter2@127.0.0.1:6379/chat"),
        };
        let text = error.to_string();
        assert!(!text.contains("hunter2"), "{text}");
        assert!(
            text.starts_with("--bus redis://admin:***@127.0.0.1:6379/chat: "),
            "{text}"
        );
        assert!(
            text.ends_with(": give a URL like redis://127.0.0.1:6379/"),
            "{text}"
        );
    }

    #[test]
    fn only_a_password_is_hidden() {
        for (url, seen) in [
            ("redis://127.0.0.1:6379/", "redis://127.0.0.1:6379/"),
            ("redis://:pw@h:1/", "redis://:***@h:1/"),
            ("redis://me:p@ss@h/", "redis://me:***@h/"),
            ("redis://me@h/", "redis://me@h/"),
            ("redis://h/a@b", "redis://h/a@b"),
            ("not a url", "not a url"),
        ] {
            assert_eq!(shown(url), seen);
        }
    }

    #[test]
    fn the_wait_doubles_from_a_tenth_of_a_second_to_two_and_starts_over() {
        let mut backoff = Backoff::default();
        let waits: Vec<u64> = (0..7).map(|_| backoff.next().as_millis() as u64).collect();
        assert_eq!(waits, [100, 200, 400, 800, 1600, 2000, 2000]);
        backoff.reset();
        assert_eq!(backoff.next(), RETRY_FIRST);
    }

    fn msg(payload: redis::Value) -> redis::Msg {
        let raw = redis::Value::Array(vec![
            redis::Value::BulkString(b"message".to_vec()),
            redis::Value::BulkString(b"room.1".to_vec()),
            payload,
        ]);
        redis::Msg::from_owned_value(raw).expect("a message")
    }

    #[test]
    fn a_payload_is_carried_as_its_bytes_and_anything_else_is_skipped() {
        let bytes = vec![0, 0xff, b'\r', b'\n', 0xc3];
        assert_eq!(
            event(&msg(redis::Value::BulkString(bytes.clone()))),
            Some(BusEvent::Message {
                channel: "room.1".into(),
                payload: bytes,
            })
        );
        for odd in [
            redis::Value::Int(7),
            redis::Value::Nil,
            redis::Value::Array(vec![]),
            redis::Value::SimpleString("OK".into()),
        ] {
            assert_eq!(event(&msg(odd.clone())), None, "{odd:?}");
        }
    }
}
