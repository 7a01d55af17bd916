//! Tests on a real PostgreSQL server (`kit::postgres`). For now, of the
//! harness itself: the server takes SQL at the URL it gives, two at once
//! keep apart, committed rows outlive a stop and a crash, and a dropped
//! server leaves no process, port or directory behind.

use crate::kit::postgres::Postgres;
use postgres::{Client, NoTls};
use std::io::ErrorKind;
use std::net::TcpStream;
use std::path::Path;

fn connect(url: &str) -> Client {
    Client::connect(url, NoTls).unwrap_or_else(|e| panic!("connect to {url}: {e}"))
}

fn one<T: for<'a> postgres::types::FromSql<'a>>(client: &mut Client, sql: &str) -> T {
    let row = client
        .query_one(sql, &[])
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    row.get(0)
}

fn refused(port: u16) -> bool {
    TcpStream::connect(("127.0.0.1", port)).is_err_and(|e| e.kind() == ErrorKind::ConnectionRefused)
}

/// Processes whose working directory is in `dir` (PostgreSQL's all work
/// in its data directory), from /proc.
fn processes_in(dir: &Path) -> Vec<String> {
    let processes = std::fs::read_dir("/proc").into_iter().flatten().flatten();
    let in_dir = processes
        .filter(|p| std::fs::read_link(p.path().join("cwd")).is_ok_and(|cwd| cwd.starts_with(dir)));
    in_dir
        .map(|p| p.file_name().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn a_client_creates_a_table_and_reads_a_row_back() {
    let pg = Postgres::start();
    let mut client = connect(&pg.url());
    client
        .batch_execute("CREATE TABLE notes (id BIGINT PRIMARY KEY, body TEXT NOT NULL)")
        .unwrap();
    let inserted = client
        .execute(
            "INSERT INTO notes (id, body) VALUES ($1, $2)",
            &[&1_i64, &"hello, 世界"],
        )
        .unwrap();
    assert_eq!(inserted, 1);
    let row = client
        .query_one("SELECT body FROM notes WHERE id = $1", &[&1_i64])
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "hello, 世界");

    // The durable defaults are kept.
    assert_eq!(one::<String>(&mut client, "SHOW fsync"), "on");
    assert_eq!(one::<String>(&mut client, "SHOW synchronous_commit"), "on");
    assert_eq!(one::<String>(&mut client, "SHOW server_encoding"), "UTF8");

    // A second database on the same server starts empty.
    let other = pg.create_database("second");
    assert_eq!(
        other,
        format!("postgres://chatapp@127.0.0.1:{}/second", pg.port())
    );
    let tables: i64 = one(
        &mut connect(&other),
        "SELECT count(*) FROM pg_tables WHERE tablename = 'notes'",
    );
    assert_eq!(tables, 0);
}

#[test]
fn two_servers_at_once_have_their_own_ports_and_directories() {
    let (a, b) = (Postgres::start(), Postgres::start());
    assert_ne!(a.port(), b.port());
    assert_ne!(a.dir(), b.dir());
    let (mut to_a, mut to_b) = (connect(&a.url()), connect(&b.url()));
    for (client, pg) in [(&mut to_a, &a), (&mut to_b, &b)] {
        let data: String = one(client, "SHOW data_directory");
        assert_eq!(Path::new(&data), pg.data_dir());
    }
    to_a.batch_execute("CREATE TABLE only_in_a (x INT)")
        .unwrap();
    let in_b: i64 = one(
        &mut to_b,
        "SELECT count(*) FROM pg_tables WHERE tablename = 'only_in_a'",
    );
    assert_eq!(in_b, 0);
}

#[test]
fn committed_rows_outlive_a_stop_and_a_crash_and_drop_leaves_nothing() {
    let mut pg = Postgres::start();
    let (url, port, dir) = (pg.url(), pg.port(), pg.dir().to_path_buf());
    let mut client = connect(&url);
    client
        .batch_execute("CREATE TABLE t (n INT); INSERT INTO t VALUES (1)")
        .unwrap();

    pg.stop();
    assert!(refused(port), "a stopped server refuses connections");
    assert!(
        client.is_valid(std::time::Duration::from_secs(5)).is_err(),
        "a stop ends connections"
    );
    pg.start_again();
    assert_eq!(pg.url(), url, "the same port after a restart");
    let mut client = connect(&url);
    client.batch_execute("INSERT INTO t VALUES (2)").unwrap();

    // A crash with a connection open: its backend goes with the postmaster.
    pg.kill();
    assert!(refused(port), "a killed server refuses connections");
    assert_eq!(
        processes_in(&dir),
        Vec::<String>::new(),
        "nothing of the server runs on"
    );
    pg.start_again();
    let mut client = connect(&url);
    let rows: Vec<i32> = client
        .query("SELECT n FROM t ORDER BY n", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(rows, [1, 2], "committed rows recovered after the crash");

    drop(pg);
    assert!(refused(port), "a dropped server refuses connections");
    assert!(
        !dir.exists(),
        "a dropped server's directory is deleted: {}",
        dir.display()
    );
    assert_eq!(
        processes_in(&dir),
        Vec::<String>::new(),
        "nothing of the server runs on"
    );
}
