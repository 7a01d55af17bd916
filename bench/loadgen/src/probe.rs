//! What a process costs, read from /proc: CPU time (all threads, user and
//! system), resident memory now and at its peak.

use std::fs;

#[derive(Debug, Clone, Copy)]
pub struct Probe {
    pub pid: u32,
}

fn ticks_per_second() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as u64 } else { 100 }
}

/// utime + stime of `/proc/<what>/stat`, in µs.
fn stat_cpu_us(what: &str) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{what}/stat")).ok()?;
    // The command name may hold spaces; fields resume after its `)`.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3, utime 14, stime 15 (1-based).
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) * 1_000_000 / ticks_per_second())
}

fn status_kib(what: &str, key: &str) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{what}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

impl Probe {
    /// CPU time used so far, µs (every thread, user + system).
    pub fn cpu_us(&self) -> u64 {
        stat_cpu_us(&self.pid.to_string()).unwrap_or(0)
    }

    pub fn rss_kib(&self) -> u64 {
        status_kib(&self.pid.to_string(), "VmRSS:").unwrap_or(0)
    }

    /// Peak resident memory since start or the last [`Probe::reset_peak`].
    pub fn peak_kib(&self) -> u64 {
        status_kib(&self.pid.to_string(), "VmHWM:").unwrap_or(0)
    }

    /// Resets the peak (needs permission over the process: we start it).
    pub fn reset_peak(&self) -> bool {
        fs::write(format!("/proc/{}/clear_refs", self.pid), "5").is_ok()
    }

    pub fn alive(&self) -> bool {
        fs::metadata(format!("/proc/{}", self.pid)).is_ok()
    }
}

/// CPU time used so far by every process named `name` (its `comm`, e.g.
/// `postgres`: the postmaster, its backends and background workers), µs.
pub fn named_cpu_us(name: &str) -> u64 {
    let Ok(dir) = fs::read_dir("/proc") else {
        return 0;
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str().map(str::to_owned))
        .filter(|pid| pid.bytes().all(|b| b.is_ascii_digit()))
        .filter(|pid| {
            fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim_end() == name)
        })
        .filter_map(|pid| stat_cpu_us(&pid))
        .sum()
}

/// CPU time this process (the load generator) used so far, µs.
pub fn self_cpu_us() -> u64 {
    stat_cpu_us("self").unwrap_or(0)
}

/// Cores and memory of this machine, for the report.
pub fn machine() -> String {
    // Not available_parallelism: that counts only the CPUs we are pinned to.
    // SAFETY: sysconf has no preconditions.
    let cores = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) }.max(0);
    let mem_kib = fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse::<u64>().ok())
        })
        .unwrap_or(0);
    let model = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    format!(
        "{cores} cores ({model}), {:.1} GiB memory",
        mem_kib as f64 / (1024.0 * 1024.0)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_its_own_process() {
        let me = Probe {
            pid: std::process::id(),
        };
        assert!(me.alive());
        assert!(me.rss_kib() > 0);
        assert!(me.peak_kib() >= me.rss_kib() / 2);
        let before = me.cpu_us();
        let mut x = 0u64;
        let start = std::time::Instant::now();
        while start.elapsed().as_millis() < 60 {
            x = x.wrapping_mul(31).wrapping_add(7);
        }
        std::hint::black_box(x);
        assert!(me.cpu_us() >= before);
        assert!(machine().contains("cores"));
    }
}
