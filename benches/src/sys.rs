//! What the machine is doing while a run takes place: load average and CPU time, from
//! `/proc` (Linux). Every figure is printed next to them, because on a shared machine a rate
//! means little without the load it was measured under.

use std::time::Duration;

/// The 1-minute load average, from `/proc/loadavg`.
pub fn load_average() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    text.split_whitespace().next()?.parse().ok()
}

/// CPU time (user + system) process `pid` has used; `None` for `self` means "this process".
pub fn cpu_time(pid: Option<u32>) -> Option<Duration> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/stat"),
        None => "/proc/self/stat".to_string(),
    };
    let stat = std::fs::read_to_string(path).ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    // Linux reports in USER_HZ, 100 on every mainstream configuration.
    Some(Duration::from_millis((utime + stime) * 10))
}

/// CPU time summed over `pids` (`None` if any is unreadable).
pub fn cpu_time_of(pids: &[u32]) -> Option<Duration> {
    pids.iter().map(|&p| cpu_time(Some(p))).sum()
}
