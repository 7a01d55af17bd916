//! Passwords over the real server: one password in its composed (NFC) and
//! decomposed (NFD) spellings logs in either way, a long password is
//! compared whole (never cut short), and the same password on two accounts
//! is stored as two different salted hashes.

use crate::accounts::{login, register};
use crate::kit::{self, TestServer, open_db, tokenless};
use chatapp::wire::msg::{ErrorCode, Reply};

fn logged_in(name: &str) -> Reply {
    kit::logged_in(name, 0)
}

/// "café crème brûlée 2026" with each accented letter one code point (NFC).
const COMPOSED: &str = "caf\u{e9} cr\u{e8}me br\u{fb}l\u{e9}e 2026";
/// The same text with each accent a combining mark after its letter (NFD),
/// as macOS file names and some input methods spell it.
const DECOMPOSED: &str = "cafe\u{301} cre\u{300}me bru\u{302}le\u{301}e 2026";

#[test]
fn composed_and_decomposed_spellings_of_a_password_both_log_in() {
    assert_ne!(
        COMPOSED.as_bytes(),
        DECOMPOSED.as_bytes(),
        "two different byte strings"
    );
    let server = TestServer::start();
    // Registered composed, logged in decomposed; and the other way round.
    for (name, registered, typed) in [
        ("nora", COMPOSED, DECOMPOSED),
        ("dora", DECOMPOSED, COMPOSED),
    ] {
        let mut first = server.anonymous(name);
        assert_eq!(
            tokenless(first.request(register(name, registered))),
            logged_in(name)
        );
        drop(first);
        for password in [typed, registered] {
            let mut again = server.anonymous(name);
            assert_eq!(
                tokenless(again.request(login(name, password))),
                logged_in(name),
                "{name} registered with {registered:?} logs in with {password:?}"
            );
        }
    }
}

/// 199 characters of a passphrase, then `last`: 200 characters in all.
fn long_password(last: char) -> String {
    let body: String = "glacier orchid tambourine 42 "
        .chars()
        .cycle()
        .take(199)
        .collect();
    let password = format!("{body}{last}");
    assert_eq!(password.chars().count(), 200);
    password
}

#[test]
fn a_long_password_is_compared_to_its_last_character() {
    let (right, wrong) = (long_password('x'), long_password('y'));
    let server = TestServer::start();
    let mut client = server.anonymous("lena");
    assert_eq!(
        tokenless(client.request(register("lena", &right))),
        logged_in("lena")
    );
    drop(client);

    let mut guesser = server.anonymous("guesser");
    match guesser.request(login("lena", &wrong)) {
        Reply::Error { code, message } => {
            assert_eq!(code, ErrorCode::BadCredentials, "{message}");
        }
        other => panic!("a password differing in its 200th character logged in: {other:?}"),
    }
    let mut again = server.anonymous("lena");
    assert_eq!(
        tokenless(again.request(login("lena", &right))),
        logged_in("lena")
    );

    // And the other way round: registered with the second one, the first
    // does not open it.
    let mut client = server.anonymous("mira");
    assert_eq!(
        tokenless(client.request(register("mira", &wrong))),
        logged_in("mira")
    );
    drop(client);
    let mut guesser = server.anonymous("guesser");
    assert!(
        matches!(
            guesser.request(login("mira", &right)),
            Reply::Error {
                code: ErrorCode::BadCredentials,
                ..
            }
        ),
        "mira's account opened with a password that differs in its last character"
    );
}

#[test]
fn one_password_on_two_accounts_is_stored_as_two_hashes() {
    const SHARED: &str = "meadow copper violin 3141";
    let mut server = TestServer::start();
    for name in ["olga", "pavel"] {
        let mut client = server.anonymous(name);
        assert_eq!(
            tokenless(client.request(register(name, SHARED))),
            logged_in(name)
        );
    }
    // Stopping commits everything and leaves the file to us alone.
    server.stop();

    let db = open_db(&server.db_path());
    let mut query = db
        .prepare("SELECT name, password_hash FROM users ORDER BY name")
        .unwrap();
    let rows: Vec<(String, String)> = query
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let names: Vec<&str> = rows.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names, ["olga", "pavel"]);
    let (olga, pavel) = (&rows[0].1, &rows[1].1);
    for hash in [olga, pavel] {
        assert!(hash.starts_with("$scrypt$"), "a PHC string: {hash}");
        assert!(
            chatapp::store::password::verify(SHARED, hash),
            "{hash} is a hash of the shared password"
        );
    }
    assert_ne!(olga, pavel, "the same password gives different hashes");
    // `$scrypt$<params>$<salt>$<hash>`: the salts differ, which is why.
    let salt = |phc: &str| phc.split('$').nth(3).map(str::to_owned);
    assert!(salt(olga).is_some(), "a salt in {olga}");
    assert_ne!(salt(olga), salt(pavel), "each account has its own salt");
}
