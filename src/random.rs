//! A small seeded random number generator (SplitMix64) whose output never changes under us:
//! synthetic data and forecast intervals must be the same for the same seed, forever.

/// SplitMix64 with the few distributions storecast needs.
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        Self { state: mix(seed) }
    }

    /// Independent streams per (seed, stream): both are scrambled before they meet, since
    /// nearby raw states would give overlapping (shifted) sequences.
    pub fn for_stream(seed: u64, stream: u64) -> Self {
        Self {
            state: mix(seed) ^ mix(mix(stream) ^ 0x5851_F42D_4C95_7F2D),
        }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.state)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `0..bound` (`bound` > 0; the modulo bias is irrelevant at our sizes).
    pub fn below(&mut self, bound: u64) -> u64 {
        self.next_u64() % bound.max(1)
    }

    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.unit();
        let u2 = self.unit();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// Laplace (double exponential) with mean 0 and the given scale.
    pub fn laplace(&mut self, scale: f64) -> f64 {
        let u = self.unit() - 0.5;
        -scale * u.signum() * (1.0 - 2.0 * u.abs()).ln()
    }

    /// Poisson by multiplying uniforms (Knuth); fine for the small means used here.
    pub fn poisson(&mut self, mean: f64) -> usize {
        let limit = (-mean).exp();
        let mut product = self.unit();
        let mut count = 0;
        while product > limit && count < 100_000 {
            product *= self.unit();
            count += 1;
        }
        count
    }
}

/// SplitMix64's finaliser: every input bit affects every output bit.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mean(values: &[f64]) -> f64 {
        values.iter().sum::<f64>() / values.len() as f64
    }

    #[test]
    fn distributions_have_their_moments() {
        let mut rng = SplitMix64::new(7);
        let normal: Vec<f64> = (0..20_000).map(|_| rng.normal()).collect();
        assert!(mean(&normal).abs() < 0.03);
        let variance = mean(&normal.iter().map(|x| x * x).collect::<Vec<_>>());
        assert!((variance - 1.0).abs() < 0.05, "{variance}");

        let laplace: Vec<f64> = (0..20_000).map(|_| rng.laplace(2.0)).collect();
        let mean_abs = mean(&laplace.iter().map(|x| x.abs()).collect::<Vec<_>>());
        assert!((mean_abs - 2.0).abs() < 0.1, "{mean_abs}");

        let poisson: Vec<f64> = (0..20_000).map(|_| rng.poisson(1.5) as f64).collect();
        assert!((mean(&poisson) - 1.5).abs() < 0.05);

        let unit: Vec<f64> = (0..20_000).map(|_| rng.unit()).collect();
        assert!(unit.iter().all(|u| (0.0..1.0).contains(u)));
    }

    #[test]
    fn same_seed_same_stream() {
        let first: Vec<u64> = {
            let mut rng = SplitMix64::for_stream(1, 2);
            (0..10).map(|_| rng.next_u64()).collect()
        };
        let mut rng = SplitMix64::for_stream(1, 2);
        assert_eq!(first, (0..10).map(|_| rng.next_u64()).collect::<Vec<_>>());
        let mut other = SplitMix64::for_stream(1, 3);
        assert_ne!(first[0], other.next_u64());
    }
}
