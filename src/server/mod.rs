//! `chatapp serve`: the data directory (database, server key, lock file),
//! the listening socket, and the threads around the event loop.
//!
//! [`start`] runs a server on a thread of this process and returns a
//! [`Handle`]: the integration tests bind `127.0.0.1:0` through it and
//! speak the real protocol to it. [`serve`] is the same server for the
//! command line, stopped by SIGINT or SIGTERM.

pub mod args;
pub mod bus;
pub mod cluster;
pub mod directory;
mod error;
pub mod hub;
pub mod limits;
pub mod log;
pub mod net;
mod proxy;
pub mod turns;
pub mod workers;

use crate::store::password::HashCost;
use crate::store::{self, Snapshot, Store};
use crate::wire::noise::StaticKey;
use hub::{Hub, Level};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{SystemTime, UNIX_EPOCH};

pub const DATABASE_FILE: &str = "chatapp.db";
pub const KEY_FILE: &str = "server.key";
pub const LOCK_FILE: &str = "chatapp.lock";
pub use error::Error;
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
    /// A PostgreSQL database to keep the chat in, by URL, instead of the
    /// SQLite file in `data_dir` (which still holds the key and the lock).
    pub database: Option<String>,
    /// A Redis URL: this server shares `database` with other servers,
    /// and hears what they commit (and tells them what it commits) there.
    pub bus: Option<String>,
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
            database: None,
            bus: None,
        }
    }
}

/// The platform's data directory for chatapp.
pub fn default_data_dir() -> Result<PathBuf, Error> {
    directories::ProjectDirs::from("", "", "chatapp")
        .map(|d| d.data_dir().to_path_buf())
        .ok_or(Error::NoDataDir)
}

/// The fingerprint of the server key in `data_dir`, creating the key if
/// there is none yet (so the operator can publish it before the first start).
pub fn fingerprint(data_dir: &Path) -> Result<String, Error> {
    prepare_dir(data_dir)?;
    Ok(load_or_create_key(data_dir)?.fingerprint())
}

/// Parses a listen address, saying plainly what is wrong with a bad one.
pub fn parse_listen(listen: &str) -> Result<SocketAddr, Error> {
    if let Ok(addr) = listen.parse() {
        return Ok(addr);
    }
    if let Some((_, port)) = listen.rsplit_once(':')
        && port.parse::<u64>().is_ok_and(|p| p > 65535)
    {
        return Err(Error::PortOutOfRange {
            listen: listen.to_string(),
            port: port.to_string(),
        });
    }
    Err(Error::BadListen {
        listen: listen.to_string(),
    })
}

/// Runs the server in the foreground until SIGINT or SIGTERM.
pub fn serve(listen: &str, config: Config) -> Result<(), Error> {
    let addr = parse_listen(listen)?;
    let mut server = Server::open(addr, config)?;
    // Before the address is announced: a SIGTERM that follows the
    // announcement at once must still be a clean stop.
    server.signals = Some(
        net::Signals::register(&server.poll)
            .map_err(Error::io("cannot listen for SIGINT and SIGTERM"))?,
    );
    println!(
        "chatapp listening on {} with key {}",
        server.addr, server.fingerprint
    );
    let _ = io::stdout().flush();
    server.run().map_err(Error::io("the event loop failed"))
}

/// Starts a server on a thread of this process (for tests and embedding).
pub fn start(addr: SocketAddr, config: Config) -> Result<Handle, Error> {
    let server = Server::open(addr, config)?;
    let addr = server.addr;
    let fingerprint = server.fingerprint.clone();
    let stop = server.stop.clone();
    let waker = server.waker.clone();
    let hashed = server.hashed.clone();
    let thread = std::thread::Builder::new()
        .name("chatapp-server".into())
        .spawn(move || server.run())
        .map_err(Error::io("cannot start the server's thread"))?;
    Ok(Handle {
        addr,
        fingerprint,
        stop,
        waker,
        hashed,
        thread: Some(thread),
    })
}

/// A server running on a thread of this process.
pub struct Handle {
    pub addr: SocketAddr,
    pub fingerprint: String,
    stop: Arc<AtomicBool>,
    waker: Arc<mio::Waker>,
    hashed: Arc<AtomicU64>,
    thread: Option<JoinHandle<io::Result<()>>>,
}

impl Handle {
    /// Password jobs (hashes and checks) the scrypt threads have done so
    /// far: a `register` or `login` costs one, a `resume` none.
    pub fn password_jobs(&self) -> u64 {
        self.hashed.load(Ordering::SeqCst)
    }

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
    open_rooms: Vec<store::OpenRoom>,
    config: Config,
    poll: mio::Poll,
    waker: Arc<mio::Waker>,
    stop: Arc<AtomicBool>,
    /// Password jobs done by the scrypt threads.
    hashed: Arc<AtomicU64>,
    /// SIGINT and SIGTERM, for a server that is the process's own.
    signals: Option<net::Signals>,
    /// Held for the server's life: the OS releases it if the process dies.
    _lock: File,
    /// The ids this server gives new rows.
    ids: crate::model::IdSpace,
    /// The bus to the other servers sharing the database, if any.
    cluster: Option<cluster::Cluster>,
}

impl Server {
    fn open(addr: SocketAddr, config: Config) -> Result<Server, Error> {
        let dir = &config.data_dir;
        prepare_dir(dir)?;
        let lock = lock_dir(dir)?;
        let key = load_or_create_key(dir)?;
        let location = match &config.database {
            Some(url) => store::Location::Postgres(url.clone()),
            None => store::Location::Sqlite(dir.join(DATABASE_FILE)),
        };
        let opened = match (&config.bus, &location) {
            (None, _) => store::open(&location, config.sync),
            (Some(_), store::Location::Postgres(url)) => store::open_shared(url),
            (Some(_), store::Location::Sqlite(_)) => return Err(Error::BusWithoutDatabase),
        };
        let mut store = opened.map_err(|source| Error::Database {
            database: location.display_name(),
            source,
        })?;
        let setup = "cannot set up the event loop";
        let poll = mio::Poll::new().map_err(Error::io(setup))?;
        let waker = net::waker(&poll).map_err(Error::io(setup))?;
        // Subscribed before the snapshot is read: what other servers
        // commit from then on comes over the bus (and what the snapshot
        // holds already is recognised and skipped), so nothing falls
        // between the two.
        let cluster = match &config.bus {
            Some(url) => {
                let channels = vec![cluster::CHANNEL.to_string()];
                let bus = bus::Bus::start(url, channels, waker.clone()).map_err(Error::Bus)?;
                let mut cluster = cluster::Cluster::new(bus, store.id_space().slot);
                cluster.wait_subscribed(std::time::Instant::now());
                Some(cluster)
            }
            None => None,
        };
        let snapshot = store.load()?;
        let open_rooms = store.open_rooms(crate::model::ROOM_HISTORY)?;
        if !open_rooms.is_empty() && config.log_level >= Level::Info {
            let grace = config.limits.grace / 1000;
            let line = match cluster {
                None => format!(
                    "reopened {} rooms left open by the last run; each waits {grace} s for its admin",
                    open_rooms.len(),
                ),
                Some(_) => format!(
                    "{} rooms open in the shared database; {} places in them that this id \
                     slot's last server had wait {grace} s for their members",
                    open_rooms.len(),
                    open_rooms.iter().map(|r| r.held.len()).sum::<usize>(),
                ),
            };
            log::emit(Level::Info, &line);
        }
        let listener = TcpListener::bind(addr).map_err(|source| Error::Bind { addr, source })?;
        if config.log_level >= Level::Info {
            // After the bind, so that a bad address stays a one-line error.
            // Read back from the database: the operator sees the durability
            // in force, not merely the one asked for.
            log::emit(Level::Info, &format!("store: {}", store.describe()?));
        }
        listener.set_nonblocking(true).map_err(Error::io(setup))?;
        let addr = listener.local_addr().map_err(Error::io(setup))?;
        Ok(Server {
            addr,
            fingerprint: key.fingerprint(),
            listener,
            key,
            ids: store.id_space(),
            store,
            snapshot,
            open_rooms,
            config,
            poll,
            waker,
            cluster,
            stop: Arc::new(AtomicBool::new(false)),
            hashed: Arc::new(AtomicU64::new(0)),
            _lock: lock,
            signals: None,
        })
    }

    fn run(self) -> io::Result<()> {
        let users = self.snapshot.users.len();
        let devices = self.snapshot.devices.len();
        // The resume tokens' randomness: a CSPRNG seeded from the OS.
        let rng: rand::rngs::StdRng = rand::make_rng();
        let mut hub = Hub::new(self.snapshot, self.config.limits.clone(), rng);
        hub.use_ids(self.ids);
        hub.reopen(now_millis(), self.open_rooms);
        // What this server commits, every other server sharing the
        // database hears.
        let publish = (self.cluster.as_ref())
            .and_then(|c| Some((c.bus.outbox()?, c.node)))
            .map(|(outbox, node)| -> workers::Publish {
                Box::new(move |writes| {
                    outbox.publish(cluster::CHANNEL, cluster::encode(node, writes))
                })
            });
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
            self.hashed,
            publish,
        );
        if self.config.log_level >= Level::Info {
            log::emit(
                Level::Info,
                &format!(
                    "listening on {} ({users} accounts, {devices} saved logins, key {}, data in {})",
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
            cluster: self.cluster,
        })
    }
}

fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn prepare_dir(dir: &Path) -> Result<(), Error> {
    fs::create_dir_all(dir).map_err(Error::file("create the data directory", dir))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        // Best effort: the directory holds the server's private key.
        let _ = fs::set_permissions(dir, fs::Permissions::from_mode(0o700));
    }
    Ok(())
}

fn lock_dir(dir: &Path) -> Result<File, Error> {
    let path = dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(Error::file("open the lock file", &path))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(fs::TryLockError::WouldBlock) => Err(Error::Locked {
            dir: dir.to_path_buf(),
            lock: path,
        }),
        Err(fs::TryLockError::Error(e)) => Err(Error::file("lock", &path)(e)),
    }
}

fn load_or_create_key(dir: &Path) -> Result<StaticKey, Error> {
    let path = dir.join(KEY_FILE);
    match File::open(&path) {
        Ok(mut f) => {
            let mut bytes = Vec::new();
            f.read_to_end(&mut bytes)
                .map_err(Error::file("read the server key", &path))?;
            StaticKey::from_bytes(&bytes).ok_or(Error::DamagedKey {
                path,
                len: bytes.len(),
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
                .map_err(Error::file("create the server key", &path))?;
            f.write_all(&key.to_bytes())
                .and_then(|()| f.sync_all())
                .map_err(Error::file("write the server key", &path))?;
            Ok(key)
        }
        Err(e) => Err(Error::file("open the server key", &path)(e)),
    }
}
