// Half-precision storage (see tensor::Storage): bf16 or f16 values packed two to a u32, element
// 2i in the low 16 bits, in a buffer bound as array<u32>; f32 data in the same binding is one
// value a word. Dtype codes: 0 f32, 1 bf16, 2 f16. Both half types widen exactly: bf16 by a
// shift (WGSL has no bf16), f16 by unpack2x16float, which is core WGSL and needs no SHADER_F16.
fn widen_half(word: u32, odd: bool, dtype: u32) -> f32 {
    let h = select(word & 0xffffu, word >> 16u, odd);
    if (dtype == 1u) { return bitcast<f32>(h << 16u); }
    return unpack2x16float(h).x;
}
