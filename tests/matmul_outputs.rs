//! A product's output buffer is not zeroed before the kernel runs (`cpu::alloc_written`):
//! every element must be written, also where the product has nothing to sum (k = 0), on a
//! few-rows and a gemm shape, with outputs poisoned first so that a skipped one shows.

use pgpo::ops::{matmul, Transpose};
use pgpo::rng::Rng;
use pgpo::{Device, Tensor};

#[test]
fn every_output_element_is_written_including_empty_sums() {
    pgpo::set_poison_outputs(true);
    let dev = Device::cpu();
    let mut rng = Rng::new(2);
    // (batch, m, k, n): k = 0 on the few-rows path (m <= 64, B transposed) and on gemm.
    for &(batch, m, k, n) in &[(1, 8, 0, 33), (2, 100, 0, 7), (3, 9, 5, 70), (1, 130, 17, 65)] {
        let a = Tensor::from_vec(rng.vec(batch * m * k, -1.0, 1.0), &[batch, m, k], &dev).unwrap();
        let b = Tensor::from_vec(rng.vec(n * k, -1.0, 1.0), &[n, k], &dev).unwrap();
        let (av, bv) = (a.to_vec().unwrap(), b.to_vec().unwrap());
        let got = matmul(&a, &b, Transpose::NT).unwrap().to_vec().unwrap();
        assert_eq!(got.len(), batch * m * n);
        for z in 0..batch {
            for i in 0..m {
                for j in 0..n {
                    let want: f64 = (0..k).map(|p| f64::from(av[(z * m + i) * k + p]) * f64::from(bv[j * k + p])).sum();
                    let g = got[(z * m + i) * n + j];
                    assert!((f64::from(g) - want).abs() <= 1e-4, "[{batch}, {m}, {k}] x [{n}, {k}]ᵀ at ({z}, {i}, {j}): {g} against {want}");
                }
            }
        }
    }
}
