//! Floods: connections per address, and password guessing slowed per
//! account and per address, with an unknown name costing what a wrong
//! password costs. (The per-client message budget is in `limits.rs`.)
//!
//! Run with `--nocapture` to read the figures.

use crate::kit;
use crate::kit::{
    Client, PASSWORD, TestServer, WAIT, client_at, dual_stack, left, ms, wait_closed,
};
use chatapp::client::proto::{self, ClientError};
use chatapp::store::password::HashCost;
use chatapp::wire::msg::{ErrorCode, Event, LeaveReason, Reply, Request};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

/// The tests here time what they see (one runs scrypt at full cost on both
/// cores): they take turns rather than disturb each other's figures.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

#[test]
fn the_fifth_connection_from_one_address_is_closed_at_once_and_the_four_work() {
    let _turn = one_at_a_time();
    let server = TestServer::start_with(|c| {
        c.net_limits.exempt_loopback = false;
        c.net_limits.max_per_address = 4;
    });
    let (room, mut four) = server.room_with("ann", &["bob", "cat", "dan"], 10);

    // A fifth, raw: the server closes it without a word.
    let opened = Instant::now();
    let mut fifth =
        TcpStream::connect(server.addr()).expect("the kernel accepts the TCP connection");
    let closed = wait_closed(&mut fifth, WAIT).expect("the fifth connection is closed");
    let took = closed - opened;
    // A fifth through the client library: it says it was refused.
    let refused = match proto::connect(&server.addr()) {
        Err(e @ ClientError::Refused { .. }) => e.to_string(),
        Err(other) => panic!("expected a refusal, got {other}"),
        Ok(_) => panic!("a fifth connection got through"),
    };
    println!(
        "max 4 per address, loopback not exempt: the 5th connection was closed after {:.1} ms; \
         the client says: {refused}",
        ms(took)
    );
    assert!(took < Duration::from_millis(500), "closed after {took:?}");

    // The four saw nothing of it and go on.
    for member in &mut four {
        member.expect_quiet();
    }
    four[3].say("four of us");
    for member in &mut four {
        member.expect_said(room, "dan", "four of us");
    }
    // One leaves: its place is free again, for dan himself here.
    let dan = four.pop().unwrap();
    drop(dan);
    for member in &mut four {
        member.expect_event(&left(room, "dan", LeaveReason::Disconnected));
    }
    let (mut dan, _) = server.login("dan");
    dan.join(room);
    for member in &mut four {
        member.expect_event(&Event::Joined {
            room,
            name: "dan".into(),
        });
    }
    // And it is full again.
    let mut sixth = TcpStream::connect(server.addr()).unwrap();
    assert!(wait_closed(&mut sixth, WAIT).is_some(), "full again");
}

#[test]
fn loopback_is_exempt_by_default_so_fifty_local_connections_all_work() {
    let _turn = one_at_a_time();
    // The limit is as low as above; only the exemption differs (the default).
    let server = TestServer::start_with(|c| {
        assert!(
            c.net_limits.exempt_loopback,
            "loopback is exempt by default"
        );
        c.net_limits.max_per_address = 4;
    });
    let started = Instant::now();
    let mut clients: Vec<Client> = (0..50)
        .map(|n| server.anonymous(&format!("local{n:02}")))
        .collect();
    for client in &mut clients {
        assert_eq!(
            client.request(Request::Ping),
            Reply::Pong,
            "{}",
            client.name
        );
    }
    for client in &mut clients[..10] {
        client.register();
    }
    println!(
        "50 connections from 127.0.0.1 (limit 4, loopback exempt): all 50 answered, 10 registered, \
         in {:.0} ms",
        ms(started.elapsed())
    );
}

/// One login attempt: its reply and how long it took.
fn attempt(client: &mut Client, name: &str, password: &str) -> (Reply, Duration) {
    let started = Instant::now();
    let reply = client
        .conn
        .request_within(
            Request::Login {
                name: name.into(),
                password: password.into(),
            },
            Duration::from_secs(40),
        )
        .unwrap_or_else(|e| panic!("{}: login as {name}: {e}", client.name));
    (reply, started.elapsed())
}

fn bad_credentials(reply: &Reply) -> bool {
    matches!(
        reply,
        Reply::Error {
            code: ErrorCode::BadCredentials,
            ..
        }
    )
}

#[test]
fn failed_logins_slow_down_per_account_and_per_address_and_no_one_else() {
    let _turn = one_at_a_time();
    let Some((_dir, handle)) = dual_stack(|_| {}) else {
        return;
    };
    const FREE: u32 = 3; // the default
    // Two accounts, and a room where two others chat throughout.
    for name in ["ann", "bob"] {
        client_at(&handle, "[::1]", name).register();
    }
    let mut cat = client_at(&handle, "[::1]", "cat");
    cat.register();
    let room = cat.create_room("bystanders", 5);
    let mut dog = client_at(&handle, "[::1]", "dog");
    dog.register();
    dog.join(room);
    cat.expect_event(&Event::Joined {
        room,
        name: "dog".into(),
    });

    // From address A (127.0.0.1): the free failures on ann, each quick.
    let mut a = client_at(&handle, "127.0.0.1", "guesser at A");
    let mut free = Vec::new();
    for n in 0..FREE {
        let (reply, took) = attempt(&mut a, "ann", &format!("guess {n}"));
        assert!(bad_credentials(&reply), "{reply:?}");
        free.push(took);
    }
    // From address B (::1), clean: ann's account is throttled, 1 s.
    let mut b = client_at(&handle, "[::1]", "guesser at B");
    let (reply, account_1s) = attempt(&mut b, "ann", "guess 3");
    assert!(bad_credentials(&reply), "{reply:?}");
    // From A again: ann's 5th failure waits 2 s (A's own count asks 1 s).
    // Meanwhile the room chats at full speed.
    let (held, chat) = thread::scope(|s| {
        let held = s.spawn(|| attempt(&mut a, "ann", "guess 4"));
        // Time for the guess to reach the server, which shows nothing from
        // outside while it holds a reply; chat that came too early would
        // only make this check weaker, never fail it falsely.
        thread::sleep(Duration::from_millis(300));
        let sent = Instant::now();
        dog.say("while someone guesses");
        cat.expect_said(room, "dog", "while someone guesses");
        let chat = sent.elapsed();
        (held.join().unwrap(), chat)
    });
    let (reply, account_2s) = held;
    assert!(bad_credentials(&reply), "{reply:?}");
    // From A, another account with the right password: A is throttled (4
    // failures: 2 s), bob's account is not. It waits, then gets in.
    let (reply, address_2s) = attempt(&mut a, "bob", PASSWORD);
    assert_eq!(kit::tokenless(reply), kit::logged_in("bob", 0));
    // From B (one failure, below the free ones), ann with the right password.
    let mut b2 = client_at(&handle, "[::1]", "at B");
    let (reply, clean) = attempt(&mut b2, "ann", PASSWORD);

    println!(
        "login throttling (free failures {FREE}): the free ones took {:?} ms; ann's 4th (from \
         another address) {:.0} ms; ann's 5th {:.0} ms; bob with the right password from the \
         guessing address {:.0} ms; ann with the right password from B {:.0} ms ({reply:?}); a \
         room message meanwhile {:.1} ms",
        free.iter().map(|d| ms(*d).round()).collect::<Vec<_>>(),
        ms(account_1s),
        ms(account_2s),
        ms(address_2s),
        ms(clean),
        ms(chat)
    );
    for took in free {
        assert!(
            took < Duration::from_millis(500),
            "a free failure took {took:?}"
        );
    }
    // The server counts in whole milliseconds of the wall clock: a hold may
    // end up to a millisecond before the client's stopwatch says it should.
    let held = |took: Duration, secs: u64| {
        took + Duration::from_millis(2) >= Duration::from_secs(secs)
            && took < Duration::from_secs(secs + 1)
    };
    assert!(held(account_1s, 1), "{account_1s:?}");
    assert!(held(account_2s, 2), "{account_2s:?}");
    assert!(held(address_2s, 2), "{address_2s:?}");
    // ann's account has 5 failures: the right password waits 4 s too, from
    // anywhere (the throttle does not tell a right guess from a wrong one).
    assert!(held(clean, 4), "{clean:?}");
    assert_eq!(kit::tokenless(reply), kit::logged_in("ann", 0));
    assert!(
        chat < Duration::from_millis(100),
        "the room waited {chat:?}"
    );
    cat.expect_quiet();
}

#[test]
fn an_unknown_name_costs_what_a_wrong_password_costs_at_the_real_scrypt_cost() {
    let _turn = one_at_a_time();
    const ROUNDS: usize = 5;
    let server = TestServer::start_with(|c| {
        c.hash_cost = HashCost::default();
        // Throttling would add its own delays: out of the way here.
        c.limits.free_login_failures = 1000;
    });
    assert_eq!(HashCost::default().log_n, 17);
    let started = Instant::now();
    let mut ann = server.anonymous("ann");
    let registered = Instant::now();
    ann.register();
    let register = registered.elapsed();
    ann.ok(Request::Logout);
    let mut guesser = server.anonymous("guesser");
    let (mut wrong, mut unknown) = (Vec::new(), Vec::new());
    let mut replies = Vec::new();
    for n in 0..ROUNDS {
        let (reply, took) = attempt(&mut guesser, "ann", &format!("not the password {n}"));
        replies.push(reply);
        wrong.push(took);
        let (reply, took) = attempt(&mut guesser, &format!("nobody{n}"), PASSWORD);
        replies.push(reply);
        unknown.push(took);
    }
    let mean = |v: &[Duration]| v.iter().sum::<Duration>() / v.len() as u32;
    let (w, u) = (mean(&wrong), mean(&unknown));
    let list = |v: &[Duration]| v.iter().map(|d| ms(*d).round()).collect::<Vec<_>>();
    println!(
        "scrypt ln=17: registering took {:.0} ms; wrong password {:?} ms (mean {:.0}); unknown \
         name {:?} ms (mean {:.0}); ratio {:.2}; {:.1} s in all",
        ms(register),
        list(&wrong),
        ms(w),
        list(&unknown),
        ms(u),
        u.as_secs_f64() / w.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    // The same answer, word for word...
    for reply in &replies {
        assert_eq!(reply, &replies[0]);
    }
    assert!(bad_credentials(&replies[0]), "{:?}", replies[0]);
    // ...in the same time, give or take 30%.
    let (lo, hi) = if w < u { (w, u) } else { (u, w) };
    assert!(
        hi.as_secs_f64() <= lo.as_secs_f64() * 1.3,
        "wrong password {w:?} against unknown name {u:?}"
    );
    // And the real cost is a real cost: tens of milliseconds at least.
    assert!(lo > Duration::from_millis(20), "{lo:?}");
}

#[test]
fn loopback_is_exempt_on_a_dual_stack_listener_too() {
    let _turn = one_at_a_time();
    // `--listen [::]:7878` takes IPv4 clients too, as ::ffff:a.b.c.d: one
    // from 127.0.0.1 is still local and exempt. (Fails while net.rs checks
    // `peer.ip().is_loopback()`, which is false for ::ffff:127.0.0.1;
    // `peer.ip().to_canonical()` is the fix.)
    let Some((_dir, handle)) = dual_stack(|c| c.net_limits.max_per_address = 4) else {
        return;
    };
    let mut clients = Vec::new();
    for n in 0..6 {
        let addr = format!("127.0.0.1:{}", handle.addr.port());
        match proto::connect(&addr) {
            Ok(u) => clients.push(u.accept()),
            Err(e) => panic!("connection {} from 127.0.0.1 to [::]: refused: {e}", n + 1),
        }
    }
    for conn in &mut clients {
        assert_eq!(
            conn.request_within(Request::Ping, WAIT).unwrap(),
            Reply::Pong
        );
    }
}
