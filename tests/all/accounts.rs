//! Accounts: unique names, the password standard, indistinguishable login
//! failures, and what the database keeps of a password.

use crate::kit::{self, PASSWORD, TestServer, open_db};
use chatapp::wire::msg::{ErrorCode, Reply, Request};
use std::path::Path;

pub(crate) fn register(name: &str, password: &str) -> Request {
    Request::Register {
        name: name.to_string(),
        password: password.to_string(),
    }
}

pub(crate) fn login(name: &str, password: &str) -> Request {
    Request::Login {
        name: name.to_string(),
        password: password.to_string(),
    }
}

#[test]
fn a_taken_name_is_refused_whatever_its_case() {
    let server = TestServer::start();
    server.register("Alice");
    let mut other = server.anonymous("someone");
    for name in ["Alice", "alice", "ALICE", "aLiCe"] {
        let message = other.refused(register(name, PASSWORD), ErrorCode::NameTaken);
        assert_eq!(message, "that name is taken", "registering {name}");
    }
    // Still anonymous and free to pick another name.
    other.name = "alice2".into();
    other.register();
}

#[test]
fn weak_passwords_are_refused_with_the_reason() {
    let server = TestServer::start();
    let mut client = server.anonymous("dave42");
    let cases = [
        ("short pw", "too short"),
        ("Q1w2e3r4t5y6", "commonly used"),
        ("1qaz2wsx3edc", "commonly used"),
        ("my name is dave42 ok", "contains your user name"),
        ("xx-DAVE42-yy-zz", "contains your user name"),
        // Checked after NFKC: fullwidth letters are the name all the same.
        ("ｄａｖｅ４２ rides again", "contains your user name"),
        (&"long enough? ".repeat(20), "too long"),
    ];
    for (password, reason) in &cases {
        let message = client.refused(register("dave42", password), ErrorCode::WeakPassword);
        assert!(
            message.contains(reason),
            "{password:?}: expected the reason {reason:?}, got {message:?}"
        );
    }
    // None of them made an account: a good password still can.
    client.register();
}

#[test]
fn malformed_names_are_refused() {
    let server = TestServer::start();
    let mut client = server.anonymous("someone");
    let too_long = "x".repeat(33);
    for name in ["ab", "bad name", "bøb", "semi;colon", "", too_long.as_str()] {
        client.refused(register(name, PASSWORD), ErrorCode::InvalidName);
    }
    // The edges of what is allowed.
    for name in ["abc", "a.b-c_9", &"y".repeat(32)] {
        let mut ok = server.anonymous(name);
        ok.register();
    }
}

#[test]
fn two_registrations_of_one_name_at_once_make_one_account() {
    let server = TestServer::start();
    let results: Vec<Reply> = std::thread::scope(|s| {
        let racers: Vec<_> = ["Grace", "GRACE", "grace"]
            .into_iter()
            .map(|name| {
                let mut client = server.anonymous(name);
                s.spawn(move || client.request(register(name, PASSWORD)))
            })
            .collect();
        racers.into_iter().map(|r| r.join().unwrap()).collect()
    });
    let won = results
        .iter()
        .filter(|r| matches!(r, Reply::LoggedIn { .. }))
        .count();
    let lost = results
        .iter()
        .filter(|r| {
            matches!(
                r,
                Reply::Error {
                    code: ErrorCode::NameTaken,
                    ..
                }
            )
        })
        .count();
    assert_eq!((won, lost), (1, 2), "{results:?}");
}

#[test]
fn a_password_is_compared_in_its_nfkc_form() {
    let server = TestServer::start();
    let mut first = server.anonymous("hana");
    // Fullwidth digits and a ligature, as some keyboards type them.
    let typed = "ﬁne ＰＡＳＳ phrase ２０２４";
    assert!(matches!(
        first.request(register("hana", typed)),
        Reply::LoggedIn { .. }
    ));
    drop(first);
    let mut again = server.anonymous("hana");
    assert!(
        matches!(
            again.request(login("hana", "fine PASS phrase 2024")),
            Reply::LoggedIn { .. }
        ),
        "the NFKC form of the password logs in"
    );
}

#[test]
fn wrong_password_and_unknown_user_get_the_same_reply() {
    let server = TestServer::start();
    server.register("erin");
    let mut client = server.anonymous("guesser");
    let wrong_password = client.request(login("erin", "not the password at all"));
    let unknown_user = client.request(login("nobody-here", PASSWORD));
    match &wrong_password {
        Reply::Error { code, .. } => assert_eq!(*code, ErrorCode::BadCredentials),
        other => panic!("a wrong password logged in: {other:?}"),
    }
    assert_eq!(wrong_password, unknown_user, "both failures look the same");
    // The right password still works on the same connection.
    client.name = "erin".into();
    assert_eq!(client.login(), 0);
}

#[test]
fn only_a_scrypt_hash_of_the_password_is_stored() {
    // Distinctive, so that finding it in a file cannot be a coincidence.
    const SECRET: &str = "zebra quartz lantern 5519";
    let mut server = TestServer::start();
    let mut client = server.anonymous("frank");
    assert_eq!(
        kit::tokenless(client.request(register("frank", SECRET))),
        kit::logged_in("frank", 0)
    );
    drop(client);
    // While the server runs, the write-ahead log holds the newest pages.
    assert_nowhere_in(server.data_dir(), SECRET);
    server.stop();
    assert_nowhere_in(server.data_dir(), SECRET);

    let hash: String = open_db(&server.db_path())
        .query_row(
            "SELECT password_hash FROM users WHERE name = 'frank'",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert!(hash.starts_with("$scrypt$"), "a PHC string: {hash}");
    assert!(
        hash.contains("ln=4,r=8,p=1"),
        "with the configured cost: {hash}"
    );
}

/// No file of the data directory (chatapp.db, its -wal and -shm, the key)
/// holds `secret`.
fn assert_nowhere_in(dir: &Path, secret: &str) {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "the password is in {}",
            path.display()
        );
        names.push(path.file_name().unwrap().to_string_lossy().into_owned());
    }
    assert!(
        names.iter().any(|n| n == chatapp::server::DATABASE_FILE),
        "the database was searched: {names:?}"
    );
}
