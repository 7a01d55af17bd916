//! chatapp behind a real HAProxy run from the example configuration
//! (`packaging/haproxy.cfg`: TCP mode, PROXY protocol v2, health checks).
//! The node trusts 127.0.0.1, where HAProxy connects from, for PROXY
//! headers; clients come from other loopback addresses, and loopback is not
//! exempt from the per-address limit here, so the limit shows whose address
//! the node counts.

use crate::kit::haproxy::Haproxy;
use crate::kit::{self, Client, Got, RawClient, TestServer, WAIT, connect_from, wait_closed};
use chatapp::wire::msg::{Event, Reply, Request, ServerFrame};
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::time::Duration;

const BALANCER: Ipv4Addr = Ipv4Addr::LOCALHOST;

/// A node that reads PROXY headers from 127.0.0.1 and allows `max`
/// connections an address, loopback included.
fn node(max: usize) -> TestServer {
    TestServer::start_with(move |c| {
        c.net_limits.proxies = vec![BALANCER.into()];
        c.net_limits.exempt_loopback = false;
        c.net_limits.max_per_address = max;
    })
}

fn v4(addr: SocketAddr) -> SocketAddrV4 {
    match addr {
        SocketAddr::V4(v4) => v4,
        SocketAddr::V6(_) => panic!("HAProxy listens on 127.0.0.1"),
    }
}

/// Whether the node answers a Noise handshake on `stream` (rather than
/// closing it).
fn handshake_answered(mut stream: TcpStream) -> bool {
    use std::io::Read;
    let (_, first) = chatapp::wire::noise::ClientHandshake::start();
    let mut out = Vec::new();
    chatapp::wire::frame::push(&mut out, &first);
    stream.set_read_timeout(Some(WAIT)).expect("a read timeout");
    let mut reply = [0u8; 64];
    stream.write_all(&out).is_ok() && stream.read(&mut reply).is_ok_and(|n| n > 0)
}

/// A client at `from` through the balancer, registered as `name`.
fn register_from(from: Ipv4Addr, lb: &Haproxy, name: &str) -> RawClient {
    let mut client = RawClient::over(connect_from(from, v4(lb.addr)));
    let reply = client.request(Request::Register {
        name: name.into(),
        password: kit::PASSWORD.into(),
    });
    assert_eq!(
        kit::tokenless(reply),
        kit::logged_in(name, 0),
        "{name} registers"
    );
    client
}

#[test]
fn behind_haproxy_each_client_is_counted_under_its_own_address() {
    let server = node(2);
    let lb = Haproxy::start(&[server.handle().addr]);
    let (home, office) = (Ipv4Addr::new(127, 0, 0, 2), Ipv4Addr::new(127, 0, 0, 3));

    let mut ann = register_from(home, &lb, "ann");
    let amy = register_from(home, &lb, "amy");
    // A third from ann's address is over its limit of two: the node closes
    // it, and HAProxy with it. Its health checks, which come from the
    // balancer itself, are not counted against anyone.
    let mut third = connect_from(home, v4(lb.addr));
    assert!(
        wait_closed(&mut third, WAIT).is_some(),
        "a third connection from {home} is closed"
    );
    // The balancer's address holds no count: another address is served.
    let mut bob = register_from(office, &lb, "bob");
    // amy leaves: her count is given back under her own address, and a
    // new connection from there is served again.
    drop(amy);
    let served = kit::wait_until(WAIT, Duration::from_millis(50), || {
        handshake_answered(connect_from(home, v4(lb.addr)))
    });
    assert!(served, "{home} is served again once amy has gone");

    let id = ann.send(Request::SendPrivate {
        to: "bob".into(),
        text: "through the balancer".into(),
        client_id: 0,
    });
    assert_eq!(ann.reply_to(id), Reply::Ok);
    match bob.read(WAIT) {
        Got::Frame(ServerFrame::Event {
            event: Event::PrivateMessage { line },
        }) => assert_eq!((&*line.from, &*line.text), ("ann", "through the balancer")),
        other => panic!("bob expected ann's message, got {other:?}"),
    }

    // From the balancer's address, a connection must start with a PROXY
    // header: a client that connects there directly, with a Noise
    // handshake, is closed, and nobody else notices.
    let direct = TcpStream::connect(server.addr()).expect("connect to the node");
    assert!(
        !handshake_answered(direct),
        "a headerless connection from the balancer's address is closed unanswered"
    );
    assert_eq!(ann.request(Request::Ping), Reply::Pong);
}

#[test]
fn haproxy_takes_a_stopped_node_out_and_back_and_its_clients_resume_through_it() {
    let mut server = node(16);
    let mut lb = Haproxy::start(&[server.handle().addr]);
    let via = lb.addr.to_string();
    let client = |server: &TestServer, name: &str| Client {
        name: name.into(),
        conn: server.connect_via(&via),
    };
    let mut ann = client(&server, "ann");
    let ann_token = ann.register();
    let mut bob = client(&server, "bob");
    let bob_token = bob.register();
    ann.send_private("bob", "before the restart");
    bob.expect_private("ann", "bob", "before the restart");

    server.stop();
    lb.wait_for(1, "DOWN");
    // With its only node out, HAProxy takes a connection and closes it: a
    // client sees a failed attempt, which it tries again later.
    let mut early = TcpStream::connect(lb.addr).expect("HAProxy still listens");
    assert!(
        wait_closed(&mut early, WAIT).is_some(),
        "HAProxy closes a connection it has no node for"
    );

    server.restart_in_place();
    lb.wait_for(1, "UP");
    // Back through the balancer with their tokens: no password.
    let mut ann = client(&server, "ann");
    assert_eq!(
        kit::tokenless(ann.resume(&ann_token)),
        kit::logged_in("ann", 0)
    );
    let mut bob = client(&server, "bob");
    // ann's line, delivered live but never opened, is still unread.
    assert_eq!(
        kit::tokenless(bob.resume(&bob_token)),
        kit::logged_in("bob", 1)
    );
    ann.send_private("bob", "after the restart");
    bob.expect_private("ann", "bob", "after the restart");
}
