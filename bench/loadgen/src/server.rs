//! Starting and stopping the servers under test, each fresh, pinned to one
//! CPU, and preparing chatapp's accounts.
//!
//! Accounts are written through chatapp's own store and password hashing.
//! The process handling stays here rather than in the tests' harness for
//! the real binary: that harness is test code of the main crate, and these
//! servers (IRC ones too) run from an installed tree, pinned with
//! `taskset` and under another user, none of which a test needs.

use crate::probe::Probe;
use chatapp::model::UserId;
use chatapp::store::password::{self, HashCost};
use chatapp::store::{Location, Sync, Write};
use std::fs;
use std::io::{self, BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Every benchmark account's password.
pub const PASSWORD: &str = "loadgen bench password 1";
pub const CHATAPP_PORT: u16 = 17878;
/// Fixed by the peers' configuration files.
pub const NGIRCD_PORT: u16 = 16667;
pub const INSPIRCD_PORT: u16 = 16668;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Ngircd,
    Inspircd,
    Chatapp,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Ngircd => "ngircd",
            Kind::Inspircd => "InspIRCd",
            Kind::Chatapp => "chatapp",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        match s.to_ascii_lowercase().as_str() {
            "ngircd" => Some(Kind::Ngircd),
            "inspircd" => Some(Kind::Inspircd),
            "chatapp" => Some(Kind::Chatapp),
            _ => None,
        }
    }

    pub fn port(self) -> u16 {
        match self {
            Kind::Ngircd => NGIRCD_PORT,
            Kind::Inspircd => INSPIRCD_PORT,
            Kind::Chatapp => CHATAPP_PORT,
        }
    }

    pub fn addr(self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port()))
    }
}

/// Where things are.
#[derive(Debug, Clone)]
pub struct Paths {
    /// The chatapp binary (a release build).
    pub chatapp: PathBuf,
    /// Where the peers' Debian packages were unpacked.
    pub pkgroot: PathBuf,
    /// The peers' configuration templates (`ngircd.conf`, `inspircd.conf`).
    pub peers: PathBuf,
    /// Scratch space: data directories, run directories, logs.
    pub work: PathBuf,
}

/// How chatapp is started.
#[derive(Debug, Clone, Default)]
pub struct ChatOptions {
    /// `--scrypt-log-n`; `None` keeps the default cost.
    pub scrypt_log_n: Option<u8>,
    /// More arguments for `chatapp serve`.
    pub extra: Vec<String>,
    /// `CHATAPP_LOG`; `None`: warn.
    pub log: Option<String>,
}

/// Accounts to create in chatapp's database before it starts:
/// `{prefix}0` .. `{prefix}{count-1}`, all with the bench password hashed at
/// `log_n`.
#[derive(Debug, Clone)]
pub struct Accounts {
    pub prefix: String,
    pub count: usize,
    pub log_n: u8,
}

pub struct Running {
    pub kind: Kind,
    pub addr: SocketAddr,
    pub probe: Probe,
    child: Child,
}

fn log_file(work: &Path, name: &str) -> io::Result<fs::File> {
    fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(work.join(format!("{name}.log")))
}

fn pinned(cpu: Option<usize>, program: &Path) -> Command {
    match cpu {
        Some(cpu) => {
            let mut c = Command::new("taskset");
            c.arg("-c").arg(cpu.to_string()).arg(program);
            c
        }
        None => Command::new(program),
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// The PHC string of the bench password at a cost (cached: scrypt at the
/// default cost takes a good fraction of a second).
pub fn bench_hash(log_n: u8) -> String {
    use std::collections::HashMap;
    use std::sync::Mutex;
    static CACHE: Mutex<Option<HashMap<u8, String>>> = Mutex::new(None);
    let mut cache = CACHE.lock().expect("hash cache");
    cache
        .get_or_insert_with(HashMap::new)
        .entry(log_n)
        .or_insert_with(|| password::hash(PASSWORD, HashCost { log_n, r: 8, p: 1 }))
        .clone()
}

/// Creates a fresh data directory holding `accounts`.
pub fn seed(dir: &Path, accounts: &[Accounts], database: Option<&str>) -> anyhow::Result<()> {
    if dir.exists() {
        fs::remove_dir_all(dir)?;
    }
    fs::create_dir_all(dir)?;
    let location = match database {
        Some(url) => {
            empty_postgres(url)?;
            Location::Postgres(url.to_string())
        }
        None => Location::Sqlite(dir.join(chatapp::server::DATABASE_FILE)),
    };
    let mut store = chatapp::store::open(&location, Sync::Full)?;
    let mut writes = Vec::new();
    let mut id = 1;
    for group in accounts {
        let hash = bench_hash(group.log_n);
        for n in 0..group.count {
            writes.push(Write::User {
                id: UserId(id),
                name: format!("{}{n}", group.prefix),
                password_hash: hash.clone(),
                created: 0,
            });
            id += 1;
        }
    }
    store.apply(&writes)?;
    Ok(())
}

/// Drops every table of the database at `url` (its `public` schema), so
/// that each scenario starts on an empty store as it does on SQLite.
fn empty_postgres(url: &str) -> anyhow::Result<()> {
    let mut client = postgres::Client::connect(url, postgres::NoTls)
        .map_err(|e| anyhow::anyhow!("cannot reach the bench's PostgreSQL at {url}: {e}"))?;
    client.batch_execute("DROP SCHEMA IF EXISTS public CASCADE; CREATE SCHEMA public;")?;
    Ok(())
}

fn fill_template(template: &Path, rundir: &Path, pkgroot: &Path) -> anyhow::Result<PathBuf> {
    let text = fs::read_to_string(template)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", template.display()))?;
    let text = text
        .replace("@RUNDIR@", &rundir.display().to_string())
        .replace("@PKGROOT@", &pkgroot.display().to_string());
    let name = template.file_name().expect("a file name");
    let out = rundir.join(name);
    fs::write(&out, text)?;
    Ok(out)
}

fn fresh_rundir(work: &Path, name: &str) -> anyhow::Result<PathBuf> {
    let dir = work.join(name);
    if dir.exists() {
        fs::remove_dir_all(&dir)?;
    }
    fs::create_dir_all(dir.join("conf.d"))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        // The IRC servers drop to `nobody` and write pid and log files here.
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o777))?;
    }
    Ok(dir)
}

fn wait_for_port(addr: SocketAddr, child: &mut Child, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            anyhow::bail!("the server exited before listening: {status}");
        }
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            anyhow::bail!("nothing listens on {addr} after {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Starts a fresh server of `kind`, pinned to `cpu`. For chatapp, the data
/// directory `work/chatapp-data` must have been prepared by [`seed`].
pub fn start(
    kind: Kind,
    paths: &Paths,
    chat: &ChatOptions,
    cpu: Option<usize>,
) -> anyhow::Result<Running> {
    start_at(
        kind,
        paths,
        chat,
        cpu,
        kind.addr(),
        &paths.work.join("chatapp-data"),
    )
}

/// The servers of one scenario: one, or several chatapp servers sharing a
/// database and a bus behind a balancer.
pub struct Servers {
    /// Where clients connect: the server, or the balancer.
    pub addr: SocketAddr,
    pub nodes: Vec<Running>,
    balancer: Option<Child>,
}

impl Servers {
    pub fn alone(running: Running) -> Servers {
        Servers {
            addr: running.addr,
            nodes: vec![running],
            balancer: None,
        }
    }

    pub fn probes(&self) -> Vec<Probe> {
        self.nodes.iter().map(|n| n.probe).collect()
    }

    /// The balancer (killed: it keeps nothing), then every server.
    pub fn stop(self) {
        if let Some(mut b) = self.balancer {
            let _ = b.kill();
            let _ = b.wait();
        }
        for node in self.nodes {
            node.stop();
        }
    }
}

/// `n` chatapp servers on 127.0.0.1, ports after chatapp's own, each
/// pinned to `cpu` and given `chat.extra` (which must share a database
/// and a bus) and the balancer's address for the PROXY protocol, with the
/// first one's server key; then HAProxy, pinned to `cpu` too, run in the
/// foreground from `config`, which must bind chatapp's own address and
/// name those servers. The data directory `work/chatapp-data` must have
/// been prepared by [`seed`].
pub fn start_behind_balancer(
    paths: &Paths,
    chat: &ChatOptions,
    cpu: Option<usize>,
    n: usize,
    config: &Path,
) -> anyhow::Result<Servers> {
    let mut chat = chat.clone();
    chat.extra
        .extend(["--proxy-protocol".to_string(), "127.0.0.1".to_string()]);
    let first = paths.work.join("chatapp-data");
    let mut nodes = Vec::new();
    for k in 1..=n {
        let dir = if k == 1 {
            first.clone()
        } else {
            let dir = paths.work.join(format!("chatapp-data-{k}"));
            if dir.exists() {
                fs::remove_dir_all(&dir)?;
            }
            fs::create_dir_all(&dir)?;
            let key = chatapp::server::KEY_FILE;
            fs::copy(first.join(key), dir.join(key))?;
            dir
        };
        let addr = SocketAddr::from(([127, 0, 0, 1], CHATAPP_PORT + k as u16));
        nodes.push(start_at(Kind::Chatapp, paths, &chat, cpu, addr, &dir)?);
    }
    let addr = Kind::Chatapp.addr();
    let mut cmd = pinned(cpu, Path::new("haproxy"));
    cmd.arg("-db")
        .arg("-f")
        .arg(config)
        .stdin(Stdio::null())
        .stdout(log_file(&paths.work, "haproxy")?)
        .stderr(log_file(&paths.work, "haproxy")?);
    let mut child = cmd
        .spawn()
        .map_err(|e| anyhow::anyhow!("cannot start haproxy (apt-get install haproxy): {e}"))?;
    // The servers listen already, and HAProxy counts a server up until
    // its checks say otherwise: it is ready once it accepts.
    if let Err(e) = wait_for_port(addr, &mut child, Duration::from_secs(30)) {
        let _ = child.kill();
        let _ = child.wait();
        return Err(e.context("starting haproxy (see haproxy.log in the work directory)"));
    }
    Ok(Servers {
        addr,
        nodes,
        balancer: Some(child),
    })
}

fn start_at(
    kind: Kind,
    paths: &Paths,
    chat: &ChatOptions,
    cpu: Option<usize>,
    addr: SocketAddr,
    data: &Path,
) -> anyhow::Result<Running> {
    if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
        anyhow::bail!("something already listens on {addr}: stop it first");
    }
    let libs = paths.pkgroot.join("usr/lib/x86_64-linux-gnu");
    let mut child = match kind {
        Kind::Chatapp => {
            let mut cmd = pinned(cpu, &paths.chatapp);
            cmd.arg("serve")
                .arg("--listen")
                .arg(addr.to_string())
                .arg("--data-dir")
                .arg(data);
            if let Some(n) = chat.scrypt_log_n {
                cmd.arg("--scrypt-log-n").arg(n.to_string());
            }
            cmd.args(&chat.extra)
                .env("CHATAPP_LOG", chat.log.as_deref().unwrap_or("warn"))
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(log_file(&paths.work, "chatapp")?);
            cmd.spawn()?
        }
        Kind::Ngircd => {
            let run = fresh_rundir(&paths.work, "run-ngircd")?;
            let conf = fill_template(&paths.peers.join("ngircd.conf"), &run, &paths.pkgroot)?;
            let mut cmd = pinned(cpu, &paths.pkgroot.join("usr/sbin/ngircd"));
            cmd.arg("-n")
                .arg("-f")
                .arg(conf)
                .env("LD_LIBRARY_PATH", &libs)
                .stdin(Stdio::null())
                .stdout(log_file(&paths.work, "ngircd")?)
                .stderr(log_file(&paths.work, "ngircd")?);
            cmd.spawn()?
        }
        Kind::Inspircd => {
            let run = fresh_rundir(&paths.work, "run-inspircd")?;
            let conf = fill_template(&paths.peers.join("inspircd.conf"), &run, &paths.pkgroot)?;
            let program = paths.pkgroot.join("usr/sbin/inspircd");
            // InspIRCd refuses to run as root.
            let mut cmd = if is_root() {
                let mut c = Command::new("setpriv");
                c.args(["--reuid=65534", "--regid=65534", "--clear-groups"]);
                if let Some(cpu) = cpu {
                    c.arg("taskset").arg("-c").arg(cpu.to_string());
                }
                c.arg(program);
                c
            } else {
                pinned(cpu, &program)
            };
            cmd.arg("--config")
                .arg(conf)
                .arg("--nofork")
                .env("LD_LIBRARY_PATH", &libs)
                .stdin(Stdio::null())
                .stdout(log_file(&paths.work, "inspircd")?)
                .stderr(log_file(&paths.work, "inspircd")?);
            cmd.spawn()?
        }
    };
    let probe = Probe { pid: child.id() };
    let ready = match kind {
        Kind::Chatapp => wait_for_announcement(&mut child, Duration::from_secs(60)),
        _ => wait_for_port(addr, &mut child, Duration::from_secs(30)),
    };
    let mut running = Running {
        kind,
        addr,
        probe,
        child,
    };
    if let Err(e) = ready {
        running.kill();
        return Err(e.context(format!("starting {}", kind.name())));
    }
    Ok(running)
}

/// Waits for `chatapp listening on ...` on the server's stdout.
fn wait_for_announcement(child: &mut Child, timeout: Duration) -> anyhow::Result<()> {
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        if let Some(Ok(line)) = lines.next() {
            let _ = tx.send(line);
        }
        // Keep reading so the server never blocks on a full pipe.
        for _ in lines {}
    });
    match rx.recv_timeout(timeout) {
        Ok(line) if line.starts_with("chatapp listening on") => Ok(()),
        Ok(line) => anyhow::bail!("unexpected first line from chatapp: {line}"),
        Err(_) => {
            if let Some(status) = child.try_wait()? {
                anyhow::bail!("chatapp exited: {status} (see chatapp.log in the work directory)");
            }
            anyhow::bail!("chatapp did not announce itself in {timeout:?}")
        }
    }
}

impl Running {
    /// SIGTERM, then SIGKILL if it has not exited in 10 s.
    pub fn stop(mut self) {
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: signalling our own child by its id.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.kill();
    }

    /// SIGKILL, as a crash: no chance to save or say anything.
    pub fn crash(mut self) {
        self.kill();
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.kill();
        }
    }
}
