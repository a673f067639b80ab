//! The CPU matmul for few rows of A (a decode step's [B, K] activations against [N, K]
//! weights, one query row against a block of keys): op(B) is streamed straight from where
//! it lies instead of being packed first. gemm packs B on every call, so a decode step read
//! every weight, wrote a packed copy and read that again: three passes over 164 MB where
//! one will do, since with few rows the work is bound by reading B, not by arithmetic.
//!
//! Register tiles (AVX2 + FMA, 16 ymm registers):
//! - B transposed (B given as [N, K], each column of op(B) contiguous): 4 rows of A x 2
//!   columns, 8 accumulators reduced horizontally at the end, so each B column is read once
//!   per 4 rows of A, from L1 after the first.
//! - B as is ([K, N], rows contiguous): 4 rows of A x 16 columns, A broadcast per k.
//! - On a CPU with AVX-512 (F, VL and BW), matmul_few_rows_avx512.rs: B transposed, 8 rows
//!   x 2 columns of zmm; B as is, 4 rows x 64 columns.
//! - B transposed and given as bf16 bit patterns (`try_matmul_bf16`, a weight of a bf16
//!   checkpoint): the same tiles, each value widened to its f32 in a register.
//!
//! Other CPUs, layouts where A's rows are not contiguous, and op(B) with neither its rows nor
//! its columns contiguous go to gemm.

/// Rows of A up to which streaming op(B) beats gemm, when op(B)'s columns are contiguous (a
/// [N, K] weight read once, from memory): gemm transposes B into packed panels on every
/// call. Measured on 2 Zen 4 cores (2026-12-03), this kernel against gemm with B cold:
/// [m, 512] x [1536, 512]ᵀ 0.45 against 1.07 ms at m = 32, 0.90 against 1.30 at 64, 1.6
/// against 1.85 at 128; [m, 1536] x [512, 1536]ᵀ 0.47 against 2.14 at 32, 0.89 against
/// 2.54 at 64; the [m, 512] x [32768, 512]ᵀ LM head 15.7 against 28.3 at 64.
pub const MAX_ROWS_B_COLUMNS: usize = 64;

/// The same bound when op(B)'s rows are contiguous: gemm packs those without a transpose
/// and is as fast from 16 rows on ([32, 1536] x [1536, 512]: 0.93 ms here, 0.53 in gemm).
pub const MAX_ROWS_B_ROWS: usize = 16;

/// The bound for operands already in cache (attention's 64-row blocks of queries against
/// cached keys), where gemm's packed tiles win beyond 16 rows: 64-row blocks through this
/// kernel made a causal [8 heads, 512, 64] attention 3.82 ms instead of 3.08.
pub const MAX_ROWS_CACHED: usize = 16;

/// One product dst[m, n] (+)= A[m, k] · op(B)[k, n]. A's element (i, p) is a[i * a_rs + p]
/// (rows contiguous); op(B)'s element (p, j) is b[p * b_rs + j * b_cs].
#[derive(Clone, Copy)]
pub struct FewRows {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub a_rs: usize,
    pub b_rs: usize,
    pub b_cs: usize,
    pub dst_rs: usize,
    pub accumulate: bool,
}

/// Runs the product if its layout suits this kernel, it has at most its layout's bound of
/// rows (`MAX_ROWS_B_COLUMNS` or `MAX_ROWS_B_ROWS`) and the CPU has AVX2 + FMA (AVX-512 is
/// used where present); returns false
/// (having done nothing) otherwise.
///
/// # Safety
/// a, b and dst cover their matrices under the given strides.
pub unsafe fn try_matmul(a: *const f32, b: *const f32, dst: *mut f32, p: FewRows) -> bool {
    #[cfg(target_arch = "x86_64")]
    if p.m <= max_rows(p.b_rs, p.b_cs) && p.k > 0 && super::fastmath::has_avx2() {
        if p.b_rs == 1 {
            // SAFETY: AVX2 is present; the caller vouches for the extents.
            unsafe { b_columns(a, b, dst, p) };
            return true;
        }
        if p.b_cs == 1 {
            // SAFETY: as above; AVX-512 is checked.
            unsafe {
                if super::fastmath::has_avx512() {
                    super::matmul_few_rows_avx512::b_rows(a, b, dst, p);
                } else {
                    avx2::b_rows(a, b, dst, p);
                }
            }
            return true;
        }
    }
    let _ = (a, b, dst, p);
    false
}

/// `try_matmul` with B given as bf16 bit patterns (see matmul_few_rows_avx512.rs): only
/// op(B) with contiguous columns (x @ Wᵀ, a linear layer), on a CPU with AVX2. The result
/// is bit for bit that of `try_matmul` on the same values as f32; false (having done
/// nothing) where it does not apply.
///
/// # Safety
/// a, b and dst cover their matrices under the given strides.
pub unsafe fn try_matmul_bf16(a: *const f32, b: *const u16, dst: *mut f32, p: FewRows) -> bool {
    #[cfg(target_arch = "x86_64")]
    if takes_bf16(p.m, p.b_rs) && p.k > 0 {
        // SAFETY: AVX2 is present; the caller vouches for the extents.
        unsafe { b_columns(a, b, dst, p) };
        return true;
    }
    let _ = (a, b, dst, p);
    false
}

/// op(B) with contiguous columns, f32 or bf16: the AVX-512 tile where the CPU has it, else
/// the AVX2 one.
///
/// # Safety
/// The CPU has AVX2 + FMA; a, b and dst cover their matrices under p's strides.
#[cfg(target_arch = "x86_64")]
unsafe fn b_columns<E: super::matmul_few_rows_avx512::Elem + avx2::Elem>(a: *const f32, b: *const E, dst: *mut f32, p: FewRows) {
    // SAFETY: the caller's.
    unsafe {
        if super::fastmath::has_avx512() {
            super::matmul_few_rows_avx512::b_columns(a, b, dst, p);
        } else {
            avx2::b_columns(a, b, dst, p);
        }
    }
}

/// Whether `try_matmul_bf16` runs a product of m rows whose op(B) has row stride b_rs.
pub fn takes_bf16(m: usize, b_rs: usize) -> bool {
    #[cfg(target_arch = "x86_64")]
    return b_rs == 1 && m <= MAX_ROWS_B_COLUMNS && super::fastmath::has_avx2();
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (m, b_rs);
        false
    }
}

/// The most rows of A this kernel takes for op(B) with these strides (0: a layout it does
/// not handle).
pub fn max_rows(b_rs: usize, b_cs: usize) -> usize {
    match (b_rs, b_cs) {
        (1, _) => MAX_ROWS_B_COLUMNS,
        (_, 1) => MAX_ROWS_B_ROWS,
        _ => 0,
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::FewRows;
    use std::arch::x86_64::*;

    #[target_feature(enable = "avx2,fma")]
    fn hsum(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
        _mm_cvtss_f32(s)
    }

    #[target_feature(enable = "avx2,fma")]
    unsafe fn store(dst: *mut f32, v: f32, accumulate: bool) {
        // SAFETY: the caller's dst element is in bounds.
        unsafe { *dst = if accumulate { *dst + v } else { v } };
    }

    /// An element type of B for the AVX2 dot tile: 8 of them load into one ymm of f32.
    pub trait Elem: Copy {
        /// `PREFETCH_AHEAD` in elements of this type (16 KB).
        const AHEAD: usize;
        /// 8 elements from p, as f32.
        /// # Safety
        /// p .. p + 8 is inside one allocation; the CPU has AVX2.
        unsafe fn load8(p: *const Self) -> __m256;
        /// One element as f32.
        /// # Safety
        /// p is valid.
        unsafe fn get(p: *const Self) -> f32;
    }

    impl Elem for f32 {
        const AHEAD: usize = PREFETCH_AHEAD;
        #[inline(always)]
        unsafe fn load8(p: *const f32) -> __m256 {
            unsafe { _mm256_loadu_ps(p) }
        }
        #[inline(always)]
        unsafe fn get(p: *const f32) -> f32 {
            unsafe { *p }
        }
    }

    /// bf16 bit patterns, widened to the same f32 (see matmul_few_rows_avx512.rs).
    impl Elem for u16 {
        const AHEAD: usize = 2 * PREFETCH_AHEAD;
        #[inline(always)]
        unsafe fn load8(p: *const u16) -> __m256 {
            unsafe { _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(_mm_loadu_si128(p.cast())))) }
        }
        #[inline(always)]
        unsafe fn get(p: *const u16) -> f32 {
            f32::from_bits(u32::from(unsafe { *p }) << 16)
        }
    }

    /// R rows of A against C contiguous columns of op(B) (rows of the given B). With
    /// `prefetch`, each column's stream is also asked for PREFETCH_AHEAD floats ahead.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn dot_tile<E: Elem, const R: usize, const C: usize>(a: *const f32, b: *const E, dst: *mut f32, p: &FewRows, prefetch: bool) {
        let k8 = p.k / 8 * 8;
        let mut acc = [[_mm256_setzero_ps(); C]; R];
        let mut q = 0;
        while q < k8 {
            if prefetch {
                for c in 0..C {
                    // A prefetch of any address is safe, inside B or past its end.
                    _mm_prefetch::<_MM_HINT_T1>(b.wrapping_add(c * p.b_cs + q + E::AHEAD).cast());
                }
            }
            // SAFETY: q + 8 <= k, inside every row.
            unsafe {
                let mut bv = [_mm256_setzero_ps(); C];
                for (c, v) in bv.iter_mut().enumerate() {
                    *v = E::load8(b.add(c * p.b_cs + q));
                }
                for (r, row) in acc.iter_mut().enumerate() {
                    let av = _mm256_loadu_ps(a.add(r * p.a_rs + q));
                    for (x, v) in row.iter_mut().zip(&bv) {
                        *x = _mm256_fmadd_ps(av, *v, *x);
                    }
                }
            }
            q += 8;
        }
        for (r, row) in acc.iter().enumerate() {
            for (c, x) in row.iter().enumerate() {
                let mut s = hsum(*x);
                for t in k8..p.k {
                    // SAFETY: t < k.
                    s += unsafe { *a.add(r * p.a_rs + t) * E::get(b.add(c * p.b_cs + t)) };
                }
                // SAFETY: row r < m, column c < n of the caller's tile.
                unsafe { store(dst.add(r * p.dst_rs + c), s, p.accumulate) };
            }
        }
    }

    /// A register tile over up to 4 rows of A: entry r - 1 handles r rows; the flag asks it
    /// to prefetch B ahead.
    type Tiles<E> = [unsafe fn(*const f32, *const E, *mut f32, &FewRows, bool); 4];

    /// Runs the tiles down every row of A, 4 at a time, then the 1-3 left over. Only the
    /// first prefetches: the others read the same columns of B, from L1 by then.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn each_row_tile<E>(tiles: &Tiles<E>, a: *const f32, b: *const E, dst: *mut f32, p: &FewRows, prefetch: bool) {
        let mut i = 0;
        while i < p.m {
            let rows = (p.m - i).min(4);
            // SAFETY: rows i .. i + rows exist; the tile stays inside the caller's.
            unsafe { tiles[rows - 1](a.add(i * p.a_rs), b, dst.add(i * p.dst_rs), p, prefetch && i == 0) };
            i += rows;
        }
    }

    #[target_feature(enable = "avx2,fma")]
    unsafe fn dot_rows<E: Elem, const C: usize>(a: *const f32, b: *const E, dst: *mut f32, p: &FewRows) {
        let tiles: Tiles<E> = [dot_tile::<E, 1, C>, dot_tile::<E, 2, C>, dot_tile::<E, 3, C>, dot_tile::<E, 4, C>];
        // SAFETY: as each_row_tile's caller.
        unsafe { each_row_tile(&tiles, a, b, dst, p, true) }
    }

    /// How far ahead of its reads (in floats, 16 KB) `dot_tile` asks for B, into L2. The
    /// hardware prefetcher alone kept a core at 6-7 GB/s of its 25 on a [8, 512] x
    /// [32768, 512]ᵀ product, and a burst of L1 prefetches of the columns 8 ahead at 8; L2
    /// prefetches spread over the loop, 16 KB ahead, reach 15-20 GB/s on one core (AMD EPYC
    /// Zen 4, 2026-12-03): with columns contiguous this is the stream 8 columns of 512 on.
    const PREFETCH_AHEAD: usize = 4096;

    /// op(B) column j is b[j * b_cs ..][..k]: two columns at a time, every row of A.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn b_columns<E: Elem>(a: *const f32, b: *const E, dst: *mut f32, p: FewRows) {
        let mut j = 0;
        // SAFETY: columns j, j + 1 < n.
        unsafe {
            while j + 2 <= p.n {
                dot_rows::<E, 2>(a, b.add(j * p.b_cs), dst.add(j), &p);
                j += 2;
            }
            if j < p.n {
                dot_rows::<E, 1>(a, b.add(j * p.b_cs), dst.add(j), &p);
            }
        }
    }

    /// R rows of A against V * 8 columns of B's rows, A broadcast element by element.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn axpy_tile<const R: usize, const V: usize>(a: *const f32, b: *const f32, dst: *mut f32, p: &FewRows, _prefetch: bool) {
        let mut acc = [[_mm256_setzero_ps(); V]; R];
        for q in 0..p.k {
            // SAFETY: row q < k of B holds the tile's V * 8 columns; A's (r, q) exists.
            unsafe {
                let mut bv = [_mm256_setzero_ps(); V];
                for (v, x) in bv.iter_mut().enumerate() {
                    *x = _mm256_loadu_ps(b.add(q * p.b_rs + 8 * v));
                }
                for (r, row) in acc.iter_mut().enumerate() {
                    let av = _mm256_set1_ps(*a.add(r * p.a_rs + q));
                    for (x, v) in row.iter_mut().zip(&bv) {
                        *x = _mm256_fmadd_ps(av, *v, *x);
                    }
                }
            }
        }
        for (r, row) in acc.iter().enumerate() {
            for (v, x) in row.iter().enumerate() {
                // SAFETY: the tile's row r and columns 8 v .. 8 v + 8 are inside dst.
                unsafe {
                    let out = dst.add(r * p.dst_rs + 8 * v);
                    let x = if p.accumulate { _mm256_add_ps(*x, _mm256_loadu_ps(out)) } else { *x };
                    _mm256_storeu_ps(out, x);
                }
            }
        }
    }

    #[target_feature(enable = "avx2,fma")]
    unsafe fn axpy_rows<const V: usize>(a: *const f32, b: *const f32, dst: *mut f32, p: &FewRows) {
        let tiles: Tiles<f32> = [axpy_tile::<1, V>, axpy_tile::<2, V>, axpy_tile::<3, V>, axpy_tile::<4, V>];
        // SAFETY: as each_row_tile's caller.
        unsafe { each_row_tile(&tiles, a, b, dst, p, false) }
    }

    /// op(B) row q is b[q * b_rs ..][..n]: 16 columns at a time, then 8, then one by one.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn b_rows(a: *const f32, b: *const f32, dst: *mut f32, p: FewRows) {
        let mut j = 0;
        // SAFETY: every tile's columns lie below n.
        unsafe {
            while j + 16 <= p.n {
                axpy_rows::<2>(a, b.add(j), dst.add(j), &p);
                j += 16;
            }
            if j + 8 <= p.n {
                axpy_rows::<1>(a, b.add(j), dst.add(j), &p);
                j += 8;
            }
            for i in 0..p.m {
                for c in j..p.n {
                    let mut s = 0.0;
                    for q in 0..p.k {
                        s += *a.add(i * p.a_rs + q) * *b.add(q * p.b_rs + c);
                    }
                    store(dst.add(i * p.dst_rs + c), s, p.accumulate);
                }
            }
        }
    }
}
