//! A process's resident memory and CPU time, read from `/proc` (Linux).

use anyhow::Context as _;

/// Resident set size (`VmRSS` in `/proc/<pid>/status`), in bytes.
///
/// # Errors
/// If the process is gone or the file has no `VmRSS` line.
pub fn rss_bytes(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    parse_rss(&status).context("no VmRSS line")
}

fn parse_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// User plus system CPU time (`utime` + `stime`, fields 14 and 15 of `/proc/<pid>/stat`),
/// in seconds, given the clock tick rate (`getconf CLK_TCK`, 100 on Linux).
///
/// # Errors
/// If the process is gone or the line cannot be read.
pub fn cpu_seconds(pid: u32, clk_tck: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    let ticks = parse_cpu_ticks(&stat).context("unexpected /proc/<pid>/stat")?;
    #[expect(
        clippy::cast_precision_loss,
        reason = "ticks of one process fit in f64"
    )]
    Ok(ticks as f64 / f64::from(clk_tck.max(1)))
}

fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    // The command name (field 2) is in parentheses and may contain spaces: count from the
    // last ')'. After it come field 3 (state) onwards, so utime is the 12th, stime the 13th.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// The kernel's clock ticks per second, from `getconf CLK_TCK`; 100 if that fails.
pub fn clk_tck() -> u32 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_status_and_stat() {
        assert_eq!(
            parse_rss("Name:\tx\nVmRSS:\t   5120 kB\nVmData: 1 kB\n"),
            Some(5120 * 1024)
        );
        let stat = "123 (a b) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 1";
        assert_eq!(parse_cpu_ticks(stat), Some(300));
    }

    #[test]
    fn reads_this_process() {
        let pid = std::process::id();
        assert!(rss_bytes(pid).is_ok_and(|b| b > 0));
        assert!(cpu_seconds(pid, clk_tck()).is_ok());
    }
}
