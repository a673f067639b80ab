//! The few-rows matmul's AVX-512 tile for op(B) with contiguous columns (x @ Wᵀ, every
//! linear layer of a decode step; see matmul_few_rows.rs for the kernel's role).
//!
//! 8 rows of A x 2 columns of op(B) in 16 zmm accumulators, A's rows loaded once per 16 k
//! and B's two columns once per tile: a [8, K] batch reads each weight exactly once, with
//! half the instructions of the AVX2 tile (4 rows x 2 columns of ymm, B read twice for 8
//! rows). The AVX2 tile issued 0.7 FMAs a cycle with B in L2 on a Xeon, which made a
//! decode step's products compute-bound there before they were bound by memory.
//!
//! B comes as f32, or as bf16 bit patterns (a weight whose every value is exactly a bf16,
//! as in published checkpoints): each bf16 is widened to the same f32 in a register, so the
//! products are bit for bit those of the f32 tile, from half the bytes. A decode step is
//! bound by reading its weights, so it takes about half the time.

use super::matmul_few_rows::FewRows;
use std::arch::x86_64::*;

/// An element type of B: 16 of them load into one zmm of f32.
pub trait Elem: Copy {
    /// How far ahead of its reads (in elements: 16 KB) each column's stream is prefetched
    /// into L2; see `PREFETCH_AHEAD` of the AVX2 tile.
    const PREFETCH_AHEAD: usize;
    /// The lanes of `mask` from p (others 0), as f32.
    /// # Safety
    /// The masked lanes are inside one allocation; the CPU has AVX-512 F, VL and BW.
    unsafe fn load(mask: __mmask16, p: *const Self) -> __m512;
    /// 16 values from p, as f32.
    /// # Safety
    /// p .. p + 16 lie inside one allocation; the CPU has AVX-512 F, VL and BW.
    unsafe fn load16(p: *const Self) -> __m512;
}

impl Elem for f32 {
    const PREFETCH_AHEAD: usize = 4096;
    #[inline(always)]
    unsafe fn load(mask: __mmask16, p: *const f32) -> __m512 {
        unsafe { _mm512_maskz_loadu_ps(mask, p) }
    }
    #[inline(always)]
    unsafe fn load16(p: *const f32) -> __m512 {
        unsafe { _mm512_loadu_ps(p) }
    }
}

/// bf16 bit patterns: the f32 with these as its high 16 bits.
impl Elem for u16 {
    const PREFETCH_AHEAD: usize = 8192;
    #[inline(always)]
    unsafe fn load(mask: __mmask16, p: *const u16) -> __m512 {
        unsafe { _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(mask, p.cast())))) }
    }
    #[inline(always)]
    unsafe fn load16(p: *const u16) -> __m512 {
        unsafe { _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(_mm256_loadu_si256(p.cast())))) }
    }
}

/// Rows of A per register tile.
const ROWS: usize = 8;

/// R rows of A against C contiguous columns of op(B), each column's stream prefetched when
/// P. The k % 16 tail is a masked load, so every element goes through the same fused
/// multiply-adds. P is a constant, not a flag, so neither loop tests it.
/// AVX-512VL is enabled too: without it the horizontal sums' 256- and 128-bit steps can only
/// use registers 0-15, and LLVM kept one of the 16 accumulators on the stack, a
/// store-to-load chain through every iteration.
#[target_feature(enable = "avx512f,avx512vl,avx512bw")]
unsafe fn dot_tile<E: Elem, const R: usize, const C: usize, const P: bool>(a: *const f32, b: *const E, dst: *mut f32, p: &FewRows) {
    let mut acc = [[_mm512_setzero_ps(); C]; R];
    // Whole chunks of 16 with plain loads: masked loads made this loop 1.6x slower on Zen 5
    // (a [8, 512] x [32768, 512]ᵀ product from memory on one core: 15 GB/s, 25 unmasked).
    let whole = p.k / 16 * 16;
    let mut q = 0;
    while q < whole {
        if P {
            for c in 0..C {
                // A prefetch of any address is safe, inside B or past its end.
                _mm_prefetch::<_MM_HINT_T1>(b.wrapping_add(c * p.b_cs + q + E::PREFETCH_AHEAD).cast());
            }
        }
        // SAFETY: k indices q .. q + 16 lie inside every row.
        unsafe {
            let mut bv = [_mm512_setzero_ps(); C];
            for (c, v) in bv.iter_mut().enumerate() {
                *v = E::load16(b.add(c * p.b_cs + q));
            }
            for (r, row) in acc.iter_mut().enumerate() {
                let av = _mm512_loadu_ps(a.add(r * p.a_rs + q));
                for (x, v) in row.iter_mut().zip(&bv) {
                    *x = _mm512_fmadd_ps(av, *v, *x);
                }
            }
        }
        q += 16;
    }
    // The k % 16 tail, masked: every element goes through the same fused multiply-adds.
    if whole < p.k {
        let mask: __mmask16 = (1u16 << (p.k - whole)) - 1;
        // SAFETY: the mask covers only k indices whole .. k, inside every row.
        unsafe {
            let mut bv = [_mm512_setzero_ps(); C];
            for (c, v) in bv.iter_mut().enumerate() {
                *v = E::load(mask, b.add(c * p.b_cs + whole));
            }
            for (r, row) in acc.iter_mut().enumerate() {
                let av = _mm512_maskz_loadu_ps(mask, a.add(r * p.a_rs + whole));
                for (x, v) in row.iter_mut().zip(&bv) {
                    *x = _mm512_fmadd_ps(av, *v, *x);
                }
            }
        }
    }
    for (r, row) in acc.iter().enumerate() {
        for (c, x) in row.iter().enumerate() {
            let s = _mm512_reduce_add_ps(*x);
            // SAFETY: row r < m, column c < n of the caller's tile.
            unsafe {
                let out = dst.add(r * p.dst_rs + c);
                *out = if p.accumulate { *out + s } else { s };
            }
        }
    }
}

type Tile<E> = unsafe fn(*const f32, *const E, *mut f32, &FewRows);

/// The tiles of 1 ..= 8 rows (entry r - 1 handles r rows) for C columns.
fn tiles<E: Elem, const C: usize, const P: bool>() -> [Tile<E>; ROWS] {
    [
        dot_tile::<E, 1, C, P>,
        dot_tile::<E, 2, C, P>,
        dot_tile::<E, 3, C, P>,
        dot_tile::<E, 4, C, P>,
        dot_tile::<E, 5, C, P>,
        dot_tile::<E, 6, C, P>,
        dot_tile::<E, 7, C, P>,
        dot_tile::<E, 8, C, P>,
    ]
}

/// C columns against every row of A, 8 at a time. Only the first row group prefetches: the
/// others read the same columns of B, from L1 by then.
#[target_feature(enable = "avx512f,avx512vl,avx512bw")]
unsafe fn columns<E: Elem, const C: usize>(t: &[[Tile<E>; ROWS]; 2], a: *const f32, b: *const E, dst: *mut f32, p: &FewRows) {
    let mut i = 0;
    while i < p.m {
        let rows = (p.m - i).min(ROWS);
        // SAFETY: rows i .. i + rows exist; the tile stays inside the caller's.
        unsafe { t[usize::from(i == 0)][rows - 1](a.add(i * p.a_rs), b, dst.add(i * p.dst_rs), p) };
        i += rows;
    }
}

/// op(B) column j is b[j * b_cs ..][..k]: two columns at a time, every row of A.
///
/// # Safety
/// The CPU has AVX-512 F, VL and BW; a, b and dst cover their matrices under p's strides.
#[target_feature(enable = "avx512f,avx512vl,avx512bw")]
pub unsafe fn b_columns<E: Elem>(a: *const f32, b: *const E, dst: *mut f32, p: FewRows) {
    // [without, with] prefetching.
    let (two, one) = ([tiles::<E, 2, false>(), tiles::<E, 2, true>()], [tiles::<E, 1, false>(), tiles::<E, 1, true>()]);
    let mut j = 0;
    // SAFETY: columns j, j + 1 < n.
    unsafe {
        while j + 2 <= p.n {
            columns::<E, 2>(&two, a, b.add(j * p.b_cs), dst.add(j), &p);
            j += 2;
        }
        if j < p.n {
            columns::<E, 1>(&one, a, b.add(j * p.b_cs), dst.add(j), &p);
        }
    }
}

/// Rows of A per tile of `b_rows`: 4 rows x 4 zmm of columns are 16 accumulators, with 4
/// registers of B and one broadcast beside them.
const AXPY_ROWS: usize = 4;

/// R rows of A against V zmm of columns of B's rows (the last one masked by `last`), A
/// broadcast element by element: dst (+)= A · B over the tile. Each output lane sums over q
/// in order with one fused multiply-add per term, as the AVX2 tile does.
#[target_feature(enable = "avx512f,avx512vl,avx512bw")]
unsafe fn axpy_tile<const R: usize, const V: usize>(a: *const f32, b: *const f32, dst: *mut f32, p: &FewRows, last: __mmask16) {
    let mask = |v: usize| if v + 1 == V { last } else { 0xffff };
    let mut acc = [[_mm512_setzero_ps(); V]; R];
    for q in 0..p.k {
        // SAFETY: row q < k of B holds the tile's columns under the masks; A's (r, q) exists.
        unsafe {
            let mut bv = [_mm512_setzero_ps(); V];
            for (v, x) in bv.iter_mut().enumerate() {
                *x = _mm512_maskz_loadu_ps(mask(v), b.add(q * p.b_rs + 16 * v));
            }
            for (r, row) in acc.iter_mut().enumerate() {
                let av = _mm512_set1_ps(*a.add(r * p.a_rs + q));
                for (x, v) in row.iter_mut().zip(&bv) {
                    *x = _mm512_fmadd_ps(av, *v, *x);
                }
            }
        }
    }
    for (r, row) in acc.iter().enumerate() {
        for (v, x) in row.iter().enumerate() {
            // SAFETY: the tile's row r and its masked columns from 16 v are inside dst.
            unsafe {
                let out = dst.add(r * p.dst_rs + 16 * v);
                let x = if p.accumulate { _mm512_add_ps(*x, _mm512_maskz_loadu_ps(mask(v), out)) } else { *x };
                _mm512_mask_storeu_ps(out, mask(v), x);
            }
        }
    }
}

type AxpyTile = unsafe fn(*const f32, *const f32, *mut f32, &FewRows, __mmask16);

/// V zmm of columns (the last masked by `last`) down every row of A, 4 rows at a time.
#[target_feature(enable = "avx512f,avx512vl,avx512bw")]
unsafe fn axpy_rows<const V: usize>(a: *const f32, b: *const f32, dst: *mut f32, p: &FewRows, last: __mmask16) {
    let tiles: [AxpyTile; AXPY_ROWS] = [axpy_tile::<1, V>, axpy_tile::<2, V>, axpy_tile::<3, V>, axpy_tile::<4, V>];
    let mut i = 0;
    while i < p.m {
        let rows = (p.m - i).min(AXPY_ROWS);
        // SAFETY: rows i .. i + rows exist; the tile stays inside the caller's.
        unsafe { tiles[rows - 1](a.add(i * p.a_rs), b, dst.add(i * p.dst_rs), p, last) };
        i += rows;
    }
}

/// op(B) row q is b[q * b_rs ..][..n] (attention's P · V, for a decode step's few query
/// rows): 64 columns at a time, then 16, then the n % 16 tail under a mask. A quarter of
/// the AVX2 tile's instructions per column.
///
/// # Safety
/// The CPU has AVX-512 F, VL and BW; a, b and dst cover their matrices under p's strides.
#[target_feature(enable = "avx512f,avx512vl,avx512bw")]
pub unsafe fn b_rows(a: *const f32, b: *const f32, dst: *mut f32, p: FewRows) {
    let mut j = 0;
    // SAFETY: every tile's columns (under its mask) lie below n.
    unsafe {
        while j + 64 <= p.n {
            axpy_rows::<4>(a, b.add(j), dst.add(j), &p, 0xffff);
            j += 64;
        }
        while j + 16 <= p.n {
            axpy_rows::<1>(a, b.add(j), dst.add(j), &p, 0xffff);
            j += 16;
        }
        if j < p.n {
            axpy_rows::<1>(a, b.add(j), dst.add(j), &p, (1u16 << (p.n - j)) - 1);
        }
    }
}
