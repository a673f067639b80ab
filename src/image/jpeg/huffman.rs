//! Huffman decoding of the entropy-coded segments, as libjpeg-turbo's jdhuff.c does it: the
//! same 8-bit lookahead, the same bit buffer (refilled to at least 57 bits, or 48 more on the
//! fast path), the same zeros once a marker is hit, the same recovery from bad codes. Refill
//! points matter for more than speed: whether a file that ends without EOI suspends (and
//! Pillow calls it truncated) depends on them, so they follow jdhuff.c step by step.

use super::markers::{Stop, Stream, HuffSpec, NATURAL};

/// jdhuff.h HUFF_LOOKAHEAD.
const LOOKAHEAD: i32 = 8;
/// jdhuff.c MIN_GET_BITS for a 64-bit bit buffer.
const MIN_GET_BITS: i32 = 57;

/// jdhuff.c's d_derived_tbl.
pub(super) struct Table {
    maxcode: [i32; 18],
    valoffset: [i32; 18],
    huffval: [u8; 256],
    /// (code length << 8) | symbol, for codes of at most 8 bits; 9 << 8 means "longer".
    lookup: [u16; 256],
}

impl Table {
    /// jpeg_make_d_derived_tbl, with its checks on over-full tables and DC symbols.
    pub fn derive(spec: &HuffSpec, is_dc: bool) -> Result<Table, String> {
        let bad = || Err("JPEG has a bad Huffman table".to_string());
        let mut huffsize = [0u8; 257];
        let mut p = 0usize;
        for l in 1..=16u8 {
            let n = usize::from(spec.bits[usize::from(l)]);
            if p + n > 256 {
                return bad();
            }
            huffsize[p..p + n].fill(l);
            p += n;
        }
        let numsymbols = p;
        let mut huffcode = [0u32; 257];
        let mut code = 0u32;
        let mut si = u32::from(huffsize[0]);
        p = 0;
        while huffsize[p] != 0 {
            while u32::from(huffsize[p]) == si {
                huffcode[p] = code;
                p += 1;
                code += 1;
            }
            if code >= 1 << si {
                return bad();
            }
            code <<= 1;
            si += 1;
        }
        let mut t = Table { maxcode: [-1; 18], valoffset: [0; 18], huffval: spec.vals, lookup: [(9 << 8) as u16; 256] };
        p = 0;
        for l in 1..=16 {
            let n = usize::from(spec.bits[l]);
            if n != 0 {
                t.valoffset[l] = p as i32 - huffcode[p] as i32;
                p += n;
                t.maxcode[l] = huffcode[p - 1] as i32;
            }
        }
        t.maxcode[17] = 0xFFFFF;
        p = 0;
        for l in 1..=LOOKAHEAD as usize {
            for _ in 0..spec.bits[l] {
                let first = (huffcode[p] as usize) << (LOOKAHEAD as usize - l);
                let entry = ((l as u16) << 8) | u16::from(spec.vals[p]);
                t.lookup[first..first + (1 << (LOOKAHEAD as usize - l))].fill(entry);
                p += 1;
            }
        }
        if is_dc && spec.vals[..numsymbols].iter().any(|&v| v > 15) {
            return bad();
        }
        Ok(t)
    }
}

/// jdhuff.h bitread_perm_state: the bit buffer between MCUs.
#[derive(Clone, Copy, Default)]
pub(super) struct BitState {
    pub buf: u64,
    pub left: i32,
}

/// jdhuff.h bitread_working_state: the bit buffer while an MCU is decoded. The position is
/// copied so a suspension can abandon the MCU.
pub(super) struct Cursor {
    pub buf: u64,
    pub left: i32,
    pub pos: usize,
}

impl Cursor {
    pub fn load(st: BitState, s: &Stream) -> Cursor {
        Cursor { buf: st.buf, left: st.left, pos: s.pos }
    }

    pub fn save(&self, st: &mut BitState, s: &mut Stream) {
        st.buf = self.buf;
        st.left = self.left;
        s.pos = self.pos;
    }

    /// jpeg_fill_bit_buffer: load bytes until 57 bits are buffered; stop at a marker, and
    /// past it supply zeros (flagging the segment as short) if more than `nbits` is needed.
    pub fn fill(&mut self, s: &mut Stream, nbits: i32) -> Result<(), Stop> {
        if s.unread_marker == 0 {
            while self.left < MIN_GET_BITS {
                if self.pos >= s.end {
                    return Err(Stop::Suspend);
                }
                let mut c = s.data[self.pos];
                self.pos += 1;
                if c == 0xFF {
                    loop {
                        if self.pos >= s.end {
                            return Err(Stop::Suspend);
                        }
                        c = s.data[self.pos];
                        self.pos += 1;
                        if c != 0xFF {
                            break;
                        }
                    }
                    if c == 0 {
                        c = 0xFF;
                    } else {
                        s.unread_marker = c;
                        return self.pad(s, nbits);
                    }
                }
                self.buf = (self.buf << 8) | u64::from(c);
                self.left += 8;
            }
            Ok(())
        } else {
            self.pad(s, nbits)
        }
    }

    fn pad(&mut self, s: &mut Stream, nbits: i32) -> Result<(), Stop> {
        if nbits > self.left {
            s.insufficient = true;
            self.buf <<= MIN_GET_BITS - self.left;
            self.left = MIN_GET_BITS;
        }
        Ok(())
    }

    /// CHECK_BIT_BUFFER.
    #[inline]
    pub fn need(&mut self, s: &mut Stream, n: i32) -> Result<(), Stop> {
        if self.left < n { self.fill(s, n) } else { Ok(()) }
    }

    /// GET_BITS: the caller has made sure `n` bits are there.
    #[inline]
    pub fn get(&mut self, n: i32) -> i32 {
        self.left -= n;
        ((self.buf >> self.left) & ((1u64 << n) - 1)) as i32
    }

    /// need + get.
    #[inline]
    pub fn bits(&mut self, s: &mut Stream, n: i32) -> Result<i32, Stop> {
        self.need(s, n)?;
        Ok(self.get(n))
    }

    /// HUFF_DECODE (slow path, with jpeg_huff_decode for long codes).
    #[inline]
    pub fn decode(&mut self, s: &mut Stream, t: &Table) -> Result<i32, Stop> {
        let mut nb = 1;
        if self.left < LOOKAHEAD {
            self.fill(s, 0)?;
        }
        if self.left >= LOOKAHEAD {
            let e = t.lookup[((self.buf >> (self.left - LOOKAHEAD)) & 0xFF) as usize];
            nb = i32::from(e >> 8);
            if nb <= LOOKAHEAD {
                self.left -= nb;
                return Ok(i32::from(e & 0xFF));
            }
        }
        // jpeg_huff_decode: the code is at least nb bits long.
        let mut l = nb as usize;
        let mut code = self.bits(s, nb)?;
        while code > t.maxcode[l] {
            code = (code << 1) | self.bits(s, 1)?;
            l += 1;
        }
        if l > 16 {
            return Ok(0); // libjpeg warns "corrupt data: bad Huffman code" and uses 0
        }
        Ok(i32::from(t.huffval[(code + t.valoffset[l]) as usize & 0xFF]))
    }
}

/// HUFF_EXTEND: the value of an `s`-bit magnitude category.
#[inline]
pub(super) fn extend(r: i32, s: i32) -> i32 {
    if r < 1 << (s - 1) { r + (-1 << s) + 1 } else { r }
}

/// One coefficient block, in natural order.
pub(super) type Block = [i16; 64];

/// Derives the scan's tables for each of its components, as start_pass does.
pub(super) fn scan_tables(specs: &[Option<HuffSpec>; 4], numbers: impl Iterator<Item = usize>, is_dc: bool) -> Result<Vec<Table>, Stop> {
    numbers
        .map(|i| {
            let spec = specs.get(i).and_then(|t| t.as_ref()).ok_or_else(|| Stop::Bad(format!("JPEG scan uses Huffman table {i}, which is not defined")))?;
            Table::derive(spec, is_dc).map_err(Stop::Bad)
        })
        .collect()
}

/// The entropy decoder of a sequential scan (jdhuff.c's huff_entropy_decoder).
pub(super) struct Sequential {
    state: BitState,
    last_dc: [i32; 4],
    restarts_to_go: u32,
    restart_interval: u32,
    /// Per block of the MCU, the position of its component in the scan.
    blocks: Vec<usize>,
    /// Per component of the scan.
    dc: Vec<Table>,
    ac: Vec<Table>,
}

impl Sequential {
    /// start_pass_huff_decoder.
    pub fn new(dc: Vec<Table>, ac: Vec<Table>, blocks: Vec<usize>, restart_interval: u16) -> Sequential {
        Sequential { state: BitState::default(), last_dc: [0; 4], restarts_to_go: u32::from(restart_interval), restart_interval: u32::from(restart_interval), blocks, dc, ac }
    }

    /// decode_mcu: one MCU into `out` (one block per entry of `blocks`), retried with more
    /// input whenever libjpeg would have suspended.
    pub fn decode_mcu(&mut self, s: &mut Stream, out: &mut [Block], zero_first: bool) -> Result<(), Stop> {
        loop {
            if zero_first {
                for b in out.iter_mut() {
                    *b = [0; 64];
                }
            }
            match self.try_mcu(s, out) {
                Err(Stop::Suspend) => s.feed()?,
                r => return r,
            }
        }
    }

    fn try_mcu(&mut self, s: &mut Stream, out: &mut [Block]) -> Result<(), Stop> {
        let mut fast = true;
        if self.restart_interval != 0 {
            if self.restarts_to_go == 0 {
                self.process_restart(s)?;
            }
            fast = false;
        }
        if s.end.saturating_sub(s.pos) < 512 * self.blocks.len() || s.unread_marker != 0 {
            fast = false;
        }
        // Out of data in this segment: as in libjpeg the MCU is left as it is (all zero, so
        // uniform grey, in a one-pass decode).
        let done = s.insufficient || (fast && self.fast(s, out));
        if !done {
            self.slow(s, out)?;
        }
        if self.restart_interval != 0 {
            self.restarts_to_go -= 1;
        }
        Ok(())
    }

    /// jdhuff.c process_restart.
    fn process_restart(&mut self, s: &mut Stream) -> Result<(), Stop> {
        self.state.left = 0;
        s.read_restart_marker()?;
        self.last_dc = [0; 4];
        self.restarts_to_go = self.restart_interval;
        if s.unread_marker == 0 {
            s.insufficient = false;
        }
        Ok(())
    }

    /// decode_mcu_slow.
    fn slow(&mut self, s: &mut Stream, out: &mut [Block]) -> Result<(), Stop> {
        let mut c = Cursor::load(self.state, s);
        let mut dc = self.last_dc;
        for (b, &ci) in out.iter_mut().zip(&self.blocks) {
            let (dctbl, actbl) = (&self.dc[ci], &self.ac[ci]);
            let mut v = c.decode(s, dctbl)?;
            if v != 0 {
                let r = c.bits(s, v)?;
                v = extend(r, v);
            }
            v = v.wrapping_add(dc[ci]);
            dc[ci] = v;
            b[0] = v as i16;
            let mut k = 1;
            while k < 64 {
                let sym = c.decode(s, actbl)?;
                let r = sym >> 4;
                let size = sym & 15;
                if size != 0 {
                    k += r as usize;
                    let bits = c.bits(s, size)?;
                    b[NATURAL[k]] = extend(bits, size) as i16;
                } else {
                    if r != 15 {
                        break;
                    }
                    k += 15;
                }
                k += 1;
            }
        }
        c.save(&mut self.state, s);
        self.last_dc = dc;
        Ok(())
    }

    /// decode_mcu_fast: taken only with 512 bytes per block buffered, so it never needs
    /// more input; a marker sends the MCU back to the slow path.
    fn fast(&mut self, s: &mut Stream, out: &mut [Block]) -> bool {
        let data = s.data;
        let mut p = s.pos;
        let mut buf = self.state.buf;
        let mut left = self.state.left;
        let mut marker = false;
        let mut dc = self.last_dc;
        // FILL_BIT_BUFFER_FAST: six GET_BYTEs when 16 bits or fewer are left.
        macro_rules! fill {
            () => {
                if left <= 16 {
                    for _ in 0..6 {
                        let c0 = data.get(p).copied().unwrap_or(0);
                        let c1 = data.get(p + 1).copied().unwrap_or(0);
                        buf = (buf << 8) | u64::from(c0);
                        left += 8;
                        p += 1;
                        if c0 == 0xFF {
                            p += 1;
                            if c1 != 0 {
                                marker = true;
                                p -= 2;
                                buf &= !0xFF;
                            }
                        }
                    }
                }
            };
        }
        // HUFF_DECODE_FAST.
        macro_rules! decode {
            ($t:expr) => {{
                let t: &Table = $t;
                fill!();
                let e = t.lookup[((buf >> (left - LOOKAHEAD)) & 0xFF) as usize];
                let mut nb = i32::from(e >> 8);
                left -= nb;
                if nb > LOOKAHEAD {
                    let mut code = ((buf >> left) & ((1u64 << nb) - 1)) as i32;
                    while code > t.maxcode[nb as usize] {
                        left -= 1;
                        code = (code << 1) | ((buf >> left) & 1) as i32;
                        nb += 1;
                    }
                    if nb > 16 { 0 } else { i32::from(t.huffval[(code + t.valoffset[nb as usize]) as usize & 0xFF]) }
                } else {
                    i32::from(e & 0xFF)
                }
            }};
        }
        macro_rules! get {
            ($n:expr) => {{
                let n: i32 = $n;
                left -= n;
                ((buf >> left) & ((1u64 << n) - 1)) as i32
            }};
        }
        for (b, &ci) in out.iter_mut().zip(&self.blocks) {
            let (dctbl, actbl) = (&self.dc[ci], &self.ac[ci]);
            let mut v = decode!(dctbl);
            if v != 0 {
                fill!();
                let r = get!(v);
                v = extend(r, v);
            }
            v = v.wrapping_add(dc[ci]);
            dc[ci] = v;
            b[0] = v as i16;
            let mut k = 1;
            while k < 64 {
                let sym = decode!(actbl);
                let r = sym >> 4;
                let size = sym & 15;
                if size != 0 {
                    k += r as usize;
                    fill!();
                    let bits = get!(size);
                    b[NATURAL[k]] = extend(bits, size) as i16;
                } else {
                    if r != 15 {
                        break;
                    }
                    k += 15;
                }
                k += 1;
            }
        }
        if marker {
            return false;
        }
        s.pos = p;
        self.state = BitState { buf, left };
        self.last_dc = dc;
        true
    }
}
