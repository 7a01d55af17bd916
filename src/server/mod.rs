//! `chatapp serve`: the data directory (database, server key, lock file),
//! the listening socket, and the threads around the event loop.
//!
//! [`start`] runs a server on a thread of this process and returns a
//! [`Handle`]: the integration tests bind `127.0.0.1:0` through it and
//! speak the real protocol to it. [`serve`] is the same server for the
//! command line, stopped by SIGINT or SIGTERM.

pub mod args;
pub mod directory;
pub mod hub;
pub mod limits;
pub mod log;
pub mod net;
pub mod turns;
pub mod workers;

use crate::store::password::HashCost;
use crate::store::{self, Snapshot, Store};
use crate::wire::noise::StaticKey;
use anyhow::{Context, bail};
use hub::{Hub, Level};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{SystemTime, UNIX_EPOCH};

pub const DATABASE_FILE: &str = "chatapp.db";
pub const KEY_FILE: &str = "server.key";
pub const LOCK_FILE: &str = "chatapp.lock";
pub use log::LOG_ENV;

#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    pub hash_cost: HashCost,
    /// Threads that run scrypt.
    pub hashers: usize,
    /// The most this server says (`CHATAPP_LOG` by default); where it
    /// goes is up to the `tracing` subscriber (see [`log`]).
    pub log_level: Level,
    pub limits: hub::Limits,
    pub net_limits: net::NetLimits,
    pub sync: crate::store::Sync,
}

impl Config {
    pub fn new(data_dir: PathBuf) -> Config {
        Config {
            data_dir,
            hash_cost: HashCost::default(),
            hashers: std::thread::available_parallelism().map_or(2, |n| n.get().clamp(1, 4)),
            log_level: log::level_from_env(),
            limits: hub::Limits::default(),
            net_limits: net::NetLimits::default(),
            sync: crate::store::Sync::Full,
        }
    }
}

/// The platform's data directory for chatapp.
pub fn default_data_dir() -> anyhow::Result<PathBuf> {
    directories::ProjectDirs::from("", "", "chatapp")
        .map(|d| d.data_dir().to_path_buf())
        .context("cannot find a home directory for the data: pass --data-dir DIR")
}

/// The fingerprint of the server key in `data_dir`, creating the key if
/// there is none yet (so the operator can publish it before the first start).
pub fn fingerprint(data_dir: &Path) -> anyhow::Result<String> {
    prepare_dir(data_dir)?;
    Ok(load_or_create_key(data_dir)?.fingerprint())
}

/// Parses a listen address, saying plainly what is wrong with a bad one.
pub fn parse_listen(listen: &str) -> anyhow::Result<SocketAddr> {
    if let Ok(addr) = listen.parse() {
        return Ok(addr);
    }
    if let Some((_, port)) = listen.rsplit_once(':')
        && port.parse::<u64>().is_ok_and(|p| p > 65535)
    {
        bail!("cannot listen on {listen}: port {port} is out of range (0 to 65535)");
    }
    bail!("cannot listen on {listen}: give an address like 127.0.0.1:7878 or [::1]:7878")
}

/// Runs the server in the foreground until SIGINT or SIGTERM.
pub fn serve(listen: &str, config: Config) -> anyhow::Result<()> {
    let addr = parse_listen(listen)?;
    let mut server = Server::open(addr, config)?;
    // Before the address is announced: a SIGTERM that follows the
    // announcement at once must still be a clean stop.
    server.signals = Some(net::Signals::register(&server.poll)?);
    println!(
        "chatapp listening on {} with key {}",
        server.addr, server.fingerprint
    );
    let _ = io::stdout().flush();
    server.run()?;
    Ok(())
}

/// Starts a server on a thread of this process (for tests and embedding).
pub fn start(addr: SocketAddr, config: Config) -> anyhow::Result<Handle> {
    let server = Server::open(addr, config)?;
    let addr = server.addr;
    let fingerprint = server.fingerprint.clone();
    let stop = server.stop.clone();
    let waker = server.waker.clone();
    let thread = std::thread::Builder::new()
        .name("chatapp-server".into())
        .spawn(move || server.run())?;
    Ok(Handle {
        addr,
        fingerprint,
        stop,
        waker,
        thread: Some(thread),
    })
}

/// A server running on a thread of this process.
pub struct Handle {
    pub addr: SocketAddr,
    pub fingerprint: String,
    stop: Arc<AtomicBool>,
    waker: Arc<mio::Waker>,
    thread: Option<JoinHandle<io::Result<()>>>,
}

impl Handle {
    /// Stops the server as SIGTERM would and waits until it has: every
    /// acknowledged write is committed when this returns.
    pub fn stop(mut self) -> io::Result<()> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> io::Result<()> {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.waker.wake();
        match self.thread.take() {
            Some(t) => t
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("server panicked"))),
            None => Ok(()),
        }
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

/// Everything opened and bound, ready to run.
struct Server {
    addr: SocketAddr,
    fingerprint: String,
    listener: TcpListener,
    key: StaticKey,
    store: Box<dyn Store>,
    /// Loaded before the address is announced, so a client that sees the
    /// announcement finds every account in place.
    snapshot: Snapshot,
    config: Config,
    poll: mio::Poll,
    waker: Arc<mio::Waker>,
    stop: Arc<AtomicBool>,
    /// SIGINT and SIGTERM, for a server that is the process's own.
    signals: Option<net::Signals>,
    /// Held for the server's life: the OS releases it if the process dies.
    _lock: File,
}

impl Server {
    fn open(addr: SocketAddr, config: Config) -> anyhow::Result<Server> {
        let dir = &config.data_dir;
        prepare_dir(dir)?;
        let lock = lock_dir(dir)?;
        let key = load_or_create_key(dir)?;
        let db = dir.join(DATABASE_FILE);
        let mut store = store::open(&store::Location::Sqlite(db.clone()), config.sync)
            .with_context(|| format!("cannot open the database {}", db.display()))?;
        let closed = store.close_open_rooms(now_millis())?;
        let snapshot = store.load()?;
        if closed > 0 && config.log_level >= Level::Info {
            log::emit(
                Level::Info,
                &format!("closed {closed} rooms left open by the last run"),
            );
        }
        let listener = TcpListener::bind(addr).map_err(|e| bind_error(addr, &e))?;
        if config.log_level >= Level::Info {
            // After the bind, so that a bad address stays a one-line error.
            // Read back from the database: the operator sees the durability
            // in force, not merely the one asked for.
            log::emit(Level::Info, &format!("store: {}", store.describe()?));
        }
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let poll = mio::Poll::new()?;
        let waker = net::waker(&poll)?;
        Ok(Server {
            addr,
            fingerprint: key.fingerprint(),
            listener,
            key,
            store,
            snapshot,
            config,
            poll,
            waker,
            stop: Arc::new(AtomicBool::new(false)),
            _lock: lock,
            signals: None,
        })
    }

    fn run(self) -> io::Result<()> {
        let users = self.snapshot.users.len();
        let hub = Hub::new(self.snapshot, self.config.limits.clone());
        let (tx, inputs) = std::sync::mpsc::channel();
        let reply = workers::Reply {
            tx,
            waker: self.waker.clone(),
        };
        let workers = workers::Workers::start(
            self.store,
            self.config.hash_cost,
            self.config.hashers,
            reply,
        );
        if self.config.log_level >= Level::Info {
            log::emit(
                Level::Info,
                &format!(
                    "listening on {} ({users} accounts, key {}, data in {})",
                    self.addr,
                    self.fingerprint,
                    self.config.data_dir.display()
                ),
            );
        }
        net::run(net::Parts {
            listener: mio::net::TcpListener::from_std(self.listener),
            poll: self.poll,
            key: self.key,
            hub,
            workers,
            inputs,
            stop: self.stop,
            log_level: self.config.log_level,
            signals: self.signals,
            limits: self.config.net_limits,
        })
    }
}

fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn bind_error(addr: SocketAddr, e: &io::Error) -> anyhow::Error {
    let hint = match e.kind() {
        io::ErrorKind::AddrInUse => {
            ": another program (another chatapp serve?) uses that port; choose another with --listen"
        }
        io::ErrorKind::PermissionDenied => {
            ": ports below 1024 need privileges; choose a higher port with --listen"
        }
        io::ErrorKind::AddrNotAvailable => {
            ": this machine has no such address; try 127.0.0.1 or 0.0.0.0"
        }
        _ => "",
    };
    anyhow::anyhow!("cannot listen on {addr}: {e}{hint}")
}

fn prepare_dir(dir: &Path) -> anyhow::Result<()> {
    fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the data directory {}", dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        // Best effort: the directory holds the server's private key.
        let _ = fs::set_permissions(dir, fs::Permissions::from_mode(0o700));
    }
    Ok(())
}

fn lock_dir(dir: &Path) -> anyhow::Result<File> {
    let path = dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open the lock file {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(fs::TryLockError::WouldBlock) => bail!(
            "another chatapp server is already using the data directory {} (it holds {}): stop it, or give this one another --data-dir",
            dir.display(),
            path.display()
        ),
        Err(fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("cannot lock {}", path.display()))
        }
    }
}

fn load_or_create_key(dir: &Path) -> anyhow::Result<StaticKey> {
    let path = dir.join(KEY_FILE);
    match File::open(&path) {
        Ok(mut f) => {
            let mut bytes = Vec::new();
            f.read_to_end(&mut bytes)
                .with_context(|| format!("cannot read the server key {}", path.display()))?;
            StaticKey::from_bytes(&bytes).with_context(|| {
                format!(
                    "the server key {} is damaged ({} bytes, expected 64): restore it from a backup, or delete it to make a new key (clients will then refuse this server until their users accept the new key)",
                    path.display(),
                    bytes.len()
                )
            })
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let key = StaticKey::generate();
            let mut options = OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut f = options
                .open(&path)
                .with_context(|| format!("cannot create the server key {}", path.display()))?;
            f.write_all(&key.to_bytes())?;
            f.sync_all()?;
            Ok(key)
        }
        Err(e) => Err(e).with_context(|| format!("cannot open the server key {}", path.display())),
    }
}
