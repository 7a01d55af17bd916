//! `million`: a million room and private messages through one chatapp
//! server (a release build, the real protocol), watching what a long run
//! does to the store: how large the write-ahead log grows, how long the
//! event loop's turns take while SQLite checkpoints, and how many bytes
//! the database spends on a message. Prints its results as Markdown.
//!
//! A program of its own rather than a scenario of `loadgen`: it runs
//! chatapp alone, for minutes, and measures the store, not a comparison
//! with the IRC servers. `bench/million.sh` builds and runs it.

use anyhow::{Context, ensure};
use chatapp_loadgen::engine::{LoadSpec, Proto, Traffic};
use chatapp_loadgen::million::{self, TURNS_INFO};
use chatapp_loadgen::probe;
use chatapp_loadgen::server::{self, Accounts, ChatOptions, Kind, PASSWORD, Paths};
use clap::Parser;
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(about = "A million room and private messages through one chatapp server")]
struct Args {
    /// The chatapp binary to measure (a release build).
    #[arg(long)]
    chatapp: PathBuf,
    /// Scratch directory (the server's data directory and log).
    #[arg(long)]
    work: PathBuf,
    /// Messages in all, half to rooms and half private.
    #[arg(long, default_value_t = 1_000_000)]
    messages: u64,
    /// Messages a second offered.
    #[arg(long, default_value_t = 10_000.0)]
    rate: f64,
    /// Messages per step: steps of room and private messages alternate.
    #[arg(long, default_value_t = 50_000)]
    chunk: u64,
    /// Rooms, and members in each (every member also writes privately).
    #[arg(long, default_value_t = 200)]
    rooms: usize,
    #[arg(long, default_value_t = 10)]
    room_size: usize,
    /// Each client writes privately to its next K clients in turn.
    #[arg(long, default_value_t = 10)]
    partners: usize,
    /// CPU the server is pinned to (run this program on another).
    #[arg(long, default_value_t = 0)]
    server_cpu: usize,
    /// How often the WAL, the database file and the log are sampled, ms.
    #[arg(long, default_value_t = 10)]
    sample_ms: u64,
    /// The command line to quote in the results.
    #[arg(long, default_value = "bench/million.sh")]
    command: String,
}

#[derive(Default)]
struct Totals {
    sent: u64,
    acked: u64,
    refused: u64,
    failed: u64,
    unsent: u64,
    expected: u64,
    delivered: u64,
    lost: u64,
    duplicates: u64,
    worst_p99_ms: f64,
    worst_p999_ms: f64,
    disconnects: u64,
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    ensure!(args.room_size >= 2, "--room-size must be at least 2");
    ensure!(
        args.chunk > 0 && args.rate > 0.0,
        "--chunk and --rate must be positive"
    );
    let clients = args.rooms * args.room_size;
    std::fs::create_dir_all(&args.work)?;
    let data = args.work.join("chatapp-data");
    let db = data.join(chatapp::server::DATABASE_FILE);
    let log = args.work.join("chatapp.log");
    let _ = std::fs::remove_file(&log);
    server::seed(
        &data,
        &[Accounts {
            prefix: "c".into(),
            count: clients,
            log_n: 4,
        }],
        None,
    )?;
    let seeded_bytes = std::fs::metadata(&db)?.len();

    let paths = Paths {
        chatapp: args.chatapp.clone(),
        pkgroot: PathBuf::new(),
        peers: PathBuf::new(),
        work: args.work.clone(),
    };
    let mut extra = vec!["--scrypt-log-n".to_string(), "4".to_string()];
    for flag in [
        "--message-burst",
        "--message-rate",
        "--request-burst",
        "--request-rate",
    ] {
        extra.push(flag.into());
        extra.push("1000000".into());
    }
    let chat = ChatOptions {
        scrypt_log_n: None,
        extra: extra.clone(),
        log: Some("debug".into()),
    };
    let running = server::start(Kind::Chatapp, &paths, &chat, Some(args.server_cpu))?;
    let mut engine = chatapp_loadgen::engine::Engine::new(
        running.addr,
        Proto::Chat {
            password: PASSWORD.into(),
        },
        clients,
        |i| format!("c{i}"),
    )?;
    engine.probes = vec![running.probe];
    let connected = engine.connect(0..clients, 100, Duration::from_secs(120));
    ensure!(
        connected.ok == clients,
        "only {} of {clients} clients logged in: {:?}",
        connected.ok,
        engine.stats.problems
    );
    let rooms: Vec<Vec<usize>> = (0..args.rooms)
        .map(|r| (r * args.room_size..(r + 1) * args.room_size).collect())
        .collect();
    let joined = engine.join_rooms(&rooms, Duration::from_secs(120));
    ensure!(
        joined == clients,
        "only {joined} of {clients} clients in their rooms"
    );
    let room_slots: Vec<(usize, u32)> = (0..args.room_size)
        .flat_map(|pos| {
            rooms
                .iter()
                .map(move |room| (room[pos], (room.len() - 1) as u32))
        })
        .collect();
    eprintln!(
        "million: {clients} clients logged in, in {} rooms",
        args.rooms
    );

    let watch = million::watch(
        &data,
        &log,
        running.probe.pid,
        Duration::from_millis(args.sample_ms),
    );
    let cpu0 = running.probe.cpu_us();
    let started = Instant::now();
    let mut totals = Totals::default();
    let mut left = args.messages;
    let mut step = 0u64;
    while left > 0 {
        let n = left.min(args.chunk);
        let room_step = step.is_multiple_of(2);
        let traffic = if room_step {
            Traffic::Rooms(room_slots.clone())
        } else {
            Traffic::Private((0..clients).collect(), Some(args.partners))
        };
        let r = engine.run(&LoadSpec {
            rate: Some(args.rate),
            total: n,
            traffic,
            drain: Duration::from_secs(30),
            text_len: 64,
            storm: None,
        });
        let t = &r.tracker;
        totals.sent += t.sent;
        totals.acked += r.stats.acks + r.stats.late_acks;
        totals.refused += t.refused;
        totals.failed += t.failed;
        totals.unsent += t.unsent;
        totals.expected += t.expected;
        totals.delivered += t.delivered;
        totals.lost += t.lost();
        totals.duplicates += t.duplicates;
        totals.disconnects += r.stats.disconnects;
        let p99 = t.latency.quantile(0.99) as f64 / 1000.0;
        let p999 = t.latency.quantile(0.999) as f64 / 1000.0;
        totals.worst_p99_ms = totals.worst_p99_ms.max(p99);
        totals.worst_p999_ms = totals.worst_p999_ms.max(p999);
        eprintln!(
            "million: [{:>5.1} s] step {step} ({}): {} sent, {} of {} delivered, p99 {p99:.1} ms{}",
            started.elapsed().as_secs_f64(),
            if room_step { "rooms" } else { "private" },
            t.sent,
            t.delivered,
            t.expected,
            if r.stats.problems.is_empty() {
                String::new()
            } else {
                format!(", problems {:?}", r.stats.problems)
            }
        );
        left -= n;
        step += 1;
    }
    let elapsed = started.elapsed().as_secs_f64();
    // Acknowledgements still on their way for the last step.
    engine.idle(Duration::from_millis(500));
    totals.acked += engine.stats.late_acks;
    let server_cpu_s = (running.probe.cpu_us() - cpu0) as f64 / 1e6;
    let peak_rss = running.probe.peak_kib();
    let watched = watch.finish();
    engine.close_range(0..clients);
    running.stop();

    // The last connection to close checkpoints and removes the WAL; open
    // and close the file once more in case the server could not.
    drop(
        chatapp::store::open(
            &chatapp::store::Location::Sqlite(db.clone()),
            chatapp::store::Sync::Full,
        )
        .context("reopening the database")?,
    );
    let wal_after = std::fs::metadata(format!("{}-wal", db.display())).map_or(0, |m| m.len());
    let db_bytes = std::fs::metadata(&db)?.len();
    let server_log = std::fs::read_to_string(&log).unwrap_or_default();
    let final_turns = server_log
        .lines()
        .rfind(|l| l.starts_with(TURNS_INFO))
        .map(|l| l.trim_start_matches("chatapp: info: ").to_string())
        .unwrap_or_else(|| "(no report: see the server log)".into());
    let longest_ms = million::parse_totals(&final_turns).map(|(_, ms)| ms);
    let slack = 2.0 * args.sample_ms as f64 / 1000.0;
    let corr = million::correlate(&watched.windows, &watched.checkpoints, slack);
    let stored = totals.acked.max(1);

    let over = watched
        .windows
        .iter()
        .filter(|w| w.longest_ms > 100.0)
        .count();
    println!("- **Command:** `{}`", args.command);
    println!(
        "- **Load:** {} rooms of {} members ({clients} clients, each also writing privately to its next {}); steps of {} messages alternate between rooms and private messages; {}/s offered; 64-byte texts; server pinned to CPU {}, this program on another; `serve {}`, SQLite synchronous=FULL",
        args.rooms,
        args.room_size,
        args.partners,
        args.chunk,
        args.rate,
        args.server_cpu,
        extra.join(" ")
    );
    println!(
        "- **Messages:** {} sent, {} acknowledged as stored, {} refused, {} failed, {} not sent; deliveries {} of {} ({} lost, {} duplicates), worst step p99 {:.1} ms, p99.9 {:.1} ms; {} disconnects",
        totals.sent,
        totals.acked,
        totals.refused,
        totals.failed,
        totals.unsent,
        totals.delivered,
        totals.expected,
        totals.lost,
        totals.duplicates,
        totals.worst_p99_ms,
        totals.worst_p999_ms,
        totals.disconnects
    );
    println!(
        "- **Time:** {elapsed:.1} s of sending ({:.0} messages/s acknowledged); server CPU {server_cpu_s:.1} s ({:.1} µs a message); peak RSS {:.1} MiB",
        totals.acked as f64 / elapsed,
        server_cpu_s * 1e6 / stored as f64,
        peak_rss as f64 / 1024.0
    );
    println!(
        "- **WAL:** largest {} ({} bytes) over {} samples every {} ms; {} after the final checkpoint; largest in each 10 s: {}",
        mib(watched.wal_max),
        watched.wal_max,
        watched.samples,
        args.sample_ms,
        wal_after,
        watched
            .wal_by_second
            .chunks(10)
            .map(|c| mib(c.iter().copied().max().unwrap_or(0)))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "- **Checkpoints:** the main file changed in {} samples; seconds of loop turns with a checkpoint: {}, longest turn in them {:.3} ms; without: {}, longest {:.3} ms; seconds with a turn over 100 ms: {over}",
        watched.checkpoints.len(),
        corr.with_checkpoint,
        corr.longest_with_ms,
        corr.without_checkpoint,
        corr.longest_without_ms
    );
    let slow: Vec<String> = watched
        .windows
        .iter()
        .filter(|w| w.longest_ms > 100.0)
        .map(|w| {
            format!(
                "{:.0} ms (the loop's thread waited {:.0} ms for the CPU that second, the server's other threads ran {:.0} ms)",
                w.longest_ms, w.loop_wait_ms, w.others_ran_ms
            )
        })
        .collect();
    let waited: f64 = watched.windows.iter().map(|w| w.loop_wait_ms).sum();
    let others: f64 = watched.windows.iter().map(|w| w.others_ran_ms).sum();
    println!(
        "- **CPU:** over the run the loop's thread waited {:.1} s for the CPU while ready to run; the server's other threads ran {:.1} s; seconds with a turn over 100 ms: {}",
        waited / 1000.0,
        others / 1000.0,
        if slow.is_empty() {
            "none".to_string()
        } else {
            slow.join("; ")
        }
    );
    println!("- **Loop turns, whole run:** {final_turns}");
    println!(
        "- **Database:** {} after the final checkpoint ({} bytes; {} with the accounts alone): {:.1} bytes a message ({:.1} counting only what the messages added)",
        mib(db_bytes),
        db_bytes,
        seeded_bytes,
        db_bytes as f64 / stored as f64,
        db_bytes.saturating_sub(seeded_bytes) as f64 / stored as f64
    );
    println!(
        "- **Machine:** {}; 1-minute load average {}",
        probe::machine(),
        std::fs::read_to_string("/proc/loadavg")
            .ok()
            .and_then(|l| l.split_whitespace().next().map(str::to_string))
            .unwrap_or_default()
    );
    let promises_kept =
        longest_ms.is_some_and(|ms| ms <= 100.0) && totals.lost == 0 && totals.acked == totals.sent;
    eprintln!(
        "million: {}",
        if promises_kept {
            "every message acknowledged and delivered; no loop turn over 100 ms"
        } else {
            "a promise was broken: see above"
        }
    );
    Ok(())
}
