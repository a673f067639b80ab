//! Weights that are exactly bf16 (a bf16 checkpoint) are streamed as bf16 by the CPU's
//! few-rows matmul: `Tensor::bf16_exact` finds them, and the products are bit for bit those
//! of the f32 kernel, at decode shapes and at sizes off the kernel's tiles and vector widths
//! (with AVX-512, or the AVX2 tile under PGPO_CPU_ISA=avx2, as CI also runs it).

use pgpo::backend::cpu::matmul::{matmul, MatmulDims};
use pgpo::backend::cpu::matmul_few_rows::takes_bf16;
use pgpo::rng::Rng;
use pgpo::{Device, Tensor};

fn bf16_values(n: usize, seed: u64) -> Vec<f32> {
    Rng::new(seed).vec(n, -2.0, 2.0).iter().map(|&v| half::bf16::from_f32(v).to_f32()).collect()
}

#[test]
fn bf16_exact_finds_exactly_the_tensors_whose_every_value_is_a_bf16() {
    let x = bf16_values(5000, 1);
    let t = Tensor::from_vec(x.clone(), &[50, 100], &Device::Cpu).unwrap();
    let bits = t.bf16_exact().expect("every value is a bf16");
    assert!(bits.iter().zip(&x).all(|(&b, &v)| f32::from_bits(u32::from(b) << 16) == v));
    // A reshape shares the buffer and its copy.
    assert_eq!(t.reshape(&[5000]).unwrap().bf16_exact().map(|b| b.as_ptr()), Some(bits.as_ptr()));
    // One value off, far past the first few that are probed, or at the start.
    for at in [4999, 2500, 0] {
        let mut y = x.clone();
        y[at] = f32::from_bits(y[at].to_bits() | 1);
        assert!(Tensor::from_vec(y, &[5000], &Device::Cpu).unwrap().bf16_exact().is_none(), "value {at} is not a bf16");
    }
    assert!(Tensor::from_vec(Vec::new(), &[0, 3], &Device::Cpu).unwrap().bf16_exact().is_none());
    // Non-finite values that are bf16 (low bits zero) are exact too; NaN payloads survive.
    let odd = vec![f32::INFINITY, f32::NEG_INFINITY, f32::from_bits(0x7fc1_0000), -0.0, 0.0];
    let t = Tensor::from_vec(odd.clone(), &[5], &Device::Cpu).unwrap();
    let bits = t.bf16_exact().unwrap();
    assert!(bits.iter().zip(&odd).all(|(&b, v)| u32::from(b) << 16 == v.to_bits()));
}

/// out = A · Bᵀ (B [batch_b, n, k]) through the CPU matmul, with and without B's bf16 bits,
/// into outputs poisoned with NaN first.
fn both(m: usize, k: usize, n: usize, batch: (usize, usize), seed: u64) -> (Vec<f32>, Vec<f32>, Vec<f32>, Vec<u16>) {
    let a = Rng::new(seed).vec(batch.0 * m * k, -1.0, 1.0);
    let b = bf16_values(batch.1 * n * k, seed + 1);
    let bits: Vec<u16> = b.iter().map(|v| (v.to_bits() >> 16) as u16).collect();
    let d = MatmulDims {
        batch: batch.0.max(batch.1),
        m,
        n,
        k,
        trans_a: false,
        trans_b: true,
        a_stride: if batch.0 == 1 { 0 } else { m * k },
        b_stride: if batch.1 == 1 { 0 } else { n * k },
    };
    let len = d.batch * m * n;
    let (mut f32_out, mut bf16_out) = (vec![f32::NAN; len], vec![f32::NAN; len]);
    matmul(&a, &b, None, d, &mut f32_out);
    matmul(&a, &b, Some(&bits), d, &mut bf16_out);
    // A bf16 copy that disagrees with B: the result must follow it wherever it is read.
    let wrong: Vec<u16> = bits.iter().map(|&x| x ^ 0x0040).collect();
    let mut wrong_out = vec![f32::NAN; len];
    matmul(&a, &b, Some(&wrong), d, &mut wrong_out);
    (f32_out, bf16_out, wrong_out, bits)
}

#[test]
fn few_row_products_from_bf16_equal_the_f32_kernel_bit_for_bit() {
    // Decode shapes (8 rows: q, k/v, o, gate/up, down, a 32768-token head at 512), then rows
    // across the 8-row tile (1, 7, 9, 17) and up to the kernel's 64, k off 16 (the masked
    // tail), n odd (a lone last column), and a batch with B broadcast or not.
    let shapes: &[(usize, usize, usize, (usize, usize))] = &[
        (8, 512, 512, (1, 1)),
        (8, 512, 128, (1, 1)),
        (8, 512, 1536, (1, 1)),
        (8, 1536, 512, (1, 1)),
        (8, 512, 32768, (1, 1)),
        (1, 1, 1, (1, 1)),
        (7, 15, 5, (1, 1)),
        (9, 17, 67, (1, 1)),
        (17, 515, 130, (1, 1)),
        (64, 33, 3, (1, 1)),
        (3, 100, 9, (2, 1)),
        (5, 31, 7, (2, 2)),
    ];
    for (i, &(m, k, n, batch)) in shapes.iter().enumerate() {
        let (f32_out, bf16_out, wrong_out, _) = both(m, k, n, batch, 10 + i as u64);
        assert!(f32_out.iter().all(|v| v.is_finite()), "[{m}, {k}] x [{n}, {k}]ᵀ: every element written");
        let same = f32_out.iter().zip(&bf16_out).all(|(x, y)| x.to_bits() == y.to_bits());
        assert!(same, "[{m}, {k}] x [{n}, {k}]ᵀ {batch:?}: the bf16 path differs from the f32 one");
        if takes_bf16(m, 1) {
            assert!(f32_out != wrong_out, "[{m}, {k}] x [{n}, {k}]ᵀ: the bf16 copy is what the kernel reads");
        } else {
            assert_eq!(f32_out, wrong_out, "without AVX2 (or PGPO_CPU_ISA=baseline) the copy is never read");
        }
    }
}

#[test]
fn more_rows_than_the_few_row_kernel_takes_ignore_the_bf16_copy() {
    // 65 rows go to gemm, which reads the f32 values: a wrong copy changes nothing.
    let (f32_out, bf16_out, wrong_out, _) = both(65, 40, 33, (1, 1), 3);
    assert_eq!(f32_out, bf16_out);
    assert_eq!(f32_out, wrong_out);
}
