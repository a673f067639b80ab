//! fastmath::max_argmax (greedy decoding's pass over a vocabulary) against a plain loop: the
//! maximum, the first index holding it, and whether every value is finite, at lengths around
//! its 16-lane blocks, with ties placed in different lanes and in the tail, and with NaN and
//! infinities in the blocks and in the tail.

use pgpo::backend::cpu::fastmath::max_argmax;
use pgpo::rng::Rng;

fn naive(x: &[f32]) -> Option<(f32, usize, bool)> {
    let first = x.iter().enumerate().fold(None, |b: Option<usize>, (i, &v)| if b.is_none_or(|b| v > x[b]) { Some(i) } else { b })?;
    Some((x[first], first, x.iter().all(|v| v.is_finite())))
}

const LENGTHS: [usize; 12] = [1, 2, 15, 16, 17, 31, 32, 33, 100, 1000, 4099, 32768 + 7];

#[test]
fn the_maximum_and_its_first_index_match_a_plain_loop() {
    assert_eq!(max_argmax(&[]), None);
    let mut rng = Rng::new(11);
    for (n, seed) in LENGTHS.iter().zip(1..) {
        let n = *n;
        // Few distinct values (steps of 1/8 in [-4, 4)), so that the maximum is often tied.
        let coarse: Vec<f32> = rng.vec(n, -4.0, 4.0).iter().map(|v| (v * 8.0).floor() / 8.0).collect();
        let fine = Rng::new(seed).vec(n, -30.0, 30.0);
        for x in [coarse, fine] {
            assert_eq!(max_argmax(&x), naive(&x), "n {n}");
            // The maximum copied to a later lane and to an earlier one (the tail included).
            let (m, at, _) = naive(&x).unwrap();
            for other in [n - 1, n / 2, 0, at.saturating_sub(17)] {
                let mut y = x.clone();
                y[other] = m;
                assert_eq!(max_argmax(&y), naive(&y), "n {n}, tie at {at} and {other}");
            }
        }
    }
}

#[test]
fn a_nan_or_an_infinity_anywhere_clears_the_finite_flag() {
    for n in LENGTHS {
        let x = Rng::new(n as u64).vec(n, -3.0, 3.0);
        assert!(max_argmax(&x).unwrap().2, "n {n}: all finite");
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            // First, last (the tail when n is not a multiple of 16) and the middle.
            for at in [0, n - 1, n / 2] {
                let mut y = x.clone();
                y[at] = bad;
                assert!(!max_argmax(&y).unwrap().2, "n {n}: {bad} at {at}");
            }
        }
    }
}
