//! A thousand clients at once, all logged in, all in one room, all
//! receiving one broadcast.

use crate::kit::{Client, TestServer};
use chatapp::server::hub::Level;
use chatapp::wire::msg::Event;
use std::thread;
use std::time::{Duration, Instant};

/// Clients in the room, the admin included: the largest room allowed.
const CLIENTS: usize = 1000;
/// Threads that drive the clients (each owns a share of them).
const THREADS: usize = 4;
/// The whole test, from the first connection to the last delivery.
const BUDGET: Duration = Duration::from_secs(90);

#[test]
fn a_thousand_clients_are_served_at_once() {
    let started = Instant::now();
    // One log line per connection would be 3,000 lines of noise.
    let server = TestServer::start_with(|config| config.log_level = Level::Warn);
    let mut admin = server.register("admin");
    let room = admin.create_room("everyone", CLIENTS as u32);

    // Connect, register and join, a share per thread, all at the same time.
    let shares: Vec<Vec<Client>> = thread::scope(|s| {
        let workers: Vec<_> = (0..THREADS)
            .map(|t| {
                let server = &server;
                s.spawn(move || {
                    (1..CLIENTS)
                        .filter(|n| n % THREADS == t)
                        .map(|n| {
                            let mut client = server.register(&format!("user{n:04}"));
                            let (info, members, _) = client.join(room);
                            assert_eq!(info.capacity, CLIENTS as u32);
                            assert!(members.contains(&client.name));
                            client
                        })
                        .collect()
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("a share of clients joins"))
            .collect()
    });
    let joined: usize = shares.iter().map(Vec::len).sum();
    assert_eq!(joined + 1, CLIENTS, "every client joined");
    assert!(
        started.elapsed() < BUDGET,
        "joining took {:?}",
        started.elapsed()
    );
    match admin.request(chatapp::wire::msg::Request::Members) {
        chatapp::wire::msg::Reply::Members { members } => assert_eq!(members.len(), CLIENTS),
        other => panic!("members: {other:?}"),
    }
    eprintln!(
        "{CLIENTS} clients connected and in the room after {:?}",
        started.elapsed()
    );

    // The room is full: one more is refused.
    let mut late = server.register("latecomer");
    late.refused(
        chatapp::wire::msg::Request::JoinRoom { room },
        chatapp::wire::msg::ErrorCode::RoomFull,
    );

    admin.say("hello, all thousand of you");
    let broadcast = Instant::now();
    let received: usize = thread::scope(|s| {
        let readers: Vec<_> = shares
            .into_iter()
            .chain(std::iter::once(vec![admin]))
            .map(|mut share| {
                s.spawn(move || {
                    for client in &mut share {
                        // Skip the announcements of those who joined later.
                        let name = client.name.clone();
                        client.wait_for("the broadcast", |event| match event {
                            Event::RoomMessage { room: r, line } if *r == room => {
                                assert_eq!(&*line.from, "admin");
                                assert_eq!(&*line.text, "hello, all thousand of you");
                                Some(())
                            }
                            Event::Joined { room: r, .. } if *r == room => None,
                            other => panic!("{name}: unexpected {other:?}"),
                        });
                    }
                    share.len()
                })
            })
            .collect();
        readers
            .into_iter()
            .map(|r| r.join().expect("a share receives"))
            .sum()
    });
    assert_eq!(received, CLIENTS, "every client received the broadcast");
    eprintln!(
        "the broadcast reached all {CLIENTS} within {:?}; {:?} in all",
        broadcast.elapsed(),
        started.elapsed()
    );
    assert!(started.elapsed() < BUDGET, "took {:?}", started.elapsed());
}
