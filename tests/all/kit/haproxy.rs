//! A real HAProxy for one test, run from `packaging/haproxy.cfg`, the
//! example configuration the README points operators to: the test changes
//! only the addresses (its `bind` line, its `server` lines) and where the
//! stats socket lives, so what is tested is what is documented.
//!
//! The binary comes from PATH or /usr/sbin; without it the test fails and
//! says what to install. HAProxy runs in the foreground (`-db`) as a child
//! of the test, in a temporary directory, and is killed when dropped.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tempfile::TempDir;

const EXAMPLE: &str = include_str!("../../../packaging/haproxy.cfg");
/// The longest a start, or a node's change of state, may take: the example
/// checks every second and needs two in a row.
const DEADLINE: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(50);
const PORT_TRIES: usize = 5;
const NOT_INSTALLED: &str = "HAProxy is not installed: these tests start their own from its \
    binary. On Debian or Ubuntu: apt-get install haproxy";

pub struct Haproxy {
    child: Child,
    /// Where clients connect.
    pub addr: SocketAddr,
    dir: TempDir,
}

impl Haproxy {
    /// HAProxy on a free port of 127.0.0.1, balancing over `nodes` (named
    /// node1, node2, ... in its stats), each of them up.
    pub fn start(nodes: &[SocketAddr]) -> Haproxy {
        let binary = binary();
        for attempt in 1..=PORT_TRIES {
            let dir = tempfile::Builder::new()
                .prefix("chatapp-haproxy-")
                .tempdir()
                .expect("a temporary directory for HAProxy");
            let addr: SocketAddr = ([127, 0, 0, 1], super::free_port()).into();
            let config = dir.path().join("haproxy.cfg");
            std::fs::write(
                &config,
                configure(addr, nodes, &dir.path().join("admin.sock")),
            )
            .expect("write haproxy.cfg");
            let log = std::fs::File::create(dir.path().join("haproxy.log")).expect("a log file");
            let child = Command::new(&binary)
                .arg("-db")
                .arg("-f")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("the log file"))
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("start {}: {e}", binary.display()));
            let mut haproxy = Haproxy { child, addr, dir };
            let listening = super::wait_until(DEADLINE, POLL, || {
                haproxy.exited() || std::net::TcpStream::connect(addr).is_ok()
            });
            if listening && !haproxy.exited() {
                for n in 1..=nodes.len() {
                    haproxy.wait_for(n, "UP");
                }
                return haproxy;
            }
            let log = haproxy.log();
            if attempt == PORT_TRIES || !log.contains("cannot bind") {
                panic!("HAProxy did not start on {addr}:\n{log}");
            }
        }
        unreachable!("the loop returns or panics")
    }

    /// Waits until HAProxy sees node `n` (from 1) as `state` ("UP" or
    /// "DOWN"), as its health checks find it.
    pub fn wait_for(&mut self, n: usize, state: &str) {
        let mut last = String::new();
        let reached = super::wait_until(DEADLINE, POLL, || {
            last = self.state(n);
            last == state
        });
        assert!(
            reached,
            "HAProxy saw node{n} as {last:?}, not {state}, for {DEADLINE:?}; its log:\n{}",
            self.log()
        );
    }

    /// Node `n`'s status in HAProxy's stats ("UP", "DOWN", "UP 1/2", ...).
    pub fn state(&self, n: usize) -> String {
        let stats = self.ask("show stat");
        let name = format!("chatapp_nodes,node{n},");
        let row = stats
            .lines()
            .find(|row| row.starts_with(&name))
            .unwrap_or_else(|| panic!("no node{n} in HAProxy's stats:\n{stats}"));
        // The CSV's 18th column is `status`.
        row.split(',').nth(17).unwrap_or_default().to_string()
    }

    /// A command on the stats socket, and its answer.
    fn ask(&self, command: &str) -> String {
        let mut socket = UnixStream::connect(self.dir.path().join("admin.sock"))
            .unwrap_or_else(|e| panic!("HAProxy's stats socket: {e}; its log:\n{}", self.log()));
        socket
            .write_all(format!("{command}\n").as_bytes())
            .expect("a command to HAProxy");
        let mut answer = String::new();
        socket
            .read_to_string(&mut answer)
            .expect("HAProxy's answer");
        answer
    }

    fn exited(&mut self) -> bool {
        self.child.try_wait().ok().flatten().is_some()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("haproxy.log")).unwrap_or_default()
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The example configuration with the test's addresses: clients at `addr`,
/// the stats socket at `socket`, a `server` line a node.
fn configure(addr: SocketAddr, nodes: &[SocketAddr], socket: &std::path::Path) -> String {
    let mut out = String::new();
    for line in EXAMPLE.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["bind", ..] => out.push_str(&format!("    bind {addr}\n")),
            ["stats", "socket", _, rest @ ..] => out.push_str(&format!(
                "    stats socket {} {}\n",
                socket.display(),
                rest.join(" ")
            )),
            ["server", ..] => {}
            _ => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    for (i, node) in nodes.iter().enumerate() {
        out.push_str(&format!("    server node{} {node}\n", i + 1));
    }
    assert!(
        out.contains("backend chatapp_nodes")
            && out
                .trim_end()
                .ends_with(&format!("{}", nodes[nodes.len() - 1])),
        "packaging/haproxy.cfg must end with the backend's server lines:\n{out}"
    );
    out
}

fn binary() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin")])
        .map(|dir| dir.join("haproxy"))
        .find(|bin| bin.is_file())
        .unwrap_or_else(|| panic!("{NOT_INSTALLED}"))
}
