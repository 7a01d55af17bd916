//! The scenarios of the benchmark, each against one fresh server, turned
//! into [`Row`]s for the report.

use crate::engine::{ConnectReport, Engine, LoadSpec, Proto, StepReport, StormSpec, Traffic};
use crate::server::{self, Accounts, ChatOptions, Kind, PASSWORD, Paths};
use std::time::Duration;

/// Sizes, rates and durations. [`Settings::full`] is the issue's; tests and
/// trial runs use smaller ones.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Seconds each rate step sends for.
    pub step_secs: f64,
    /// Seconds to wait for the last deliveries of a step.
    pub drain_secs: f64,
    pub text_len: usize,
    pub s1_clients: usize,
    pub s2_burst_members: usize,
    pub s2_burst_messages: usize,
    pub s2_room: usize,
    pub s2_rates: Vec<f64>,
    pub s3_rooms: usize,
    pub s3_size: usize,
    pub s3_rates: Vec<f64>,
    pub s4_clients: usize,
    pub s4_rates: Vec<f64>,
    /// S4's partners per client, when they repeat (`None`: a new one each
    /// round, the bench's own S4).
    pub s4_partners: Option<usize>,
    pub s5_chatters: usize,
    pub s5_rate: f64,
    /// Logins in flight at once during the storm.
    pub s5_storm: usize,
    /// S6: clients that log in, then resume after the server's crash.
    pub s6_clients: usize,
    /// S6: clients of the password storm at the default scrypt cost (fewer:
    /// each costs a good fraction of a second of the server's one core).
    pub s6_password_clients: usize,
    /// S6: resumes in flight at once (connecting, handshaking, resuming
    /// or catching up): a client starts as soon as fewer are under way.
    pub s6_in_flight: usize,
    /// S6: password logins in flight at once (each waits for scrypt; more
    /// would only queue them past the server's login timeout).
    pub s6_password_in_flight: usize,
    /// scrypt cost (log2 N) for every scenario but S5's storm.
    pub low_log_n: u8,
    /// Connections in flight during a connect phase, per server.
    pub chatapp_concurrency: usize,
    pub ngircd_concurrency: usize,
    pub inspircd_concurrency: usize,
}

impl Settings {
    pub fn full() -> Settings {
        Settings {
            step_secs: 10.0,
            drain_secs: 5.0,
            text_len: 64,
            s1_clients: 5000,
            s2_burst_members: 100,
            s2_burst_messages: 300,
            s2_room: 1000,
            s2_rates: vec![100.0, 500.0, 2000.0],
            s3_rooms: 200,
            s3_size: 10,
            s3_rates: vec![2_000.0, 10_000.0, 50_000.0],
            s4_clients: 5000,
            s4_rates: vec![5_000.0, 20_000.0, 50_000.0, 100_000.0],
            s4_partners: None,
            s5_chatters: 100,
            s5_rate: 100.0,
            s5_storm: 16,
            s6_clients: 5000,
            s6_password_clients: 200,
            s6_password_in_flight: 16,
            s6_in_flight: 1000,
            low_log_n: 4,
            chatapp_concurrency: 100,
            ngircd_concurrency: 8,
            inspircd_concurrency: 2000,
        }
    }

    /// Everything ten times smaller and shorter: a trial run.
    pub fn quick() -> Settings {
        Settings {
            step_secs: 2.0,
            drain_secs: 2.0,
            s1_clients: 500,
            s2_burst_members: 20,
            s2_burst_messages: 30,
            s2_room: 100,
            s2_rates: vec![10.0, 50.0, 200.0],
            s3_rooms: 20,
            s3_rates: vec![200.0, 1_000.0, 5_000.0],
            s4_clients: 500,
            s4_rates: vec![500.0, 2_000.0, 5_000.0, 10_000.0],
            s4_partners: None,
            s5_chatters: 20,
            s5_rate: 20.0,
            s5_storm: 4,
            s6_clients: 500,
            s6_password_clients: 20,
            s6_password_in_flight: 4,
            s6_in_flight: 100,
            ..Settings::full()
        }
    }

    fn concurrency(&self, kind: Kind) -> usize {
        match kind {
            Kind::Chatapp => self.chatapp_concurrency,
            Kind::Ngircd => self.ngircd_concurrency,
            Kind::Inspircd => self.inspircd_concurrency,
        }
    }
}

/// One line of results: a scenario step on one server. Fields that do not
/// apply stay `None`.
#[derive(Debug, Clone, Default)]
pub struct Row {
    /// "S1" .. "S5".
    pub scenario: String,
    /// What was run, e.g. "1,000 members @ 500/s".
    pub step: String,
    pub server: String,
    /// Offered messages a second (for the max sustainable rate).
    pub rate: Option<f64>,
    pub deliveries_per_sec: Option<f64>,
    pub delivered: Option<u64>,
    pub expected: Option<u64>,
    pub lost: Option<u64>,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub p999_ms: Option<f64>,
    /// Every chatapp server's CPU (several behind a balancer: summed).
    pub cpu_us_per_delivery: Option<f64>,
    /// The other processes measured (database, bus, balancer), by name,
    /// per delivery.
    pub others_cpu_us_per_delivery: Vec<(String, f64)>,
    /// Of several servers: the share of deliveries that crossed from one
    /// server to another, and their p99.
    pub across_share: Option<f64>,
    pub across_p99_ms: Option<f64>,
    pub peak_rss_mib: Option<f64>,
    pub disconnects: u64,
    /// Messages refused by the server's rate limit.
    pub rate_limited: u64,
    pub loadgen_cpu_pct: Option<f64>,
    // S1
    pub connects_per_sec: Option<f64>,
    pub connected: Option<usize>,
    pub reg_p50_ms: Option<f64>,
    pub reg_p99_ms: Option<f64>,
    pub rss_per_conn_kib: Option<f64>,
    pub cpu_us_per_login: Option<f64>,
    // S5
    pub storm_logins: Option<u64>,
    pub storm_logins_per_sec: Option<f64>,
    pub storm_login_p99_ms: Option<f64>,
    /// Problems seen, for the notes.
    pub problems: Vec<String>,
}

impl Row {
    fn new(scenario: &str, step: String, kind: Kind) -> Row {
        Row {
            scenario: scenario.into(),
            step,
            server: kind.name().into(),
            ..Row::default()
        }
    }

    pub fn delivered_ratio(&self) -> Option<f64> {
        match (self.delivered, self.expected) {
            (Some(d), Some(e)) if e > 0 => Some(d as f64 / e as f64),
            (Some(_), Some(_)) => Some(1.0),
            _ => None,
        }
    }

    /// At least 99.9 % delivered and p99 under 100 ms.
    pub fn sustained(&self) -> bool {
        self.delivered_ratio().is_some_and(|r| r >= 0.999)
            && self.p99_ms.is_some_and(|p| p < 100.0)
            && self.expected.is_some_and(|e| e > 0)
    }

    fn with_step(mut self, r: &StepReport) -> Row {
        let t = &r.tracker;
        self.deliveries_per_sec = Some(r.deliveries_per_sec());
        self.delivered = Some(t.delivered);
        self.expected = Some(t.expected);
        self.lost = Some(t.lost());
        self.p50_ms = Some(t.latency.quantile(0.5) as f64 / 1000.0);
        self.p99_ms = Some(t.latency.quantile(0.99) as f64 / 1000.0);
        self.p999_ms = Some(t.latency.quantile(0.999) as f64 / 1000.0);
        self.cpu_us_per_delivery = Some(r.cpu_us_per_delivery());
        self.others_cpu_us_per_delivery = r
            .others_cpu_us
            .iter()
            .map(|(name, us)| (name.clone(), *us as f64 / t.delivered.max(1) as f64))
            .collect();
        if t.across > 0 {
            self.across_share = Some(t.across as f64 / t.delivered.max(1) as f64);
            self.across_p99_ms = Some(t.across_latency.quantile(0.99) as f64 / 1000.0);
        }
        self.peak_rss_mib = Some(r.peak_rss_kib as f64 / 1024.0);
        self.disconnects = r.stats.disconnects;
        self.rate_limited = t.refused;
        self.loadgen_cpu_pct = Some(r.loadgen_cpu_us as f64 / (r.secs * 1e4));
        self.problems = problems(r);
        self
    }
}

fn problems(r: &StepReport) -> Vec<String> {
    let t = &r.tracker;
    let mut out: Vec<String> = r
        .stats
        .problems
        .iter()
        .map(|(what, n)| format!("{n} x {what}"))
        .collect();
    for (n, what) in [
        (t.duplicates, "duplicate deliveries"),
        (t.unknown, "deliveries of unknown messages"),
        (t.failed, "messages refused with an error"),
        (t.unsent, "messages not sent (sender gone)"),
        (r.stats.stale, "late deliveries from an earlier step"),
    ] {
        if n > 0 {
            out.push(format!("{n} {what}"));
        }
    }
    if r.send_lag_us > 50_000 {
        out.push(format!(
            "the last message left {:.0} ms after its schedule (sending fell behind: the load generator was busy taking deliveries, or the server stopped reading)",
            r.send_lag_us as f64 / 1000.0
        ));
    }
    out
}

fn fmt_count(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

pub fn fmt_rate(r: f64) -> String {
    fmt_count(r.round() as usize)
}

/// A server under test plus an engine for it.
pub struct Bench<'a> {
    pub paths: &'a Paths,
    pub settings: &'a Settings,
    /// chatapp options besides the scrypt cost.
    pub chat_extra: Vec<String>,
    /// CPU for the servers (`None`: not pinned).
    pub server_cpu: Option<usize>,
    /// Log progress to stderr.
    pub verbose: bool,
    /// chatapp on this PostgreSQL database (emptied before each scenario)
    /// instead of SQLite.
    pub database: Option<String>,
    /// Also measure the CPU of every process of each of these names (the
    /// database server's, e.g. `postgres`; Redis's; HAProxy's) per
    /// delivery.
    pub others: Vec<String>,
    /// More than one: run that many chatapp servers sharing `database`
    /// and the bus in `chat_extra`, behind HAProxy run from `balancer`.
    pub nodes: usize,
    pub balancer: Option<std::path::PathBuf>,
}

fn client_name(i: usize) -> String {
    format!("c{i}")
}

impl Bench<'_> {
    fn say(&self, what: &str) {
        if self.verbose {
            eprintln!("loadgen: {what}");
        }
    }

    /// Starts `kind` fresh (for chatapp: with `accounts` and `log_n`) and
    /// returns it with an engine of `n` clients.
    fn start(
        &self,
        kind: Kind,
        n: usize,
        accounts: &[Accounts],
        log_n: Option<u8>,
    ) -> anyhow::Result<(server::Servers, Engine)> {
        if kind == Kind::Chatapp {
            server::seed(
                &self.paths.work.join("chatapp-data"),
                accounts,
                self.database.as_deref(),
            )?;
        }
        let mut extra = self.chat_extra.clone();
        if let Some(url) = &self.database {
            extra.extend(["--database".to_string(), url.clone()]);
        }
        let chat = ChatOptions {
            scrypt_log_n: log_n,
            extra,
            log: None,
        };
        let running = match (&self.balancer, kind) {
            (Some(config), Kind::Chatapp) if self.nodes > 1 => server::start_behind_balancer(
                self.paths,
                &chat,
                self.server_cpu,
                self.nodes,
                config,
            )?,
            _ => server::Servers::alone(server::start(kind, self.paths, &chat, self.server_cpu)?),
        };
        let proto = match kind {
            Kind::Chatapp => Proto::Chat {
                password: PASSWORD.into(),
            },
            _ => Proto::Irc,
        };
        let mut engine = Engine::new(running.addr, proto, n, client_name)?;
        engine.probes = running.probes();
        engine.others = self.others.clone();
        Ok((running, engine))
    }

    fn clients(&self, n: usize) -> Vec<Accounts> {
        vec![Accounts {
            prefix: "c".into(),
            count: n,
            log_n: self.settings.low_log_n,
        }]
    }

    fn connect(&self, kind: Kind, engine: &mut Engine, n: usize) -> anyhow::Result<ConnectReport> {
        let timeout = Duration::from_secs(30 + (n / 50) as u64);
        let report = engine.connect(0..n, self.settings.concurrency(kind), timeout);
        self.say(&format!(
            "{}: {} of {n} clients logged in in {:.1} s",
            kind.name(),
            report.ok,
            report.secs
        ));
        if report.ok < n {
            anyhow::bail!(
                "{}: only {} of {n} clients logged in ({:?})",
                kind.name(),
                report.ok,
                engine.stats.problems
            );
        }
        Ok(report)
    }

    fn rooms(&self, kind: Kind, engine: &mut Engine, rooms: &[Vec<usize>]) -> anyhow::Result<()> {
        let want: usize = rooms.iter().map(Vec::len).sum();
        let timeout = Duration::from_secs(30 + (want / 20) as u64);
        let got = engine.join_rooms(rooms, timeout);
        if got < want {
            anyhow::bail!(
                "{}: only {got} of {want} clients got into their rooms ({:?})",
                kind.name(),
                engine.stats.problems
            );
        }
        Ok(())
    }

    fn step(
        &self,
        engine: &mut Engine,
        rate: Option<f64>,
        total: u64,
        traffic: Traffic,
    ) -> StepReport {
        let spec = LoadSpec {
            rate,
            total,
            traffic,
            drain: Duration::from_secs_f64(self.settings.drain_secs),
            text_len: self.settings.text_len,
            storm: None,
        };
        engine.run(&spec)
    }

    fn steps_total(&self, rate: f64) -> u64 {
        (rate * self.settings.step_secs).round() as u64
    }

    /// S1: connect storm.
    pub fn s1(&self, kind: Kind) -> anyhow::Result<Vec<Row>> {
        let n = self.settings.s1_clients;
        let (running, mut engine) =
            self.start(kind, n, &self.clients(n), Some(self.settings.low_log_n))?;
        std::thread::sleep(Duration::from_millis(300));
        let probe = running.nodes[0].probe;
        let rss0 = probe.rss_kib();
        let cpu0 = probe.cpu_us();
        let report = self.connect(kind, &mut engine, n);
        let cpu = probe.cpu_us() - cpu0;
        let mut row = Row::new(
            "S1",
            format!("{} clients connect and stay", fmt_count(n)),
            kind,
        );
        match report {
            Ok(report) => {
                engine.idle(Duration::from_secs(2));
                let rss = probe.rss_kib();
                row.connected = Some(report.ok);
                row.connects_per_sec = Some(report.ok as f64 / report.secs);
                row.reg_p50_ms = Some(report.registration.quantile(0.5) as f64 / 1000.0);
                row.reg_p99_ms = Some(report.registration.quantile(0.99) as f64 / 1000.0);
                row.rss_per_conn_kib = Some(rss.saturating_sub(rss0) as f64 / report.ok as f64);
                row.cpu_us_per_login = Some(cpu as f64 / report.ok.max(1) as f64);
                row.peak_rss_mib = Some(probe.peak_kib() as f64 / 1024.0);
                row.disconnects = engine.stats.disconnects;
                row.loadgen_cpu_pct = Some(report.loadgen_cpu_us as f64 / (report.secs * 1e4));
            }
            Err(e) => row.problems.push(e.to_string()),
        }
        row.problems.extend(
            engine
                .stats
                .problems
                .iter()
                .map(|(w, n)| format!("{n} x {w}")),
        );
        engine.close_range(0..n);
        running.stop();
        Ok(vec![row])
    }

    /// S2, first part: 100 members each sending 300 messages at once.
    pub fn s2_burst(&self, kind: Kind) -> anyhow::Result<Vec<Row>> {
        let (m, per) = (
            self.settings.s2_burst_members,
            self.settings.s2_burst_messages,
        );
        let (running, mut engine) =
            self.start(kind, m, &self.clients(m), Some(self.settings.low_log_n))?;
        let step = format!("burst: {m} members x {per} messages");
        let result = self.connect(kind, &mut engine, m).and_then(|_| {
            self.rooms(kind, &mut engine, &[(0..m).collect()])?;
            engine.idle(Duration::from_millis(500));
            let slots = (0..m).map(|c| (c, (m - 1) as u32)).collect();
            let spec = LoadSpec {
                rate: None,
                total: (m * per) as u64,
                traffic: Traffic::Rooms(slots),
                drain: Duration::from_secs_f64(self.settings.drain_secs.max(30.0)),
                text_len: self.settings.text_len,
                storm: None,
            };
            Ok(engine.run(&spec))
        });
        let row = match result {
            Ok(r) => Row::new("S2", step, kind).with_step(&r),
            Err(e) => {
                let mut row = Row::new("S2", step, kind);
                row.problems.push(e.to_string());
                row
            }
        };
        running.stop();
        Ok(vec![row])
    }

    /// Steps of room traffic (S2's big room, S3's small rooms).
    fn room_steps(
        &self,
        kind: Kind,
        scenario: &str,
        rooms: Vec<Vec<usize>>,
        rates: &[f64],
        label: &dyn Fn(f64) -> String,
    ) -> anyhow::Result<Vec<Row>> {
        let n: usize = rooms.iter().map(Vec::len).sum();
        let (running, mut engine) =
            self.start(kind, n, &self.clients(n), Some(self.settings.low_log_n))?;
        let setup = self
            .connect(kind, &mut engine, n)
            .and_then(|_| self.rooms(kind, &mut engine, &rooms));
        // Round robin across rooms: consecutive messages go to different rooms.
        let longest = rooms.iter().map(Vec::len).max().unwrap_or(0);
        let mut slots = Vec::new();
        for pos in 0..longest {
            for room in &rooms {
                if let Some(&c) = room.get(pos) {
                    slots.push((c, (room.len() - 1) as u32));
                }
            }
        }
        let mut rows = Vec::new();
        for &rate in rates {
            let mut row = Row::new(scenario, label(rate), kind);
            row.rate = Some(rate);
            match &setup {
                Ok(()) => {
                    engine.idle(Duration::from_millis(500));
                    self.say(&format!("{}: {scenario} {}", kind.name(), label(rate)));
                    let r = self.step(
                        &mut engine,
                        Some(rate),
                        self.steps_total(rate),
                        Traffic::Rooms(slots.clone()),
                    );
                    row = row.with_step(&r);
                }
                Err(e) => row.problems.push(e.to_string()),
            }
            rows.push(row);
        }
        running.stop();
        Ok(rows)
    }

    /// S2, second part: one room of 1,000 members at rising rates.
    pub fn s2_room(&self, kind: Kind) -> anyhow::Result<Vec<Row>> {
        let n = self.settings.s2_room;
        let label = |r: f64| format!("{} members @ {}/s", fmt_count(n), fmt_rate(r));
        self.room_steps(
            kind,
            "S2",
            vec![(0..n).collect()],
            &self.settings.s2_rates,
            &label,
        )
    }

    /// S3: many small rooms.
    pub fn s3(&self, kind: Kind) -> anyhow::Result<Vec<Row>> {
        let (k, size) = (self.settings.s3_rooms, self.settings.s3_size);
        let rooms = (0..k)
            .map(|r| (r * size..(r + 1) * size).collect())
            .collect();
        let label = |r: f64| format!("{k} rooms x {size} @ {}/s", fmt_rate(r));
        self.room_steps(kind, "S3", rooms, &self.settings.s3_rates, &label)
    }

    /// S4: private messages.
    pub fn s4(&self, kind: Kind) -> anyhow::Result<Vec<Row>> {
        let n = self.settings.s4_clients;
        let (running, mut engine) =
            self.start(kind, n, &self.clients(n), Some(self.settings.low_log_n))?;
        let setup = self.connect(kind, &mut engine, n);
        let mut rows = Vec::new();
        for &rate in &self.settings.s4_rates {
            let label = match self.settings.s4_partners {
                None => format!("{} clients, {}/s", fmt_count(n), fmt_rate(rate)),
                Some(k) => format!(
                    "{} clients, {k} partners each, {}/s",
                    fmt_count(n),
                    fmt_rate(rate)
                ),
            };
            let mut row = Row::new("S4", label.clone(), kind);
            row.rate = Some(rate);
            match &setup {
                Ok(_) => {
                    engine.idle(Duration::from_millis(500));
                    self.say(&format!("{}: S4 {label}", kind.name()));
                    let r = self.step(
                        &mut engine,
                        Some(rate),
                        self.steps_total(rate),
                        Traffic::Private((0..n).collect(), self.settings.s4_partners),
                    );
                    row = row.with_step(&r);
                }
                Err(e) => row.problems.push(e.to_string()),
            }
            rows.push(row);
        }
        running.stop();
        Ok(rows)
    }

    /// S5: chatters in a room, then the same with a login storm at the
    /// default scrypt cost alongside.
    pub fn s5(&self, kind: Kind) -> anyhow::Result<Vec<Row>> {
        let (n, slots) = (self.settings.s5_chatters, self.settings.s5_storm);
        let storm_accounts = 4000;
        let accounts = vec![
            Accounts {
                prefix: "c".into(),
                count: n,
                log_n: self.settings.low_log_n,
            },
            Accounts {
                prefix: "storm".into(),
                count: storm_accounts,
                log_n: chatapp::store::password::HashCost::default().log_n,
            },
        ];
        // The default cost: no --scrypt-log-n.
        let (running, mut engine) = self.start(kind, n + slots, &accounts, None)?;
        let setup = self
            .connect(kind, &mut engine, n)
            .and_then(|_| self.rooms(kind, &mut engine, &[(0..n).collect()]));
        let rate = self.settings.s5_rate;
        let total = self.steps_total(rate);
        let traffic = Traffic::Rooms((0..n).map(|c| (c, (n - 1) as u32)).collect());
        let mut rows = Vec::new();
        for storm in [false, true] {
            let label = format!(
                "{n} chatters @ {}/s, {}",
                fmt_rate(rate),
                if storm {
                    format!("with a login storm ({slots} in flight)")
                } else {
                    "no storm".into()
                }
            );
            let mut row = Row::new("S5", label.clone(), kind);
            row.rate = Some(rate);
            match &setup {
                Ok(()) => {
                    engine.idle(Duration::from_millis(500));
                    self.say(&format!("{}: S5 {label}", kind.name()));
                    let spec = LoadSpec {
                        rate: Some(rate),
                        total,
                        traffic: traffic.clone(),
                        drain: Duration::from_secs_f64(self.settings.drain_secs),
                        text_len: self.settings.text_len,
                        storm: storm.then(|| StormSpec {
                            slots: n..n + slots,
                            accounts: storm_accounts,
                        }),
                    };
                    let r = engine.run(&spec);
                    row = row.with_step(&r);
                    if let Some(s) = &r.storm {
                        row.storm_logins = Some(s.logins);
                        row.storm_logins_per_sec = Some(s.logins as f64 / r.secs);
                        row.storm_login_p99_ms = Some(s.latency.quantile(0.99) as f64 / 1000.0);
                        if s.failed > 0 {
                            row.problems
                                .push(format!("{} storm logins failed", s.failed));
                        }
                    }
                }
                Err(e) => row.problems.push(e.to_string()),
            }
            rows.push(row);
        }
        running.stop();
        Ok(rows)
    }
}

/// Scenario names accepted by `--only`.
pub const SCENARIOS: [&str; 6] = ["s1", "s2burst", "s2room", "s3", "s4", "s5"];

impl Bench<'_> {
    pub fn run_scenario(&self, name: &str, kind: Kind) -> anyhow::Result<Vec<Row>> {
        match name {
            "s1" => self.s1(kind),
            "s2burst" => self.s2_burst(kind),
            "s2room" => self.s2_room(kind),
            "s3" => self.s3(kind),
            "s4" => self.s4(kind),
            "s5" => self.s5(kind),
            other => anyhow::bail!("no scenario {other}; choose from {SCENARIOS:?}"),
        }
    }
}

/// One storm of S6: clients coming back to a restarted server.
#[derive(Debug, Clone, Default)]
pub struct Storm {
    pub clients: usize,
    /// Back in: logged in (by token or password) and their `catch_up`
    /// answered.
    pub back: usize,
    pub failures: usize,
    /// From the server's listening socket ready (or the storm's start) to
    /// the last client back, s.
    pub secs: f64,
    /// The server's CPU time (utime + stime) meanwhile, µs.
    pub server_cpu_us: u64,
    /// Connect to caught up, per client, ms.
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub problems: Vec<String>,
}

impl Storm {
    pub fn per_sec(&self) -> f64 {
        self.back as f64 / self.secs.max(1e-9)
    }

    pub fn cpu_ms_per_session(&self) -> f64 {
        self.server_cpu_us as f64 / 1000.0 / self.back.max(1) as f64
    }
}

/// S6's results.
#[derive(Debug, Clone, Default)]
pub struct Reconnect {
    /// Password logins before the crash (accounts at the low cost).
    pub setup: Storm,
    /// SIGKILL to the restarted server listening, s.
    pub restart_secs: f64,
    /// Everyone resuming with their tokens.
    pub resume: Storm,
    /// Password logins at the default scrypt cost (fewer clients).
    pub password: Storm,
    pub scrypt_log_n: u8,
}

fn storm_of(
    report: &ConnectReport,
    clients: usize,
    secs: f64,
    cpu_us: u64,
    stats: &crate::engine::Stats,
) -> Storm {
    Storm {
        clients,
        back: report.ok,
        failures: clients - report.ok,
        secs,
        server_cpu_us: cpu_us,
        p50_ms: report.registration.quantile(0.5) as f64 / 1000.0,
        p99_ms: report.registration.quantile(0.99) as f64 / 1000.0,
        problems: stats
            .problems
            .iter()
            .map(|(w, n)| format!("{n} x {w}"))
            .collect(),
    }
}

impl Bench<'_> {
    fn chat_options(&self) -> ChatOptions {
        // The default scrypt cost: no --scrypt-log-n.
        ChatOptions {
            scrypt_log_n: None,
            extra: self.chat_extra.clone(),
            log: None,
        }
    }

    /// S6, reconnect storm (chatapp only): `c0..` log in with their
    /// passwords (hashed at the low cost: setup, not measured) and send one
    /// private message each to the next; the server is killed with SIGKILL
    /// and restarted on the same data directory; every client reconnects,
    /// resumes with its token and catches up on its dialogue (measured).
    /// Then `pw0..` (hashed at the default cost) log in with passwords on
    /// the same server and catch up the same way (measured).
    pub fn s6(&self) -> anyhow::Result<Reconnect> {
        let (n, m) = (self.settings.s6_clients, self.settings.s6_password_clients);
        anyhow::ensure!(n >= 2 && m >= 2, "S6 needs at least 2 clients of each kind");
        let default_log_n = chatapp::store::password::HashCost::default().log_n;
        let data = self.paths.work.join("chatapp-data");
        server::seed(
            &data,
            &[
                Accounts {
                    prefix: "c".into(),
                    count: n,
                    log_n: self.settings.low_log_n,
                },
                Accounts {
                    prefix: "pw".into(),
                    count: m,
                    log_n: default_log_n,
                },
            ],
            self.database.as_deref(),
        )?;
        let running = server::start(
            Kind::Chatapp,
            self.paths,
            &self.chat_options(),
            self.server_cpu,
        )?;
        let names = move |i: usize| {
            if i < n {
                client_name(i)
            } else {
                format!("pw{}", i - n)
            }
        };
        let proto = Proto::Chat {
            password: PASSWORD.into(),
        };
        let mut engine = Engine::new(running.addr, proto, n + m, names)?;
        engine.probes = vec![running.probe];
        let mut out = Reconnect {
            scrypt_log_n: default_log_n,
            ..Reconnect::default()
        };

        // Setup: log in, one private message each, keep the tokens.
        let t0 = std::time::Instant::now();
        let cpu0 = running.probe.cpu_us();
        let report = self.connect(Kind::Chatapp, &mut engine, n)?;
        let stats = engine.take_stats();
        out.setup = storm_of(
            &report,
            n,
            t0.elapsed().as_secs_f64(),
            running.probe.cpu_us() - cpu0,
            &stats,
        );
        engine.idle(Duration::from_millis(300));
        let rate = (n as f64).clamp(100.0, 5000.0);
        let sent = self.step(
            &mut engine,
            Some(rate),
            n as u64,
            Traffic::Private((0..n).collect(), Some(1)),
        );
        let delivered = sent.tracker.delivered;
        anyhow::ensure!(
            delivered == n as u64,
            "only {delivered} of {n} private messages delivered before the crash ({:?})",
            problems(&sent)
        );
        let tokens = engine.tokens(0..n);
        anyhow::ensure!(tokens == n, "only {tokens} of {n} clients hold a token");

        // The crash. The clients see their connections end (bounded wait)
        // before the server comes back, so none of those ends is counted
        // in the storm.
        running.crash();
        self.say("chatapp: killed with SIGKILL");
        let noticed = std::time::Instant::now() + Duration::from_secs(5);
        while engine.alive(0..n) > 0 && std::time::Instant::now() < noticed {
            engine.idle(Duration::from_millis(20));
        }
        engine.close_range(0..n);
        engine.take_stats();
        self.say("chatapp: restarting on the same data directory");
        let started = std::time::Instant::now();
        let running = server::start(
            Kind::Chatapp,
            self.paths,
            &self.chat_options(),
            self.server_cpu,
        )?;
        let ready = std::time::Instant::now();
        out.restart_secs = ready.duration_since(started).as_secs_f64();
        let cpu0 = running.probe.cpu_us();
        engine.probes = vec![running.probe];

        // The resume storm, timed from the socket ready.
        engine.resume = true;
        engine.catch_up = Some(0..n);
        let timeout = Duration::from_secs(30 + (n / 50) as u64);
        let report = engine.connect(0..n, self.settings.s6_in_flight, timeout);
        let secs = ready.elapsed().as_secs_f64();
        let cpu = running.probe.cpu_us() - cpu0;
        let stats = engine.take_stats();
        out.resume = storm_of(&report, n, secs, cpu, &stats);
        self.say(&format!(
            "chatapp: {} of {n} resumed and caught up in {secs:.2} s",
            report.ok
        ));

        // The password storm at the default cost, on the same server.
        engine.idle(Duration::from_millis(500));
        engine.resume = false;
        engine.catch_up = Some(n..n + m);
        let t0 = std::time::Instant::now();
        let cpu0 = running.probe.cpu_us();
        let timeout = Duration::from_secs(30 + m as u64);
        let report = engine.connect(n..n + m, self.settings.s6_password_in_flight, timeout);
        let secs = t0.elapsed().as_secs_f64();
        let cpu = running.probe.cpu_us() - cpu0;
        let stats = engine.take_stats();
        out.password = storm_of(&report, m, secs, cpu, &stats);
        self.say(&format!(
            "chatapp: {} of {m} logged in with passwords and caught up in {secs:.2} s",
            report.ok
        ));
        engine.close_range(0..n + m);
        running.stop();
        Ok(out)
    }
}
