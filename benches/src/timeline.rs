//! `--timeline`: the measured answers of a run in fixed windows of their completion time,
//! each with its count and latency quantiles. A tail that comes from stalls (a snapshot, a
//! segment roll, a slow disk flush) shows as a few windows far above the rest; a tail spread
//! evenly over every window comes from how the queues serve requests in the steady state.

use serde::Serialize;

/// One window of completion times.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Window {
    /// Start of the window, ms after the measured time began.
    pub start_ms: u64,
    /// Answers completed in it.
    pub answers: usize,
    /// Latency quantiles of those answers, ms.
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// `samples` as (completion offset µs, latency µs), in windows of `width_ms`; windows
/// without answers are left out.
pub fn windows(mut samples: Vec<(u64, u64)>, width_ms: u64) -> Vec<Window> {
    let width_us = width_ms.max(1) * 1000;
    samples.sort_unstable_by_key(|&(end, latency)| (end / width_us, latency));
    samples
        .chunk_by(|a, b| a.0 / width_us == b.0 / width_us)
        .map(|w| {
            // Sorted by latency within the window: quantiles are positions.
            let at = |q: f64| w[((w.len() - 1) as f64 * q).round() as usize].1 as f64 / 1000.0;
            Window {
                start_ms: w[0].0 / width_us * width_ms.max(1),
                answers: w.len(),
                p50_ms: at(0.5),
                p99_ms: at(0.99),
                max_ms: at(1.0),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_fall_in_the_window_of_their_completion() {
        // 100 answers in the first 100 ms with latencies 1..=100 ms, one slow one at 250 ms.
        let mut samples: Vec<(u64, u64)> = (1..=100u64).map(|i| (i * 990, i * 1000)).collect();
        samples.push((250_000, 400_000));
        let w = windows(samples, 100);
        assert_eq!(
            w.len(),
            2,
            "the empty window 100..200 ms is left out: {w:?}"
        );
        assert_eq!((w[0].start_ms, w[0].answers), (0, 100));
        assert_eq!((w[0].p50_ms, w[0].p99_ms, w[0].max_ms), (51.0, 99.0, 100.0));
        assert_eq!(
            w[1],
            Window {
                start_ms: 200,
                answers: 1,
                p50_ms: 400.0,
                p99_ms: 400.0,
                max_ms: 400.0
            }
        );
        assert!(windows(Vec::new(), 100).is_empty());
    }
}
