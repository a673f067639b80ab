//! Weights that are exactly bf16 (a bf16 checkpoint) are streamed as bf16 by the CPU's
//! few-rows matmul: `Tensor::bf16_exact` finds them, and the products are bit for bit those
//! of the f32 kernel, at decode shapes and at sizes off the kernel's tiles and vector widths
//! (with AVX-512, or the AVX2 tile under PGPO_CPU_ISA=avx2, as CI also runs it).

mod common;

use pgpo::backend::cpu::matmul::{matmul, MatmulDims, Operand};
use pgpo::tensor::Dtype;
use pgpo::backend::cpu::matmul_few_rows::takes_bf16;
use pgpo::rng::Rng;
use pgpo::Tensor;

fn bf16_values(n: usize, seed: u64) -> Vec<f32> {
    Rng::new(seed).vec(n, -2.0, 2.0).iter().map(|&v| half::bf16::from_f32(v).to_f32()).collect()
}

/// Catches a half tensor that is widened on upload (4 bytes a value) or whose bits change on
/// the way: the storage holds 2 bytes a value, and every bit pattern, NaN payloads included,
/// comes back unchanged on every backend.
#[test]
fn half_tensors_keep_their_bits_at_two_bytes_a_value_on_every_backend() {
    let mut bits: Vec<u16> = bf16_values(4996, 1).iter().map(|v| (v.to_bits() >> 16) as u16).collect();
    bits.extend([0x7f80, 0xff80, 0x7fc1, 0x8000, 0x0001]);
    for dev in ["cpu", "wgpu", "cuda", "cuda-emu"].into_iter().filter_map(common::backend) {
        for dtype in [Dtype::BF16, Dtype::F16] {
            pgpo::tensor::memory::reset_peak();
            let before = pgpo::tensor::memory::peak();
            let t = Tensor::from_half_bits(bits.clone(), dtype, &[3, 1667], &dev).unwrap();
            assert_eq!(pgpo::tensor::memory::peak() - before, 2 * bits.len(), "{dtype} on {}: 2 bytes a value", dev.name());
            assert_eq!(t.dtype(), dtype);
            assert_eq!(t.to_half_bits().unwrap().unwrap(), bits, "{dtype} on {}", dev.name());
            let widened = t.to_vec().unwrap();
            let want: Vec<f32> = bits.iter().map(|&b| dtype.widen(b)).collect();
            assert!(widened.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits()), "{dtype} on {}: widening is exact", dev.name());
            // Narrowing rounds to nearest even: 1 + 2^-8 + 2^-9 is past bf16's halfway point.
            let x = Tensor::from_vec(vec![1.0 + 2f32.powi(-8) + 2f32.powi(-9), 1.0 + 2f32.powi(-8)], &[2], &dev).unwrap();
            let r = x.to_dtype(Dtype::BF16).unwrap().to_vec().unwrap();
            assert_eq!(r, vec![1.0 + 2f32.powi(-7), 1.0], "round to nearest even on {}", dev.name());
        }
    }
}

/// out = A · Bᵀ (B [batch_b, n, k]) through the CPU matmul from B's f32 values, its bf16 bits
/// and bits that differ from them, into outputs poisoned with NaN first.
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
    matmul(Operand::F32(&a), Operand::F32(&b), d, &mut f32_out);
    matmul(Operand::F32(&a), Operand::Half(&bits, Dtype::BF16), d, &mut bf16_out);
    // Bits that disagree with B: the result must follow them.
    let wrong: Vec<u16> = bits.iter().map(|&x| x ^ 0x0040).collect();
    let mut wrong_out = vec![f32::NAN; len];
    matmul(Operand::F32(&a), Operand::Half(&wrong, Dtype::BF16), d, &mut wrong_out);
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
        if takes_bf16(m, 1) {
            let same = f32_out.iter().zip(&bf16_out).all(|(x, y)| x.to_bits() == y.to_bits());
            assert!(same, "[{m}, {k}] x [{n}, {k}]ᵀ {batch:?}: the bf16 path differs from the f32 one");
        } else {
            // Without AVX2 (or under PGPO_CPU_ISA=baseline) the bits are widened by panels for gemm.
            assert_close(&f32_out, &bf16_out);
        }
        assert!(f32_out != wrong_out, "[{m}, {k}] x [{n}, {k}]ᵀ: the bits are what the kernel reads");
    }
}

fn assert_close(want: &[f32], got: &[f32]) {
    for (i, (w, g)) in want.iter().zip(got).enumerate() {
        assert!((w - g).abs() <= 1e-5 * (1.0 + w.abs()), "element {i}: {g} against {w}");
    }
}

/// Catches a panel of the widened operand placed at the wrong rows or columns: 65 rows go to
/// gemm through panels, and equal the f32 product on the same values.
#[test]
fn more_rows_than_the_few_row_kernel_takes_widen_the_bits_by_panels() {
    let (f32_out, bf16_out, wrong_out, _) = both(65, 40, 33, (1, 1), 3);
    assert_close(&f32_out, &bf16_out);
    assert!(f32_out != wrong_out);
}

/// Catches a panel widened from the wrong rows or columns, or written to the wrong block of
/// C: at k = 349,525 each panel holds 3 rows of op(A) or 3 columns of op(B) (4 MB of f32), so
/// 5 x 7 outputs span several panels of each, at every transpose, with A, B or both half.
#[test]
fn half_operands_split_into_panels_give_the_f32_product() {
    let (m, k, n) = (5, (1 << 20) / 3, 7);
    let a: Vec<f32> = bf16_values(m * k, 40);
    let b: Vec<f32> = Rng::new(41).vec(k * n, -1.0, 1.0).iter().map(|&v| half::f16::from_f32(v).to_f32()).collect();
    let a_bits: Vec<u16> = a.iter().map(|&v| half::bf16::from_f32(v).to_bits()).collect();
    let b_bits: Vec<u16> = b.iter().map(|&v| half::f16::from_f32(v).to_bits()).collect();
    for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
        let d = MatmulDims { batch: 1, m, n, k, trans_a: ta, trans_b: tb, a_stride: 0, b_stride: 0 };
        // The same values: A [m, k] or [k, m] and B [k, n] or [n, k] are read with the strides of d.
        let want = {
            let mut out = vec![f32::NAN; m * n];
            matmul(Operand::F32(&a), Operand::F32(&b), d, &mut out);
            out
        };
        let scale: f32 = (k as f32).sqrt();
        for (name, x, y) in [
            ("A bf16", Operand::Half(&a_bits, Dtype::BF16), Operand::F32(&b)),
            ("B f16", Operand::F32(&a), Operand::Half(&b_bits, Dtype::F16)),
            ("both", Operand::Half(&a_bits, Dtype::BF16), Operand::Half(&b_bits, Dtype::F16)),
        ] {
            let mut got = vec![f32::NAN; m * n];
            matmul(x, y, d, &mut got);
            for (i, (w, g)) in want.iter().zip(&got).enumerate() {
                assert!((w - g).abs() <= 1e-4 * scale, "{name} (trans {ta}, {tb}) element {i}: {g} against {w}");
            }
        }
    }
}
