//! The architecture invariants of `docs/ARCHITECTURE.md` that can be read
//! off the source, checked: which module may name which crate or which
//! other module. Each rule is data (what may not be written, and where it
//! may), so a new invariant is one more line, and a broken one names the
//! file and line that broke it.

use std::path::{Path, PathBuf};

/// A piece of source text that only some files may contain.
struct Rule {
    /// What the invariant says, as ARCHITECTURE.md words it.
    says: &'static str,
    /// Any of these in a line of code breaks the rule...
    needles: &'static [&'static str],
    /// ...unless the file's path (relative to `src/`) starts with one of these.
    allowed: &'static [&'static str],
}

const RULES: &[Rule] = &[
    Rule {
        says: "only src/wire derives serde",
        needles: &["Serialize", "Deserialize", "serde::"],
        allowed: &["wire/"],
    },
    Rule {
        says: "only src/store/sqlite knows SQLite",
        needles: &["rusqlite", "libsqlite3_sys"],
        allowed: &["store/sqlite/"],
    },
    Rule {
        says: "only src/store/postgres knows PostgreSQL",
        needles: &["postgres::", "use postgres", "tokio"],
        // store/mod.rs picks the backend, by naming its module.
        allowed: &["store/postgres/", "store/mod.rs"],
    },
    Rule {
        says: "only src/server/bus.rs knows Redis",
        needles: &["redis::", "use redis"],
        allowed: &["server/bus.rs"],
    },
    Rule {
        says: "only src/server/net.rs works with mio's networking (server/mod.rs hands it the listener)",
        needles: &["mio::net", "TcpStream", ".poll(&mut"],
        // The client is blocking std networking, apart from the server.
        allowed: &["server/net.rs", "server/mod.rs", "client/"],
    },
    Rule {
        says: "only the client's ui.rs calls dialoguer, console and crossterm",
        needles: &["dialoguer", "console::", "crossterm"],
        allowed: &["client/ui.rs"],
    },
    Rule {
        says: "the hub never touches a socket, the clock, a thread, the OS's randomness or the store's backend",
        needles: &[
            "std::net",
            "make_rng",
            "rand::rng(",
            "rand::fill(",
            "SysRng",
            "OsRng",
            "ThreadRng",
            "thread_rng",
            "mio",
            "Instant::now",
            "SystemTime",
            "std::thread",
            "std::fs",
            "store::sqlite",
            "store::postgres",
            "rusqlite",
        ],
        allowed: &[
            // Everything but the hub: this rule is read the other way below.
        ],
    },
    Rule {
        says: "the hub does not know the directory or the event loop exists",
        needles: &["directory::", "net::", "workers::"],
        // The hub's tests and their harness play the event loop, directory
        // included.
        allowed: &["server/hub/tests/", "server/hub/harness.rs"],
    },
];

/// Rules that apply only inside one folder: (folder, the start of the
/// rule's `says`).
const INSIDE_ONLY: &[(&str, &str)] = &[
    ("server/hub/", "the hub never touches"),
    ("server/hub/", "the hub does not know"),
];

/// The rule whose `says` starts with `start`: rules are named by what they
/// say, so that adding one moves no other.
fn rule(start: &str) -> &'static Rule {
    let mut found = RULES.iter().filter(|rule| rule.says.starts_with(start));
    match (found.next(), found.next()) {
        (Some(rule), None) => rule,
        _ => panic!("not exactly one rule says {start:?}..."),
    }
}

/// The hub's parts import `effects` and nothing else of the hub.
const HUB_PARTS: &[&str] = &[
    "connections.rs",
    "accounts.rs",
    "rooms.rs",
    "private.rs",
    "commits.rs",
    "devices.rs",
];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            out.push(path);
        }
    }
}

/// Each line of code of each file under `src/`, without comments, with the
/// file's path relative to `src/`. Test modules count: an invariant holds
/// for the tests beside the code too, except where a rule allows them.
fn code_lines() -> Vec<(String, usize, String)> {
    let root = src();
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    assert!(
        files.len() > 20,
        "found only {} files under src/",
        files.len()
    );
    let mut lines = Vec::new();
    for file in files {
        let rel = file
            .strip_prefix(&root)
            .expect("under src/")
            .to_string_lossy()
            .replace('\\', "/");
        let text = std::fs::read_to_string(&file)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()));
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("").trim();
            if !code.is_empty() {
                lines.push((rel.clone(), n + 1, code.to_string()));
            }
        }
    }
    lines
}

fn breaches(
    lines: &[(String, usize, String)],
    rule: &Rule,
    applies: impl Fn(&str) -> bool,
) -> Vec<String> {
    lines
        .iter()
        .filter(|(path, _, _)| applies(path))
        .filter(|(path, _, _)| !rule.allowed.iter().any(|prefix| path.starts_with(prefix)))
        .filter(|(_, _, code)| rule.needles.iter().any(|needle| code.contains(needle)))
        .map(|(path, n, code)| format!("src/{path}:{n}: {code}"))
        .collect()
}

#[test]
fn modules_import_only_what_the_architecture_allows() {
    let lines = code_lines();
    let mut broken = Vec::new();
    for rule in RULES {
        let inside: Vec<&str> = INSIDE_ONLY
            .iter()
            .filter(|(_, says)| std::ptr::eq(self::rule(says), rule))
            .map(|(folder, _)| *folder)
            .collect();
        let found = if inside.is_empty() {
            breaches(&lines, rule, |_| true)
        } else {
            breaches(&lines, rule, |path| {
                inside.iter().any(|folder| path.starts_with(folder))
            })
        };
        if !found.is_empty() {
            broken.push(format!("{}:\n  {}", rule.says, found.join("\n  ")));
        }
    }
    assert!(
        broken.is_empty(),
        "architecture invariants broken:\n{}",
        broken.join("\n")
    );
}

#[test]
fn the_hubs_parts_import_effects_and_nothing_else_of_the_hub() {
    let lines = code_lines();
    let mut broken = Vec::new();
    for part in HUB_PARTS {
        let path = format!("server/hub/{part}");
        let mine: Vec<_> = lines.iter().filter(|(p, _, _)| *p == path).collect();
        assert!(
            !mine.is_empty(),
            "src/{path} is gone: update HUB_PARTS and ARCHITECTURE.md"
        );
        let mut in_tests = false;
        for (_, n, code) in mine {
            in_tests |= code.starts_with("#[cfg(test)]");
            let reaches = code.contains("super::") && !code.contains("super::effects");
            let names_hub = code.contains("hub::") && !code.contains("hub::effects");
            if !in_tests && (reaches || names_hub) {
                broken.push(format!("src/{path}:{n}: {code}"));
            }
        }
    }
    assert!(
        broken.is_empty(),
        "a part of the hub reaches past `effects`:\n  {}",
        broken.join("\n  ")
    );
}

/// The checks above can fail: each rule finds the line it forbids when
/// that line is written where it may not be.
#[test]
fn each_rule_catches_what_it_forbids() {
    let planted = |path: &str, code: &str| vec![(path.to_string(), 1, code.to_string())];
    let cases = [
        ("only src/wire", "store/mod.rs", "#[derive(Serialize)]"),
        (
            "only src/store/sqlite",
            "server/workers.rs",
            "use rusqlite::Connection;",
        ),
        (
            "only src/store/postgres",
            "server/workers.rs",
            "use postgres::Client;",
        ),
        (
            "only src/server/bus.rs",
            "server/net.rs",
            "let client = redis::Client::open(url)?;",
        ),
        (
            "only src/server/net.rs",
            "server/hub/rooms.rs",
            "use mio::net::TcpStream;",
        ),
        (
            "only the client's ui.rs",
            "client/core.rs",
            "use dialoguer::Select;",
        ),
        (
            "the hub never touches",
            "server/hub/rooms.rs",
            "let now = Instant::now();",
        ),
        (
            "the hub never touches",
            "server/hub/devices.rs",
            "let rng: StdRng = rand::make_rng();",
        ),
        (
            "the hub does not know",
            "server/hub/mod.rs",
            "use crate::server::directory::Directory;",
        ),
    ];
    for (says, path, code) in cases {
        let rule = rule(says);
        let found = breaches(&planted(path, code), rule, |_| true);
        assert_eq!(
            found.len(),
            1,
            "rule {:?} misses {code} in {path}",
            rule.says
        );
    }
    let allowed = breaches(
        &planted("wire/msg.rs", "#[derive(Serialize)]"),
        rule("only src/wire"),
        |_| true,
    );
    assert!(allowed.is_empty(), "src/wire may derive serde");
    let allowed = breaches(
        &planted("server/bus.rs", "use redis::Client;"),
        rule("only src/server/bus.rs"),
        |_| true,
    );
    assert!(allowed.is_empty(), "src/server/bus.rs may name redis");
}
