//! `loadgen bench`: runs the scenarios against ngircd, InspIRCd and chatapp,
//! each started fresh and pinned to one CPU, and writes the report.

use chatapp_loadgen::probe;
use chatapp_loadgen::report::{self, Meta};
use chatapp_loadgen::scenario::{Bench, Row, SCENARIOS, Settings};
use chatapp_loadgen::server::{Kind, Paths};
use clap::Parser;
use std::path::PathBuf;
use std::process::Command;

#[derive(Parser)]
#[command(about = "chatapp's side-by-side benchmark against two IRC servers")]
struct Args {
    /// The chatapp binary to measure (a release build).
    #[arg(long)]
    chatapp: PathBuf,
    /// Where the ngircd and InspIRCd packages were unpacked.
    #[arg(long)]
    pkgroot: PathBuf,
    /// The peers' configuration templates.
    #[arg(long)]
    peers: PathBuf,
    /// Scratch directory (data directories, logs).
    #[arg(long)]
    work: PathBuf,
    /// The Markdown file to write the tables into (between its markers).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Servers to run, comma-separated.
    #[arg(long, default_value = "ngircd,inspircd,chatapp", value_delimiter = ',')]
    servers: Vec<String>,
    /// Scenarios to run, comma-separated (s1, s2burst, s2room, s3, s4, s5).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Everything ten times smaller and shorter: a trial run.
    #[arg(long)]
    quick: bool,
    /// Seconds each rate step sends for.
    #[arg(long)]
    step_secs: Option<f64>,
    /// Rates (messages a second) for the rate steps of S2, S3 and S4,
    /// replacing the scenarios' own (for profiling one step).
    #[arg(long, value_delimiter = ',')]
    rates: Vec<f64>,
    /// S4 with conversations that repeat: each client writes to its next
    /// K clients in turn instead of to a new one every round.
    #[arg(long, value_name = "K")]
    s4_partners: Option<usize>,
    /// CPU the servers are pinned to (the load generator should be pinned
    /// to another one by its caller).
    #[arg(long, default_value_t = 0)]
    server_cpu: usize,
    /// Run chatapp on this PostgreSQL database instead of SQLite (every
    /// table in it is dropped before each scenario: give it a scratch one).
    #[arg(long, value_name = "URL")]
    database: Option<String>,
    /// Also measure, per delivery, the CPU of every process of each of
    /// these names (e.g. `postgres,redis-server,haproxy`: the database,
    /// the bus and the balancer beside chatapp), comma-separated.
    #[arg(long, value_name = "NAMES", value_delimiter = ',')]
    measure: Vec<String>,
    /// Run this many chatapp servers, on ports after 17878, sharing
    /// `--database` and the bus given with `--chatapp-arg=--bus`, behind
    /// HAProxy run from `--balancer` (S2 to S4 only).
    #[arg(long, default_value_t = 1)]
    nodes: usize,
    /// The HAProxy configuration for `--nodes`: it binds 127.0.0.1:17878
    /// and names the servers 127.0.0.1:17879, :17880, ...
    #[arg(long, value_name = "FILE")]
    balancer: Option<PathBuf>,
    /// Another argument for `chatapp serve` (repeatable).
    #[arg(long = "chatapp-arg", allow_hyphen_values = true)]
    chatapp_args: Vec<String>,
    /// The command line to quote in the report.
    #[arg(long, default_value = "bench/run.sh")]
    command: String,
    /// What to say about the revision measured.
    #[arg(long, default_value = "")]
    revision: String,
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut settings = if args.quick {
        Settings::quick()
    } else {
        Settings::full()
    };
    if let Some(s) = args.step_secs {
        settings.step_secs = s;
    }
    if !args.rates.is_empty() {
        settings.s2_rates = args.rates.clone();
        settings.s3_rates = args.rates.clone();
        settings.s4_rates = args.rates.clone();
    }
    if let Some(k) = args.s4_partners {
        anyhow::ensure!(k >= 1, "--s4-partners must be at least 1");
        settings.s4_partners = Some(k);
    }
    let kinds: Vec<Kind> = args
        .servers
        .iter()
        .map(|s| Kind::parse(s).ok_or_else(|| anyhow::anyhow!("unknown server {s}")))
        .collect::<anyhow::Result<_>>()?;
    let only: Vec<String> = if args.only.is_empty() {
        SCENARIOS.iter().map(|s| s.to_string()).collect()
    } else {
        args.only.clone()
    };
    if args.nodes > 1 {
        anyhow::ensure!(
            args.database.is_some() && args.balancer.is_some(),
            "--nodes {} needs --database (the servers share it) and --balancer (HAProxy's configuration)",
            args.nodes
        );
        anyhow::ensure!(
            only.iter()
                .all(|s| matches!(s.as_str(), "s2burst" | "s2room" | "s3" | "s4")),
            "--nodes measures S2 to S4 only (--only s2burst,s2room,s3,s4)"
        );
    }
    std::fs::create_dir_all(&args.work)?;
    let paths = Paths {
        chatapp: args.chatapp.clone(),
        pkgroot: args.pkgroot.clone(),
        peers: args.peers.clone(),
        work: args.work.clone(),
    };
    let bench = Bench {
        paths: &paths,
        settings: &settings,
        chat_extra: args.chatapp_args.clone(),
        server_cpu: Some(args.server_cpu),
        verbose: true,
        database: args.database.clone(),
        others: args.measure.clone(),
        nodes: args.nodes,
        balancer: args.balancer.clone(),
    };
    let load_start = loadavg();
    let started = std::time::Instant::now();
    let mut rows: Vec<Row> = Vec::new();
    for scenario in &only {
        for &kind in &kinds {
            eprintln!(
                "loadgen: [{:>4.0} s] {scenario} on {}",
                started.elapsed().as_secs_f64(),
                kind.name()
            );
            match bench.run_scenario(scenario, kind) {
                Ok(mut got) => {
                    for r in &got {
                        eprintln!("loadgen:   {r:?}");
                    }
                    rows.append(&mut got);
                }
                Err(e) => {
                    eprintln!("loadgen:   {scenario} on {} failed: {e:#}", kind.name());
                    rows.push(Row {
                        scenario: scenario.to_uppercase(),
                        step: "(did not run)".into(),
                        server: kind.name().into(),
                        problems: vec![format!("{e:#}")],
                        ..Row::default()
                    });
                }
            }
        }
    }
    let minutes = started.elapsed().as_secs_f64() / 60.0;
    let version = Command::new(&args.chatapp)
        .arg("--version")
        .stdin(std::process::Stdio::null())
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let date = Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let meta = Meta {
        date,
        machine: probe::machine(),
        command: args.command.clone(),
        chatapp_version: format!("{version} {}", args.revision).trim().to_string(),
        load_note: format!(
            "1-minute load average {load_start} before the run, {} after it; the run took {minutes:.1} minutes",
            loadavg()
        ),
        settings: format!(
            "each rate step sends for {} s and waits up to {} s for the last deliveries; {}-byte message texts; servers pinned to CPU {}, load generator on the other; connects in flight: chatapp {}, ngircd {}, InspIRCd {}; S5 storm: {} logins in flight; chatapp: {}",
            settings.step_secs,
            settings.drain_secs,
            settings.text_len,
            args.server_cpu,
            settings.chatapp_concurrency,
            settings.ngircd_concurrency,
            settings.inspircd_concurrency,
            settings.s5_storm,
            {
                let store = match &args.database {
                    Some(_) => {
                        "PostgreSQL (synchronous_commit=on), emptied before each scenario, pinned to the servers' CPU"
                    }
                    None => "SQLite synchronous=FULL",
                };
                let store = if args.nodes > 1 {
                    format!(
                        "{} servers sharing the database, behind HAProxy (pinned to the servers' CPU, configuration {}), {store}",
                        args.nodes,
                        args.balancer
                            .as_ref()
                            .map_or(String::new(), |b| b.display().to_string())
                    )
                } else {
                    store.to_string()
                };
                if args.chatapp_args.is_empty() {
                    format!(
                        "its default per-client throttles (messages: burst 10 then 5/s; requests: burst 50 then 20/s), {store}"
                    )
                } else {
                    format!("`serve {}`, {store}", args.chatapp_args.join(" "))
                }
            }
        ),
    };
    let text = report::render(&rows, &meta);
    match &args.out {
        Some(path) => {
            report::write_into(path, &text)?;
            eprintln!("loadgen: wrote {}", path.display());
        }
        None => println!("{text}"),
    }
    Ok(())
}
