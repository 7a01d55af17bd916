//! The client side of the protocol, blocking: connect, handshake, check the
//! server key, then send requests and read replies and events. The terminal
//! client and the integration tests both speak through this.

use crate::wire::msg::{self, ClientFrame, Event, Reply, Request, ServerFrame};
use crate::wire::noise::{ClientHandshake, PendingTrust, Transport};
use crate::wire::{WireError, frame};
use std::collections::VecDeque;
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// How long connecting and the handshake may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug)]
pub enum ClientError {
    /// No TCP connection could be made.
    Unreachable { addr: String, source: io::Error },
    /// The handshake failed: another protocol version, or not chatapp.
    Handshake { addr: String, source: WireError },
    /// The server closed the connection before answering the handshake:
    /// it is refusing connections (too many from this address, say).
    Refused { addr: String },
    /// The connection broke or the server closed it.
    Lost(String),
    /// The server sent something we cannot read.
    Wire(WireError),
    /// No answer in time.
    Timeout,
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Unreachable { addr, source } => {
                let hint = match source.kind() {
                    io::ErrorKind::ConnectionRefused => {
                        " - is `chatapp serve` running?".to_string()
                    }
                    io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => {
                        " - check the address and your network".to_string()
                    }
                    _ => String::new(),
                };
                let what = match source.kind() {
                    io::ErrorKind::ConnectionRefused => "connection refused".to_string(),
                    io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => {
                        "no answer in time".to_string()
                    }
                    _ => source.to_string(),
                };
                write!(f, "could not reach {addr}: {what}{hint}")
            }
            ClientError::Handshake { addr, .. } => write!(
                f,
                "{addr} did not complete a chatapp handshake: it runs another chatapp version, or is not a chatapp server. Update chatapp on both sides"
            ),
            ClientError::Refused { addr } => write!(
                f,
                "{addr} closed the connection before the handshake: it may be limiting connections from your address, or busy. Wait a little and try again"
            ),
            ClientError::Lost(why) => write!(f, "the connection to the server was lost: {why}"),
            ClientError::Wire(e) => write!(f, "the server sent something unreadable: {e}"),
            ClientError::Timeout => f.write_str("the server did not answer in time"),
        }
    }
}

impl std::error::Error for ClientError {}

/// Handshake done; the server's key is known but not yet trusted, and
/// nothing has been sent inside the channel.
pub struct Unverified {
    stream: TcpStream,
    pending: PendingTrust,
    addr: SocketAddr,
}

impl Unverified {
    pub fn fingerprint(&self) -> String {
        self.pending.fingerprint()
    }

    pub fn server_key(&self) -> &[u8; 32] {
        self.pending.server_key()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The key is trusted: the channel may be used.
    pub fn accept(self) -> Connection {
        Connection {
            stream: self.stream,
            transport: self.pending.accept(),
            inbox: Vec::new(),
            plain: Vec::new(),
            frames: VecDeque::new(),
            events: VecDeque::new(),
            next_id: 1,
        }
    }
}

/// Connects and runs the handshake.
pub fn connect(addr: &str) -> Result<Unverified, ClientError> {
    let unreachable = |source| ClientError::Unreachable {
        addr: addr.to_string(),
        source,
    };
    // Several servers of one deployment: each name's addresses, in order.
    let mut last = io::Error::new(io::ErrorKind::NotFound, "the name resolves to no address");
    let mut addrs: Vec<SocketAddr> = Vec::new();
    for name in addr.split(',') {
        match name.to_socket_addrs() {
            Ok(found) => addrs.extend(found),
            Err(e) => last = e,
        }
    }
    let mut stream = None;
    for a in &addrs {
        match TcpStream::connect_timeout(a, CONNECT_TIMEOUT) {
            Ok(s) => {
                stream = Some((s, *a));
                break;
            }
            Err(e) => last = e,
        }
    }
    let (mut stream, peer) = stream.ok_or_else(|| unreachable(last))?;
    let _ = stream.set_nodelay(true);
    let handshake_failed = |source| ClientError::Handshake {
        addr: addr.to_string(),
        source,
    };
    let (hs, first) = ClientHandshake::start();
    let mut out = Vec::new();
    frame::push(&mut out, &first);
    stream
        .write_all(&out)
        .map_err(|e| ClientError::Lost(e.to_string()))?;
    let mut inbox = Vec::new();
    let deadline = Instant::now() + CONNECT_TIMEOUT;
    let body = loop {
        if let Some((body, used)) = frame::parse(&inbox) {
            let body = body.to_vec();
            inbox.drain(..used);
            break body;
        }
        match read_some(&mut stream, &mut inbox, Some(deadline)) {
            Ok(()) => {}
            Err(ClientError::Lost(_)) => {
                return Err(ClientError::Refused {
                    addr: addr.to_string(),
                });
            }
            Err(e) => return Err(e),
        }
    };
    let pending = hs.finish(&body).map_err(handshake_failed)?;
    Ok(Unverified {
        stream,
        pending,
        addr: peer,
    })
}

/// Reads what is available into `inbox`, waiting until `deadline` (or
/// forever without one).
fn read_some(
    stream: &mut TcpStream,
    inbox: &mut Vec<u8>,
    deadline: Option<Instant>,
) -> Result<(), ClientError> {
    let timeout = match deadline {
        Some(d) => {
            let left = d.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ClientError::Timeout);
            }
            Some(left)
        }
        None => None,
    };
    stream
        .set_read_timeout(timeout)
        .map_err(|e| ClientError::Lost(e.to_string()))?;
    let mut buf = [0u8; 16 * 1024];
    match stream.read(&mut buf) {
        Ok(0) => Err(ClientError::Lost("the server closed the connection".into())),
        Ok(n) => {
            inbox.extend_from_slice(&buf[..n]);
            Ok(())
        }
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            Err(ClientError::Timeout)
        }
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(()),
        Err(e) => Err(ClientError::Lost(e.to_string())),
    }
}

/// A trusted, established connection.
pub struct Connection {
    stream: TcpStream,
    transport: Transport,
    inbox: Vec<u8>,
    plain: Vec<u8>,
    /// Frames already decrypted and not yet read: the server packs several
    /// into one transport message.
    frames: VecDeque<ServerFrame>,
    events: VecDeque<Event>,
    next_id: u32,
}

impl Connection {
    /// Sends a request without waiting; returns its id.
    pub fn send(&mut self, req: Request) -> Result<u32, ClientError> {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        let bytes = msg::encode(&ClientFrame { id, req }).map_err(ClientError::Wire)?;
        let mut out = Vec::with_capacity(bytes.len() + 18);
        self.transport
            .seal_into(&bytes, &mut out)
            .map_err(ClientError::Wire)?;
        self.stream
            .write_all(&out)
            .map_err(|e| ClientError::Lost(e.to_string()))?;
        Ok(id)
    }

    /// Sends a request and waits for its reply; events that arrive
    /// meanwhile are kept for [`Connection::next_event`].
    pub fn request(&mut self, req: Request) -> Result<Reply, ClientError> {
        self.request_within(req, Duration::from_secs(30))
    }

    pub fn request_within(&mut self, req: Request, wait: Duration) -> Result<Reply, ClientError> {
        let id = self.send(req)?;
        let deadline = Instant::now() + wait;
        loop {
            match self.read_frame(Some(deadline))? {
                ServerFrame::Reply { id: got, result } if got == id => return Ok(result),
                ServerFrame::Reply { .. } => {}
                ServerFrame::Event { event } => self.events.push_back(event),
            }
        }
    }

    /// The next event, waiting up to `wait` (`None`: forever). `Ok(None)`
    /// when none came in time. Replies to requests sent with
    /// [`Connection::send`] are skipped.
    pub fn next_event(&mut self, wait: Option<Duration>) -> Result<Option<Event>, ClientError> {
        if let Some(e) = self.events.pop_front() {
            return Ok(Some(e));
        }
        let deadline = wait.map(|w| Instant::now() + w);
        loop {
            match self.read_frame(deadline) {
                Ok(ServerFrame::Event { event }) => return Ok(Some(event)),
                Ok(ServerFrame::Reply { .. }) => {}
                Err(ClientError::Timeout) => return Ok(None),
                Err(e) => return Err(e),
            }
        }
    }

    /// The next frame of either kind, waiting up to `wait`; `Ok(None)` when
    /// none came in time. Events kept back by [`Connection::request`] come
    /// first. A frame cut in half by the timeout stays buffered for the next
    /// call, so a short `wait` is safe: this is what lets one thread both
    /// read and send (the terminal client's network thread does).
    pub fn next_frame(&mut self, wait: Duration) -> Result<Option<ServerFrame>, ClientError> {
        if let Some(event) = self.events.pop_front() {
            return Ok(Some(ServerFrame::Event { event }));
        }
        match self.read_frame(Some(Instant::now() + wait)) {
            Ok(frame) => Ok(Some(frame)),
            Err(ClientError::Timeout) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Events already received and not yet taken.
    pub fn pending_events(&mut self) -> impl Iterator<Item = Event> + '_ {
        self.events.drain(..)
    }

    fn read_frame(&mut self, deadline: Option<Instant>) -> Result<ServerFrame, ClientError> {
        loop {
            if let Some(frame) = self.frames.pop_front() {
                if let ServerFrame::Event { event: Event::Ping } = frame {
                    // The server wonders whether we are still here: we are.
                    self.send(Request::Ping)?;
                }
                return Ok(frame);
            }
            if let Some((body, used)) = frame::parse(&self.inbox) {
                let opened = self.transport.open_into(body, &mut self.plain);
                self.inbox.drain(..used);
                opened.map_err(ClientError::Wire)?;
                for frame in msg::decode_each(&self.plain) {
                    self.frames.push_back(frame.map_err(ClientError::Wire)?);
                }
                continue;
            }
            read_some(&mut self.stream, &mut self.inbox, deadline)?;
        }
    }

    /// The underlying socket, for callers that poll it themselves.
    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }
}
