//! The run's figures: the summary printed at the end, and the JSON report.

use super::follow::Followed;
use super::percentile;
use serde_json::{json, Value};

/// Resident memory of one node over the run, MiB per second.
#[derive(Clone, Debug)]
pub struct Memory {
    pub name: String,
    pub pid: u32,
    pub rss_mib: Vec<f64>,
}

impl Memory {
    pub fn max(&self) -> f64 {
        self.rss_mib.iter().copied().fold(0.0, f64::max)
    }

    /// Least-squares slope, MiB per minute: the growth over the run, warm-up included (a
    /// node fills its caches, mempool and allocator arenas in its first seconds under load).
    pub fn slope_per_minute(&self) -> f64 {
        slope_per_minute(&self.rss_mib)
    }

    /// The highest reading in each of `parts` equal stretches of the run. Under load a
    /// node's memory is a sawtooth (memtables filled and flushed, allocator pages returned
    /// in waves) whose slope over a short stretch says little; a leak shows as peaks that
    /// keep rising from one stretch to the next, a flat node as peaks that level off.
    pub fn peaks(&self, parts: usize) -> Vec<f64> {
        let len = self.rss_mib.len();
        (0..parts)
            .map(|p| {
                let stretch = &self.rss_mib[len * p / parts..len * (p + 1) / parts];
                stretch.iter().copied().fold(0.0, f64::max)
            })
            .collect()
    }
}

/// Least-squares slope of one sample per second, in units per minute.
fn slope_per_minute(samples: &[f64]) -> f64 {
    let n = samples.len() as f64;
    if n < 2.0 {
        return 0.0;
    }
    let mean_x = (n - 1.0) / 2.0;
    let mean_y = samples.iter().sum::<f64>() / n;
    let (mut num, mut den) = (0.0, 0.0);
    for (x, y) in samples.iter().enumerate() {
        let dx = x as f64 - mean_x;
        num += dx * (y - mean_y);
        den += dx * dx;
    }
    num / den * 60.0
}

/// Resident memory of `pid` in MiB, from /proc.
pub fn rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

pub struct Summary {
    pub seconds: u64,
    pub warmup: u64,
    pub committed_in_run: u64,
    pub committed_tps: f64,
    pub sustained_tps: f64,
    pub p50: u32,
    pub p90: u32,
    pub p99: u32,
    pub max: u32,
    pub blocks: u64,
}

impl Summary {
    pub fn new(followed: &Followed, seconds: u64) -> Summary {
        let warmup = (seconds / 4).min(5);
        let in_run = |from: u64| -> u64 {
            followed
                .seconds
                .iter()
                .enumerate()
                .filter(|(s, _)| (*s as u64) >= from && (*s as u64) < seconds)
                .map(|(_, s)| s.committed)
                .sum()
        };
        let committed_in_run = in_run(0);
        let mut all: Vec<u32> =
            followed.seconds.iter().flat_map(|s| s.latencies_ms.iter().copied()).collect();
        all.sort_unstable();
        Summary {
            seconds,
            warmup,
            committed_in_run,
            committed_tps: committed_in_run as f64 / seconds.max(1) as f64,
            sustained_tps: in_run(warmup) as f64 / (seconds - warmup).max(1) as f64,
            p50: percentile(&all, 50.0),
            p90: percentile(&all, 90.0),
            p99: percentile(&all, 99.0),
            max: all.last().copied().unwrap_or(0),
            blocks: followed.seconds.iter().map(|s| s.blocks).sum(),
        }
    }
}

/// One row per second: committed txs and latency percentiles, and each node's memory.
pub fn series(followed: &Followed, memory: &[Memory]) -> Vec<Value> {
    let len = followed.seconds.len().max(memory.iter().map(|m| m.rss_mib.len()).max().unwrap_or(0));
    (0..len)
        .map(|t| {
            let second = followed.seconds.get(t).cloned().unwrap_or_default();
            let mut l = second.latencies_ms.clone();
            l.sort_unstable();
            json!({
                "second": t,
                "committed": second.committed,
                "blocks": second.blocks,
                "latency_p50_ms": percentile(&l, 50.0),
                "latency_p99_ms": percentile(&l, 99.0),
                "rss_mib": memory.iter().map(|m| m.rss_mib.get(t).copied()).collect::<Vec<_>>(),
            })
        })
        .collect()
}

pub fn memory_json(memory: &[Memory]) -> Vec<Value> {
    memory
        .iter()
        .map(|m| {
            json!({
                "node": m.name,
                "pid": m.pid,
                "rss_mib_first": m.rss_mib.first(),
                "rss_mib_last": m.rss_mib.last(),
                "rss_mib_max": m.max(),
                "rss_growth_mib_per_minute": m.slope_per_minute(),
                "rss_mib_max_by_third": m.peaks(3),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flat_series_has_no_slope_and_a_rising_one_has_its_own() {
        let flat = Memory { name: "a".into(), pid: 1, rss_mib: vec![100.0; 30] };
        assert!(flat.slope_per_minute().abs() < 1e-9);
        let rising = Memory {
            name: "b".into(),
            pid: 2,
            rss_mib: (0..30).map(|s| 100.0 + s as f64).collect(),
        };
        assert!((rising.slope_per_minute() - 60.0).abs() < 1e-9);
        assert_eq!(rising.peaks(3), [109.0, 119.0, 129.0]);
        assert_eq!(rising.max(), 129.0);
    }

    #[test]
    fn a_sawtooth_has_level_peaks_and_a_leak_rising_ones() {
        // Warm-up, then a 10 s sawtooth between 90 and 140: the fit from the first second
        // shows growth, the peaks by third do not.
        let tooth =
            |s: usize| if s < 10 { 50.0 + 4.0 * s as f64 } else { 90.0 + 5.0 * (s % 11) as f64 };
        let sawtooth = Memory { name: "c".into(), pid: 3, rss_mib: (0..60).map(tooth).collect() };
        assert!(sawtooth.slope_per_minute() > 10.0);
        assert_eq!(sawtooth.peaks(3), [140.0, 140.0, 140.0]);
        let leak = Memory {
            name: "d".into(),
            pid: 4,
            rss_mib: (0..60).map(|s| tooth(s) + s as f64).collect(),
        };
        let peaks = leak.peaks(3);
        assert!(peaks[0] < peaks[1] && peaks[1] < peaks[2], "{peaks:?}");
        let short = Memory { name: "e".into(), pid: 5, rss_mib: vec![7.0] };
        assert_eq!(short.peaks(3), [0.0, 0.0, 7.0]);
    }
}
