//! The network thread and the terminal's handle on it.
//!
//! One thread owns the [`Connection`]: it sends what the terminal asks and
//! reads with a short timeout in between, so the server's pushed events
//! (room messages, private-message notices, kicks, closed rooms, goodbyes)
//! arrive while the person is typing. Everything it reads goes to the
//! terminal thread through a channel, which makes that thread the only one
//! that writes to the screen: nothing needs a lock to keep a typed line
//! intact, because nothing else can draw over it.

use super::proto::{ClientError, Connection};
use crate::wire::msg::{Event, Reply, Request, ServerFrame};
use std::collections::{HashMap, VecDeque};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long one read waits before the thread looks for requests to send.
/// It bounds the delay a request can see, and costs ~40 wake-ups a second.
const READ_SLICE: Duration = Duration::from_millis(25);
/// A ping after this long without sending anything, so that the server
/// (and any NAT in between) sees a live client while its user only reads.
/// (The server's own `ping` event is answered by the connection itself.)
const KEEPALIVE: Duration = Duration::from_secs(30);
/// A ping after this long without hearing anything, to learn whether the
/// server is still there...
const QUIET: Duration = Duration::from_secs(10);
/// ...and the connection given up after this long without hearing
/// anything: a cut link sends no error, and TCP would wait many minutes.
const DEAD: Duration = Duration::from_secs(20);

/// What the network thread hands the terminal.
#[derive(Debug, Clone, PartialEq)]
pub enum NetEvent {
    /// The answer to the request sent with this tag.
    Reply { tag: u64, reply: Reply },
    /// Something the server pushed.
    Event(Event),
    /// The connection is gone; the text says why. Nothing follows.
    Lost(String),
}

/// Why [`Link::call`] got no reply.
#[derive(Debug, Clone, PartialEq)]
pub enum CallError {
    Lost(String),
    Timeout,
}

/// The terminal's end of the network thread.
pub struct Link {
    requests: Sender<(u64, Request)>,
    incoming: Receiver<NetEvent>,
    /// Events read while waiting for a reply, in order, not yet taken.
    backlog: VecDeque<NetEvent>,
    next_tag: u64,
    lost: Option<String>,
    thread: Option<JoinHandle<()>>,
}

impl Link {
    /// Hands the connection to a new network thread.
    pub fn start(conn: Connection) -> Link {
        let (requests, rx) = mpsc::channel();
        let (tx, incoming) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("chatapp-net".into())
            .spawn(move || network(conn, rx, tx))
            .expect("spawning the network thread");
        Link {
            requests,
            incoming,
            backlog: VecDeque::new(),
            next_tag: 1,
            lost: None,
            thread: Some(thread),
        }
    }

    /// Queues a request; its reply comes back as [`NetEvent::Reply`] with
    /// the returned tag.
    pub fn send(&mut self, req: Request) -> u64 {
        let tag = self.next_tag;
        self.next_tag += 1;
        // A send fails only when the thread ended, and then a `Lost` is
        // waiting in the channel for the caller to find.
        let _ = self.requests.send((tag, req));
        tag
    }

    /// Sends a request and waits up to `wait` for its reply. Events that
    /// arrive meanwhile are kept, in order, for [`Link::next_event`].
    pub fn call(&mut self, req: Request, wait: Duration) -> Result<Reply, CallError> {
        if let Some(why) = &self.lost {
            return Err(CallError::Lost(why.clone()));
        }
        let tag = self.send(req);
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.incoming.recv_timeout(left) {
                Ok(NetEvent::Reply { tag: got, reply }) if got == tag => return Ok(reply),
                Ok(NetEvent::Lost(why)) => {
                    self.lost = Some(why.clone());
                    self.backlog.push_back(NetEvent::Lost(why.clone()));
                    return Err(CallError::Lost(why));
                }
                Ok(other) => self.backlog.push_back(other),
                Err(RecvTimeoutError::Timeout) => return Err(CallError::Timeout),
                Err(RecvTimeoutError::Disconnected) => {
                    let why = "the network thread stopped".to_string();
                    self.lost = Some(why.clone());
                    return Err(CallError::Lost(why));
                }
            }
        }
    }

    /// The next thing from the server, if one is waiting; never blocks.
    pub fn next_event(&mut self) -> Option<NetEvent> {
        if let Some(e) = self.backlog.pop_front() {
            return Some(e);
        }
        match self.incoming.try_recv() {
            Ok(e) => {
                if let NetEvent::Lost(why) = &e {
                    self.lost = Some(why.clone());
                }
                Some(e)
            }
            Err(TryRecvError::Empty) => None,
            Err(TryRecvError::Disconnected) => {
                if self.lost.is_some() {
                    return None;
                }
                let why = "the network thread stopped".to_string();
                self.lost = Some(why.clone());
                Some(NetEvent::Lost(why))
            }
        }
    }

    /// Whether the connection is known to be gone.
    pub fn is_lost(&self) -> bool {
        self.lost.is_some()
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        // Closing the request channel tells the thread to drop the
        // connection, which closes the socket; the server sees the client
        // leave. Wait for it so the close happens before the process exits.
        let (dead, _) = mpsc::channel();
        self.requests = dead;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn network(mut conn: Connection, requests: Receiver<(u64, Request)>, out: Sender<NetEvent>) {
    let mut tags: HashMap<u32, u64> = HashMap::new();
    let mut last_sent = Instant::now();
    let mut last_heard = Instant::now();
    let lost = |e: ClientError| NetEvent::Lost(lost_reason(&e));
    loop {
        loop {
            match requests.try_recv() {
                Ok((tag, req)) => match conn.send(req) {
                    Ok(id) => {
                        tags.insert(id, tag);
                        last_sent = Instant::now();
                    }
                    Err(e) => {
                        let _ = out.send(lost(e));
                        return;
                    }
                },
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => return,
            }
        }
        if last_heard.elapsed() >= DEAD {
            let why = format!("nothing heard from the server for {} s", DEAD.as_secs());
            let _ = out.send(NetEvent::Lost(why));
            return;
        }
        let quiet = last_heard.elapsed() >= QUIET && last_sent.elapsed() >= QUIET;
        if quiet || last_sent.elapsed() >= KEEPALIVE {
            // Its pong carries an id with no tag and is dropped below.
            if let Err(e) = conn.send(Request::Ping) {
                let _ = out.send(lost(e));
                return;
            }
            last_sent = Instant::now();
        }
        let frame = conn.next_frame(READ_SLICE);
        if let Ok(Some(_)) = frame {
            last_heard = Instant::now();
        }
        let event = match frame {
            Ok(None) => continue,
            Ok(Some(ServerFrame::Reply { id, result })) => match tags.remove(&id) {
                Some(tag) => NetEvent::Reply { tag, reply: result },
                None => continue,
            },
            // The connection answered it already; nothing to show.
            Ok(Some(ServerFrame::Event { event: Event::Ping })) => continue,
            Ok(Some(ServerFrame::Event { event })) => NetEvent::Event(event),
            Err(e) => {
                let _ = out.send(lost(e));
                return;
            }
        };
        if out.send(event).is_err() {
            return;
        }
    }
}

/// The reason shown for a lost connection, without the "connection lost"
/// preamble that the screen adds itself.
fn lost_reason(e: &ClientError) -> String {
    match e {
        ClientError::Lost(why) => why.clone(),
        other => other.to_string(),
    }
}
