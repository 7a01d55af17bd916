//! A log-linear histogram of microseconds: exact below 1,024 µs, then 1,024
//! buckets per power of two (relative error under 0.1 %), up to about 12
//! days. Fixed memory, constant-time recording: it can take millions of
//! samples a second without sorting anything.

const SUB_BITS: u32 = 10;
const SUB: u64 = 1 << SUB_BITS;
/// Powers of two covered above the exact range (2^10 .. 2^40 µs).
const OCTAVES: u64 = 30;
const BUCKETS: usize = (SUB + OCTAVES * SUB) as usize;

#[derive(Clone)]
pub struct Histogram {
    counts: Vec<u64>,
    count: u64,
    max: u64,
    sum: u128,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram::new()
    }
}

impl std::fmt::Debug for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Histogram {{ count: {}, p50: {}, p99: {}, max: {} }}",
            self.count,
            self.quantile(0.5),
            self.quantile(0.99),
            self.max
        )
    }
}

fn index(v: u64) -> usize {
    if v < SUB {
        return v as usize;
    }
    let e = 63 - u64::from(v.leading_zeros()); // floor(log2 v) >= SUB_BITS
    let shift = e - u64::from(SUB_BITS);
    if shift >= OCTAVES {
        return BUCKETS - 1;
    }
    let mantissa = v >> shift; // in [SUB, 2 * SUB)
    (SUB + shift * SUB + (mantissa - SUB)) as usize
}

/// The middle of bucket `i`'s range.
fn value(i: usize) -> u64 {
    let i = i as u64;
    if i < SUB {
        return i;
    }
    let shift = (i - SUB) / SUB;
    let mantissa = SUB + (i - SUB) % SUB;
    (mantissa << shift) + ((1u64 << shift) >> 1)
}

impl Histogram {
    pub fn new() -> Histogram {
        Histogram {
            counts: vec![0; BUCKETS],
            count: 0,
            max: 0,
            sum: 0,
        }
    }

    pub fn record(&mut self, v: u64) {
        self.counts[index(v)] += 1;
        self.count += 1;
        self.max = self.max.max(v);
        self.sum += u128::from(v);
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn max(&self) -> u64 {
        self.max
    }

    pub fn mean(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum as f64 / self.count as f64
        }
    }

    /// The value at quantile `q` (0..=1); 0 when empty. Never above the max.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let rank = ((q * self.count as f64).ceil() as u64).clamp(1, self.count);
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return value(i).min(self.max);
            }
        }
        self.max
    }

    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.count += other.count;
        self.max = self.max.max(other.max);
        self.sum += other.sum;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_below_1024_and_close_above() {
        for v in [0, 1, 7, 1023] {
            assert_eq!(value(index(v)), v);
        }
        for v in [1024u64, 5000, 99_999, 1_234_567, 60_000_000_000] {
            let back = value(index(v));
            let err = back.abs_diff(v) as f64 / v as f64;
            assert!(err < 0.001, "{v} -> {back}");
        }
    }

    #[test]
    fn quantiles_of_a_uniform_range() {
        let mut h = Histogram::new();
        for v in 1..=100_000u64 {
            h.record(v);
        }
        assert_eq!(h.count(), 100_000);
        let p50 = h.quantile(0.5) as f64;
        let p99 = h.quantile(0.99) as f64;
        assert!((p50 - 50_000.0).abs() < 100.0, "{p50}");
        assert!((p99 - 99_000.0).abs() < 200.0, "{p99}");
        assert_eq!(h.quantile(1.0), 100_000);
        assert_eq!(Histogram::new().quantile(0.99), 0);
    }

    #[test]
    fn a_few_slow_samples_show_in_the_tail_only() {
        let mut h = Histogram::new();
        for _ in 0..999 {
            h.record(100);
        }
        h.record(1_000_000);
        assert_eq!(h.quantile(0.5), 100);
        assert_eq!(h.quantile(0.99), 100);
        assert!(h.quantile(0.9999) > 990_000);
        let mut m = Histogram::new();
        m.merge(&h);
        m.merge(&h);
        assert_eq!(m.count(), 2000);
        assert_eq!(m.max(), 1_000_000);
    }
}
