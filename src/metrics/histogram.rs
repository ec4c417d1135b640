//! A histogram whose `observe` is a few relaxed atomic adds: no lock, no
//! allocation, so it can sit on the hot path (prometheus-client's own
//! histogram takes a mutex per observation). It is encoded by
//! prometheus-client's encoder like any other metric.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::{MetricType, TypedMetric};

/// Fixed buckets, counted with atomics; clones share the counts (one is
/// registered, another observed).
#[derive(Debug, Clone)]
pub struct Histogram {
    /// Upper bounds, ascending; the last bucket (+Inf) is implicit.
    bounds: &'static [f64],
    /// One count per bound, then the +Inf bucket's (not cumulative).
    counts: Arc<[AtomicU64]>,
    /// The sum of observations, as `f64` bits.
    sum: Arc<AtomicU64>,
}

impl Histogram {
    /// A histogram with these upper bounds (ascending).
    pub fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: Arc::new(AtomicU64::new(0f64.to_bits())),
        }
    }

    /// Counts one observation.
    pub fn observe(&self, v: f64) {
        let i = self
            .bounds
            .iter()
            .position(|b| v <= *b)
            .unwrap_or(self.bounds.len());
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        // `fetch_update` retries only if another observation raced this one.
        let _ = self
            .sum
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                Some((f64::from_bits(bits) + v).to_bits())
            });
    }

    /// (sum, count, per-bucket counts with their upper bounds).
    fn snapshot(&self) -> (f64, u64, Vec<(f64, u64)>) {
        let buckets: Vec<(f64, u64)> = self
            .bounds
            .iter()
            .copied()
            .chain([f64::INFINITY])
            .zip(self.counts.iter().map(|c| c.load(Ordering::Relaxed)))
            .collect();
        let count = buckets.iter().map(|(_, n)| n).sum();
        (
            f64::from_bits(self.sum.load(Ordering::Relaxed)),
            count,
            buckets,
        )
    }
}

impl TypedMetric for Histogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for Histogram {
    fn encode(&self, mut encoder: MetricEncoder<'_>) -> Result<(), std::fmt::Error> {
        let (sum, count, buckets) = self.snapshot();
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

/// Histograms under one name with a label each, fixed at start (one per
/// class): encoded as a family, observed without a lookup.
#[derive(Debug, Clone)]
pub struct Labelled {
    /// The label's name.
    pub label: &'static str,
    /// Each label value and its histogram.
    pub parts: Vec<(&'static str, Histogram)>,
}

impl EncodeMetric for Labelled {
    fn encode(&self, mut encoder: MetricEncoder<'_>) -> Result<(), std::fmt::Error> {
        for (value, h) in &self.parts {
            let labels = [(self.label, *value)];
            h.encode(encoder.encode_family(&labels)?)?;
        }
        Ok(())
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_their_bucket_and_the_sum() {
        static B: [f64; 3] = [0.1, 1.0, 10.0];
        let h = Histogram::new(&B);
        for v in [0.05, 0.1, 0.5, 20.0] {
            h.observe(v);
        }
        let (sum, count, buckets) = h.snapshot();
        assert_eq!(count, 4);
        assert!((sum - 20.65).abs() < 1e-9);
        assert_eq!(
            buckets.iter().map(|b| b.1).collect::<Vec<_>>(),
            vec![2, 1, 0, 1]
        );
    }
}
