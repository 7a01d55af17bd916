//! `reconnect`: S6, the reconnect storm (chatapp only: the IRC peers have
//! no way to resume a session, so there is nothing to set beside it).
//! Prints the results as Markdown (docs/BENCHMARKS.md, "S6 reconnect
//! storm").

use chatapp_loadgen::probe;
use chatapp_loadgen::scenario::{Bench, Settings, Storm, fmt_rate};
use chatapp_loadgen::server::Paths;
use clap::Parser;
use std::path::PathBuf;
use std::process::Command;

#[derive(Parser)]
#[command(about = "S6: chatapp killed and restarted, every client resuming with its token")]
struct Args {
    /// The chatapp binary to measure (a release build).
    #[arg(long)]
    chatapp: PathBuf,
    /// Scratch directory (data directory, logs).
    #[arg(long)]
    work: PathBuf,
    /// Clients that resume after the restart.
    #[arg(long)]
    clients: Option<usize>,
    /// Clients of the password storm at the default scrypt cost.
    #[arg(long)]
    password_clients: Option<usize>,
    /// Resumes in flight at once (default 1,000).
    #[arg(long)]
    in_flight: Option<usize>,
    /// Everything ten times smaller: a trial run.
    #[arg(long)]
    quick: bool,
    /// CPU the server is pinned to (this driver should be pinned to
    /// another one by its caller).
    #[arg(long, default_value_t = 0)]
    server_cpu: usize,
    /// Another argument for `chatapp serve` (repeatable).
    #[arg(long = "chatapp-arg", allow_hyphen_values = true)]
    chatapp_args: Vec<String>,
    /// The command line to quote in the report.
    #[arg(long, default_value = "bench/reconnect.sh")]
    command: String,
    /// What to say about the revision measured.
    #[arg(long, default_value = "")]
    revision: String,
}

fn output(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn row(what: &str, s: &Storm, extrapolated: Option<usize>) -> String {
    let mut line = format!(
        "| {what} | {} | {} | {:.2} s | {}/s | {:.3} ms | {:.1} / {:.1} ms | {} |",
        s.clients,
        s.back,
        s.secs,
        if s.per_sec() < 100.0 {
            format!("{:.1}", s.per_sec())
        } else {
            fmt_rate(s.per_sec())
        },
        s.cpu_ms_per_session(),
        s.p50_ms,
        s.p99_ms,
        s.failures
    );
    if let Some(n) = extrapolated {
        line.push_str(&format!(
            "\n| (extrapolated, not measured: {n} at that rate) | {n} | | {:.0} s | | | | |",
            n as f64 / s.per_sec().max(1e-9)
        ));
    }
    line
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut settings = if args.quick {
        Settings::quick()
    } else {
        Settings::full()
    };
    if let Some(n) = args.clients {
        settings.s6_clients = n;
    }
    if let Some(m) = args.password_clients {
        settings.s6_password_clients = m;
    }
    if let Some(k) = args.in_flight {
        anyhow::ensure!(k >= 1, "--in-flight must be at least 1");
        settings.s6_in_flight = k;
    }
    std::fs::create_dir_all(&args.work)?;
    let paths = Paths {
        chatapp: args.chatapp.clone(),
        pkgroot: PathBuf::new(),
        peers: PathBuf::new(),
        work: args.work.clone(),
    };
    let bench = Bench {
        paths: &paths,
        settings: &settings,
        chat_extra: args.chatapp_args.clone(),
        server_cpu: Some(args.server_cpu),
        verbose: true,
        database: None,
        others: Vec::new(),
        nodes: 1,
        balancer: None,
    };
    let load0 = output("cut", &["-d", " ", "-f1", "/proc/loadavg"]);
    let r = bench.s6()?;
    let load1 = output("cut", &["-d", " ", "-f1", "/proc/loadavg"]);
    let n = r.resume.clients;
    let met = r.resume.failures == 0 && r.resume.secs <= 5.0;
    println!("Command: `{}`", args.command);
    println!(
        "Date: {}; chatapp: {} {}",
        output("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
        output(&args.chatapp.display().to_string(), &["--version"]),
        args.revision
    );
    println!("Machine: {}", probe::machine());
    println!("Load: 1-minute load average {load0} before, {load1} after");
    if !args.chatapp_args.is_empty() {
        println!("chatapp: `serve {}`", args.chatapp_args.join(" "));
    }
    println!();
    println!(
        "| storm (server at the default scrypt cost, log2 N = {}) | clients | back | time to all back | rate | server CPU per session | connect to caught up p50 / p99 | failures |",
        r.scrypt_log_n
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    println!(
        "{}",
        row(
            "resume with token + catch_up, after SIGKILL and restart",
            &r.resume,
            None
        )
    );
    println!(
        "{}",
        row(
            "password login + catch_up, default scrypt cost",
            &r.password,
            (r.password.clients < n).then_some(n)
        )
    );
    println!();
    println!(
        "Setup (not measured as a storm): {} password logins at scrypt log2 N = {} in {:.1} s, then one private message each; the restarted server (same data directory) took {:.2} s from its start to listening. Resumes in flight at once: {}; password logins in flight at once: {}.",
        r.setup.back,
        settings.low_log_n,
        r.setup.secs,
        r.restart_secs,
        settings.s6_in_flight,
        settings.s6_password_in_flight
    );
    println!(
        "Target (all {n} back within 5 s): {}",
        if met { "met" } else { "missed" }
    );
    for (what, s) in [("resume", &r.resume), ("password", &r.password)] {
        for p in &s.problems {
            println!("- {what}: {p}");
        }
    }
    Ok(())
}
