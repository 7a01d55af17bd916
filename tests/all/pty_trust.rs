//! Meeting a server: its key shown and remembered on first contact, a
//! changed key refused before anything is sent, scripts and missing
//! terminals, and the connection troubles a person can run into.

use crate::kit::pty::*;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::Stdio;

#[test]
fn first_contact_shows_the_fingerprint_and_remembers_it_for_the_owner_only() {
    let server = Server::start();
    let home = Home::new();
    let mut c = Client::connect("first", &home, &server);
    c.expect(&format!(
        "{} is a server you have not met before. Its key fingerprint is",
        server.addr()
    ));
    c.expect(&format!("\n  {}\n", server.fingerprint));
    c.expect("chatapp serve --fingerprint");
    trust(&mut c);
    c.expect("What would you like to do?");
    c.arrow_down();
    c.arrow_down();
    c.send("\r");
    c.expect("Bye.");
    assert_eq!(c.exit_code(), 0);

    let text = std::fs::read_to_string(home.known_servers()).expect("the known-servers file");
    assert!(
        text.contains(&format!("{} {}\n", server.addr(), server.fingerprint)),
        "{text}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(home.known_servers())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    // The second time there is nothing to ask.
    let mut again = Client::connect("again", &home, &server);
    again.expect("What would you like to do?");
    assert!(!again.transcript().contains("Trust this server?"));
}

#[test]
fn declining_to_trust_sends_nothing_and_exits_non_zero() {
    let server = Server::start();
    let home = Home::new();
    let mut c = Client::connect("wary", &home, &server);
    c.expect("Trust this server?");
    c.send("n");
    c.expect(&format!(
        "you did not trust {}: nothing was sent",
        server.addr()
    ));
    assert_eq!(c.exit_code(), 1);
    assert!(!home.known_servers().exists());
}

#[test]
fn a_changed_server_key_is_refused_before_any_password_is_sent() {
    let server = Server::start();
    let home = Home::new();
    let remembered = "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    std::fs::write(
        home.known_servers(),
        format!("{} {remembered}\n", server.addr()),
    )
    .unwrap();

    let mut c = Client::connect("victim", &home, &server);
    c.expect(&format!(
        "refusing {}: its key has changed since you first trusted it",
        server.addr()
    ));
    c.expect(&format!("remembered key: {remembered}"));
    c.expect(&format!("key shown now:  {}", server.fingerprint));
    c.expect("Nothing was sent to it: no name, no password.");
    c.expect(&home.known_servers().display().to_string());
    assert_eq!(c.exit_code(), 1);
    let seen = c.transcript();
    for never in ["User name", "Password", "What would you like to do?"] {
        assert!(!seen.contains(never), "asked {never:?} of a changed server");
    }
    // The remembered key is left as it was.
    let text = std::fs::read_to_string(home.known_servers()).unwrap();
    assert!(text.contains(remembered), "{text}");
}

#[test]
fn no_server_gives_a_clear_message() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let home = Home::new();
    let addr = format!("127.0.0.1:{port}");
    let mut c = Client::spawn("lonely", &home, &["connect", &addr]);
    c.expect(&format!(
        "could not reach {addr}: connection refused - is `chatapp serve` running"
    ));
    assert_eq!(c.exit_code(), 1);
    assert!(!c.transcript().contains("panicked"));
}

#[test]
fn without_a_terminal_an_unknown_server_is_refused() {
    let server = Server::start();
    let home = Home::new();
    let out = home
        .command(&["connect", &server.addr()])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("it is not a known server"), "{err}");
    assert!(err.contains("--accept-new-server"), "{err}");
    assert!(!home.known_servers().exists());
}

#[test]
fn the_accept_flag_trusts_a_new_server_without_asking() {
    let server = Server::start();
    let home = Home::new();
    let mut c = Client::spawn(
        "script",
        &home,
        &["connect", "--accept-new-server", &server.addr()],
    );
    c.expect(&format!(
        "Trusting the new server {} (key {})",
        server.addr(),
        server.fingerprint
    ));
    c.expect("What would you like to do?");
    assert!(!c.transcript().contains("Trust this server?"));
    let text = std::fs::read_to_string(home.known_servers()).unwrap();
    assert!(text.contains(&server.fingerprint), "{text}");

    // Without a terminal the flag still records the key, then says the
    // chat itself needs one.
    let other = Home::new();
    let out = other
        .command(&["connect", "--accept-new-server", &server.addr()])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("the chat client needs a terminal"), "{err}");
    assert!(other.known_servers().exists());
}

#[test]
fn no_arguments_means_connect_to_chatapp_server() {
    let server = Server::start();
    let home = Home::new();
    let mut cmd = home.command(&[]);
    cmd.env("CHATAPP_SERVER", server.addr());
    let mut c = Client::spawn_command("double-click", cmd);
    c.expect(&format!(
        "{} is a server you have not met before.",
        server.addr()
    ));
    trust(&mut c);
    register(&mut c, "erin");
}

#[test]
fn a_server_of_another_version_is_told_apart_and_the_user_told_to_update() {
    // Answers the first handshake message with a frame no chatapp of this
    // version accepts.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let fake = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut first = [0u8; 64];
        let _ = s.read(&mut first);
        let mut reply = vec![0u8, 96];
        reply.extend((0..96u8).map(|i| i.wrapping_mul(37)));
        let _ = s.write_all(&reply);
    });
    let home = Home::new();
    let mut c = Client::spawn("old", &home, &["connect", &addr]);
    c.expect(&format!("{addr} did not complete a chatapp handshake"));
    c.expect("Update chatapp");
    assert_eq!(c.exit_code(), 1);
    assert!(!c.transcript().contains("panicked"));
    fake.join().unwrap();
}
