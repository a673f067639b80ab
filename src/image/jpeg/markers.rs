//! The byte stream and the marker segments (SOI, SOFn, DHT, DQT, DRI, DAC, APPn, COM, SOS,
//! RSTn), read in the order and with the checks of libjpeg-turbo's jdmarker.c, plus the few
//! checks of Pillow's own header parser (JpegImagePlugin.py) that libjpeg does not make.
//!
//! The stream also mirrors how Pillow feeds libjpeg: 64 KiB at a time, more only when libjpeg
//! suspends for want of data. That matters for two outcomes: libjpeg's Huffman decoder takes
//! a faster path when plenty of input is buffered, which changes when it refills its bit
//! buffer and so whether a file ending without EOI suspends (Pillow then says "truncated");
//! and after the last row of a one-scan image Pillow stops at the end of what it has fed.

/// Pillow's `ImageFile.MAXBLOCK`, the size of each read it hands the decoder.
pub(super) const CHUNK: usize = 65536;

pub(super) const SOI: u8 = 0xD8;
pub(super) const EOI: u8 = 0xD9;
pub(super) const SOS: u8 = 0xDA;
pub(super) const RST0: u8 = 0xD0;

/// Why decoding stopped early.
pub(super) enum Stop {
    /// The bit reader wanted a byte past what Pillow has fed; the MCU is retried with more.
    Suspend,
    /// No more data will come: libjpeg would stay suspended (Pillow: "image file is truncated",
    /// or, after all rows of a one-scan image, a normal end).
    Eof,
    /// libjpeg (or Pillow's parser) would raise an error.
    Bad(String),
}

pub(super) fn bad<T>(msg: impl Into<String>) -> Result<T, Stop> {
    Err(Stop::Bad(msg.into()))
}

/// The input as libjpeg's source manager and marker reader see it.
pub(super) struct Stream<'a> {
    pub data: &'a [u8],
    /// libjpeg's `next_input_byte`.
    pub pos: usize,
    /// How much of the file Pillow has handed libjpeg so far.
    pub end: usize,
    /// A marker the entropy decoder or the marker reader has read but not processed yet.
    pub unread_marker: u8,
    /// jdhuff.c's `insufficient_data`: the scan's data ran into a marker, zeros stand in.
    pub insufficient: bool,
    /// After the last row of a one-scan image: Pillow feeds nothing more, a suspension ends it.
    pub finishing: bool,
    pub next_restart_num: u8,
}

impl<'a> Stream<'a> {
    pub fn new(data: &'a [u8]) -> Stream<'a> {
        Stream { data, pos: 0, end: data.len().min(CHUNK), unread_marker: 0, insufficient: false, finishing: false, next_restart_num: 0 }
    }

    /// What Pillow does when libjpeg suspends: read another chunk, if there is one.
    pub fn feed(&mut self) -> Result<(), Stop> {
        if self.finishing || self.end >= self.data.len() {
            return Err(Stop::Eof);
        }
        self.end = (self.end + CHUNK).min(self.data.len());
        Ok(())
    }

    pub fn byte(&mut self) -> Result<u8, Stop> {
        while self.pos >= self.end {
            self.feed()?;
        }
        let b = self.data[self.pos];
        self.pos += 1;
        Ok(b)
    }

    pub fn u16(&mut self) -> Result<u16, Stop> {
        let hi = self.byte()?;
        Ok(u16::from(hi) << 8 | u16::from(self.byte()?))
    }

    /// jdatasrc-style skip_input_data: past the fed data it waits for more.
    pub fn skip(&mut self, n: usize) -> Result<(), Stop> {
        let target = self.pos.saturating_add(n);
        while self.end < target {
            self.feed()?;
        }
        self.pos = target;
        Ok(())
    }

    /// jdmarker.c next_marker: skip anything up to an 0xFF, any fill 0xFFs, and FF/00 pairs.
    pub fn next_marker(&mut self) -> Result<(), Stop> {
        loop {
            let mut c = self.byte()?;
            while c != 0xFF {
                c = self.byte()?;
            }
            loop {
                c = self.byte()?;
                if c != 0xFF {
                    break;
                }
            }
            if c != 0 {
                self.unread_marker = c;
                return Ok(());
            }
        }
    }

    /// jdmarker.c read_restart_marker and jpeg_resync_to_restart: expects RST(next_restart_num)
    /// and recovers the way libjpeg does when the restart markers are damaged.
    pub fn read_restart_marker(&mut self) -> Result<(), Stop> {
        if self.unread_marker == 0 {
            self.next_marker()?;
        }
        let desired = self.next_restart_num;
        if self.unread_marker == RST0 + desired {
            self.unread_marker = 0;
        } else {
            loop {
                let m = self.unread_marker;
                let rst = |d: u8| RST0 + (d & 7);
                // 1: discard the marker and resume; 2: scan to the next marker; 3: leave it.
                let action = if m < 0xC0 {
                    2
                } else if !(RST0..=RST0 + 7).contains(&m) || m == rst(desired + 1) || m == rst(desired + 2) {
                    3
                } else if m == rst(desired.wrapping_sub(1)) || m == rst(desired.wrapping_sub(2)) {
                    2
                } else {
                    1
                };
                match action {
                    1 => {
                        self.unread_marker = 0;
                        break;
                    }
                    2 => self.next_marker()?,
                    _ => break,
                }
            }
        }
        self.next_restart_num = (desired + 1) & 7;
        Ok(())
    }
}

/// A Huffman table as the DHT marker defines it.
#[derive(Clone)]
pub(super) struct HuffSpec {
    /// Number of codes of each length 1..=16 (index 0 unused).
    pub bits: [u8; 17],
    pub vals: [u8; 256],
}

/// Tables and parameters markers set, kept across scans.
pub(super) struct Tables {
    /// In natural (row-major) order.
    pub quant: [Option<[u16; 64]>; 4],
    pub dc: [Option<HuffSpec>; 4],
    pub ac: [Option<HuffSpec>; 4],
    pub restart_interval: u16,
    pub jfif: bool,
    pub adobe: Option<u8>,
}

impl Tables {
    pub fn new() -> Tables {
        Tables { quant: [None; 4], dc: Default::default(), ac: Default::default(), restart_interval: 0, jfif: false, adobe: None }
    }
}

impl Tables {
    /// jstdhuff.c std_huff_tables, which jinit_huff_decoder runs for sequential files: Motion
    /// JPEG frames often leave out the standard tables, so slots 0 and 1 default to them.
    pub fn default_huffman(&mut self) {
        let spec = |bits: &[u8; 17], vals: &[u8]| {
            let mut v = [0u8; 256];
            v[..vals.len()].copy_from_slice(vals);
            Some(HuffSpec { bits: *bits, vals: v })
        };
        if self.dc[0].is_none() {
            self.dc[0] = spec(&BITS_DC_LUMINANCE, &VAL_DC_LUMINANCE);
        }
        if self.ac[0].is_none() {
            self.ac[0] = spec(&BITS_AC_LUMINANCE, &VAL_AC_LUMINANCE);
        }
        if self.dc[1].is_none() {
            self.dc[1] = spec(&BITS_DC_CHROMINANCE, &VAL_DC_CHROMINANCE);
        }
        if self.ac[1].is_none() {
            self.ac[1] = spec(&BITS_AC_CHROMINANCE, &VAL_AC_CHROMINANCE);
        }
    }
}

// The standard tables of JPEG Annex K.3.
const BITS_DC_LUMINANCE: [u8; 17] = [0, 0, 1, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0];
const VAL_DC_LUMINANCE: [u8; 12] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11];
const BITS_DC_CHROMINANCE: [u8; 17] = [0, 0, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0];
const VAL_DC_CHROMINANCE: [u8; 12] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11];
const BITS_AC_LUMINANCE: [u8; 17] = [0, 0, 2, 1, 3, 3, 2, 4, 3, 5, 5, 4, 4, 0, 0, 1, 125];
const VAL_AC_LUMINANCE: [u8; 162] = [1, 2, 3, 0, 4, 17, 5, 18, 33, 49, 65, 6, 19, 81, 97, 7, 34, 113, 20, 50, 129, 145, 161, 8, 35, 66, 177, 193, 21, 82, 209, 240, 36, 51, 98, 114, 130, 9, 10, 22, 23, 24, 25, 26, 37, 38, 39, 40, 41, 42, 52, 53, 54, 55, 56, 57, 58, 67, 68, 69, 70, 71, 72, 73, 74, 83, 84, 85, 86, 87, 88, 89, 90, 99, 100, 101, 102, 103, 104, 105, 106, 115, 116, 117, 118, 119, 120, 121, 122, 131, 132, 133, 134, 135, 136, 137, 138, 146, 147, 148, 149, 150, 151, 152, 153, 154, 162, 163, 164, 165, 166, 167, 168, 169, 170, 178, 179, 180, 181, 182, 183, 184, 185, 186, 194, 195, 196, 197, 198, 199, 200, 201, 202, 210, 211, 212, 213, 214, 215, 216, 217, 218, 225, 226, 227, 228, 229, 230, 231, 232, 233, 234, 241, 242, 243, 244, 245, 246, 247, 248, 249, 250];
const BITS_AC_CHROMINANCE: [u8; 17] = [0, 0, 2, 1, 2, 4, 4, 3, 4, 7, 5, 4, 4, 0, 1, 2, 119];
const VAL_AC_CHROMINANCE: [u8; 162] = [0, 1, 2, 3, 17, 4, 5, 33, 49, 6, 18, 65, 81, 7, 97, 113, 19, 34, 50, 129, 8, 20, 66, 145, 161, 177, 193, 9, 35, 51, 82, 240, 21, 98, 114, 209, 10, 22, 36, 52, 225, 37, 241, 23, 24, 25, 26, 38, 39, 40, 41, 42, 53, 54, 55, 56, 57, 58, 67, 68, 69, 70, 71, 72, 73, 74, 83, 84, 85, 86, 87, 88, 89, 90, 99, 100, 101, 102, 103, 104, 105, 106, 115, 116, 117, 118, 119, 120, 121, 122, 130, 131, 132, 133, 134, 135, 136, 137, 138, 146, 147, 148, 149, 150, 151, 152, 153, 154, 162, 163, 164, 165, 166, 167, 168, 169, 170, 178, 179, 180, 181, 182, 183, 184, 185, 186, 194, 195, 196, 197, 198, 199, 200, 201, 202, 210, 211, 212, 213, 214, 215, 216, 217, 218, 226, 227, 228, 229, 230, 231, 232, 233, 234, 242, 243, 244, 245, 246, 247, 248, 249, 250];

pub(super) struct FrameComponent {
    pub id: u8,
    pub h: usize,
    pub v: usize,
    pub tq: u8,
}

pub(super) struct FrameHeader {
    pub progressive: bool,
    pub width: usize,
    pub height: usize,
    pub comps: Vec<FrameComponent>,
}

pub(super) struct ScanHeader {
    /// (component index in the frame, DC table, AC table), in scan order.
    pub comps: Vec<(usize, usize, usize)>,
    pub ss: u8,
    pub se: u8,
    pub ah: u8,
    pub al: u8,
}

/// What read_markers stopped at.
pub(super) enum Event {
    Sos(ScanHeader),
    Eoi,
}

/// jdmarker.c's zigzag-to-natural order, with the 16 extra entries that keep a corrupt run
/// length past coefficient 63 landing on 63.
pub(super) const NATURAL: [usize; 80] = [
    0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27, 20, 13, 6, 7, 14, 21, 28, 35, 42, 49, 56,
    57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58, 59, 52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63, 63, 63, 63, 63, 63,
    63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63,
];

/// The marker reader's state across the whole file (libjpeg's saw_SOI/saw_SOF and the parts
/// of Pillow's header parser that matter).
pub(super) struct Markers {
    pub saw_soi: bool,
    pub frame: Option<FrameHeader>,
    /// Until the first SOS: Pillow's Python parser reads these markers too.
    pub in_headers: bool,
    /// APP2 ICC_PROFILE chunks since the last SOF (Pillow sorts them at SOF).
    icc: Vec<Vec<u8>>,
    /// The TIFF body of the first APP1 Exif segment (Pillow keeps the first as info["exif"]).
    pub exif: Option<Vec<u8>>,
}

impl Markers {
    pub fn new() -> Markers {
        Markers { saw_soi: false, frame: None, in_headers: true, icc: Vec::new(), exif: None }
    }

    /// jdmarker.c read_markers: process markers until SOS or EOI.
    pub fn read(&mut self, s: &mut Stream, t: &mut Tables) -> Result<Event, Stop> {
        loop {
            if s.unread_marker == 0 {
                if !self.saw_soi {
                    // first_marker: SOI must come first, with nothing before it. Pillow also
                    // wants a third byte of 0xFF.
                    let (a, b) = (s.byte()?, s.byte()?);
                    if a != 0xFF || b != SOI {
                        return bad(format!("JPEG does not start with an SOI marker (starts {a:02X} {b:02X})"));
                    }
                    if s.pos == 2 && s.data.get(2) != Some(&0xFF) {
                        return bad("JPEG has no marker after SOI (Pillow reads it as not a JPEG file)");
                    }
                    s.unread_marker = b;
                } else {
                    s.next_marker()?;
                }
            }
            let m = s.unread_marker;
            match m {
                SOI => {
                    if self.saw_soi {
                        return bad("JPEG has a second SOI marker");
                    }
                    self.saw_soi = true;
                    t.restart_interval = 0;
                    t.jfif = false;
                    t.adobe = None;
                }
                0xC0..=0xC2 => self.sof(s, m == 0xC2)?,
                0xC3 | 0xC5 | 0xC6 | 0xC7 | 0xC8 | 0xC9 | 0xCA | 0xCB | 0xCD | 0xCE | 0xCF => {
                    let what = match m {
                        0xC3 => "lossless (SOF3)".to_string(),
                        0xC9..=0xCB => format!("arithmetic coding (SOF{})", m - 0xC0),
                        0xC8 => "the reserved JPG marker".to_string(),
                        _ => format!("hierarchical/differential coding (SOF{})", m - 0xC0),
                    };
                    return bad(format!("JPEG uses {what}, which is not supported (baseline, extended and progressive Huffman only)"));
                }
                SOS => {
                    let scan = self.sos(s)?;
                    s.unread_marker = 0;
                    self.in_headers = false;
                    return Ok(Event::Sos(scan));
                }
                EOI => {
                    s.unread_marker = 0;
                    return Ok(Event::Eoi);
                }
                0xCC => dac(s)?,
                0xC4 => dht(s, t)?,
                0xDB => dqt(s, t)?,
                0xDD => {
                    if s.u16()? != 4 {
                        return bad("JPEG has a DRI marker of the wrong length");
                    }
                    t.restart_interval = s.u16()?;
                }
                0xE0..=0xEF | 0xFE => self.app(s, t, m)?,
                0xD0..=0xD7 => {}
                0x01 if !self.in_headers => {}
                0xDC => {
                    let n = usize::from(s.u16()?);
                    s.skip(n.saturating_sub(2))?;
                }
                _ => return bad(format!("JPEG has an unknown marker FF{m:02X}")),
            }
            s.unread_marker = 0;
        }
    }

    fn sof(&mut self, s: &mut Stream, progressive: bool) -> Result<(), Stop> {
        if self.frame.is_some() {
            return bad("JPEG has a second SOF marker");
        }
        let length = usize::from(s.u16()?);
        let precision = s.byte()?;
        let height = usize::from(s.u16()?);
        let width = usize::from(s.u16()?);
        let n = usize::from(s.byte()?);
        if self.in_headers {
            // Pillow's SOF handler, which runs before libjpeg sees anything.
            if precision != 8 {
                return bad(format!("JPEG has {precision}-bit samples; only 8-bit JPEGs are supported"));
            }
            match n {
                1 | 3 => {}
                4 => return bad("JPEG has 4 components (CMYK/YCCK), which is not supported (greyscale and RGB/YCbCr only)"),
                _ => return bad(format!("JPEG has {n} components; only 1 (greyscale) or 3 (colour) are supported")),
            }
            if !self.icc.is_empty() {
                self.icc.sort();
                if self.icc[0].len() < 14 {
                    return bad("JPEG has a malformed ICC profile chunk (Pillow cannot read it)");
                }
                self.icc.clear();
            }
        }
        if width == 0 || height == 0 || n == 0 {
            return bad(format!("JPEG has an empty frame ({width}x{height}, {n} components)"));
        }
        if length != 8 + 3 * n {
            return bad("JPEG has an SOF marker of the wrong length");
        }
        let mut comps = Vec::with_capacity(n);
        for _ in 0..n {
            let id = s.byte()?;
            let hv = s.byte()?;
            let tq = s.byte()?;
            comps.push(FrameComponent { id, h: usize::from(hv >> 4), v: usize::from(hv & 15), tq });
        }
        self.frame = Some(FrameHeader { progressive, width, height, comps });
        Ok(())
    }

    fn sos(&mut self, s: &mut Stream) -> Result<ScanHeader, Stop> {
        let Some(frame) = &self.frame else { return bad("JPEG has an SOS marker before any SOF") };
        let length = usize::from(s.u16()?);
        let n = usize::from(s.byte()?);
        if length != n * 2 + 6 || !(1..=4).contains(&n) {
            return bad("JPEG has an SOS marker of the wrong length");
        }
        // As jdmarker.c get_sos: the search skips frame components whose index is taken in
        // this scan's *position* table (so repeated component ids pair up in order).
        let mut slots: [Option<usize>; 4] = [None; 4];
        let mut comps = Vec::with_capacity(n);
        for i in 0..n {
            let cc = s.byte()?;
            let c = s.byte()?;
            let found = (0..frame.comps.len().min(4)).find(|&ci| frame.comps[ci].id == cc && slots[ci].is_none());
            let Some(ci) = found else { return bad(format!("JPEG scan names an unknown component id {cc}")) };
            if slots[..i].contains(&Some(ci)) {
                return bad(format!("JPEG scan names component {cc} twice"));
            }
            slots[i] = Some(ci);
            comps.push((ci, usize::from(c >> 4), usize::from(c & 15)));
        }
        let ss = s.byte()?;
        let se = s.byte()?;
        let a = s.byte()?;
        s.next_restart_num = 0;
        Ok(ScanHeader { comps, ss, se, ah: a >> 4, al: a & 15 })
    }

    fn app(&mut self, s: &mut Stream, t: &mut Tables, m: u8) -> Result<(), Stop> {
        let length = usize::from(s.u16()?);
        let n = length.saturating_sub(2);
        let interesting = m == 0xE0 || m == 0xEE;
        // Pillow reads every APPn whole before libjpeg starts; it fails on a few short ones.
        let pillow_look = self.in_headers && matches!(m, 0xE0 | 0xE1 | 0xE2 | 0xEE);
        if !interesting && !pillow_look {
            return s.skip(n);
        }
        let take = if pillow_look { n } else { n.min(14) };
        let mut data = Vec::with_capacity(take.min(65535));
        for _ in 0..take {
            data.push(s.byte()?);
        }
        if pillow_look {
            if (m == 0xE0 && data.starts_with(b"JFIF") || m == 0xEE && data.starts_with(b"Adobe")) && data.len() < 7 {
                return bad("JPEG has a truncated JFIF/Adobe marker (Pillow cannot read it)");
            }
            if m == 0xE2 && data.starts_with(b"ICC_PROFILE\0") {
                self.icc.push(data.clone());
            }
            // The orientation a camera wrote, which transformers' load_image applies.
            if m == 0xE1 && data.starts_with(b"Exif\0\0") && self.exif.is_none() {
                self.exif = Some(data[6..].to_vec());
            }
        }
        // jdmarker.c examine_app0 / examine_app14 look at the first 14 / 12 bytes.
        if m == 0xE0 && data.len() >= 14 && data.starts_with(b"JFIF\0") {
            t.jfif = true;
        }
        if m == 0xEE && data.len() >= 12 && data.starts_with(b"Adobe") {
            t.adobe = Some(data[11]);
        }
        s.skip(n - take)
    }
}

/// jdmarker.c get_dht.
fn dht(s: &mut Stream, t: &mut Tables) -> Result<(), Stop> {
    let mut length = i64::from(s.u16()?) - 2;
    while length > 16 {
        let index = s.byte()?;
        let mut bits = [0u8; 17];
        let mut count = 0usize;
        for b in bits.iter_mut().skip(1) {
            *b = s.byte()?;
            count += usize::from(*b);
        }
        length -= 17;
        if count > 256 || count as i64 > length {
            return bad("JPEG has a bad Huffman table");
        }
        let mut vals = [0u8; 256];
        for v in vals.iter_mut().take(count) {
            *v = s.byte()?;
        }
        length -= count as i64;
        let spec = HuffSpec { bits, vals };
        if index & 0x10 != 0 {
            let i = usize::from(index - 0x10);
            if i >= 4 {
                return bad(format!("JPEG defines Huffman table index {index:#x}, out of range"));
            }
            t.ac[i] = Some(spec);
        } else {
            let i = usize::from(index);
            if i >= 4 {
                return bad(format!("JPEG defines Huffman table index {index:#x}, out of range"));
            }
            t.dc[i] = Some(spec);
        }
    }
    if length != 0 {
        return bad("JPEG has a DHT marker of the wrong length");
    }
    Ok(())
}

/// jdmarker.c get_dqt.
fn dqt(s: &mut Stream, t: &mut Tables) -> Result<(), Stop> {
    let mut length = i64::from(s.u16()?) - 2;
    while length > 0 {
        let n = s.byte()?;
        let prec = n >> 4;
        let n = usize::from(n & 15);
        if n >= 4 {
            return bad(format!("JPEG defines quantization table {n}, out of range"));
        }
        let mut q = t.quant[n].unwrap_or([0; 64]);
        for &k in &NATURAL[..64] {
            q[k] = if prec != 0 { s.u16()? } else { u16::from(s.byte()?) };
        }
        t.quant[n] = Some(q);
        length -= if prec != 0 { 129 } else { 65 };
    }
    if length != 0 {
        return bad("JPEG has a DQT marker of the wrong length");
    }
    Ok(())
}

/// jdmarker.c get_dac (libjpeg-turbo parses it even though we cannot use it).
fn dac(s: &mut Stream) -> Result<(), Stop> {
    let mut length = i64::from(s.u16()?) - 2;
    while length > 0 {
        let index = s.byte()?;
        let val = s.byte()?;
        length -= 2;
        if index >= 32 {
            return bad("JPEG has a bad DAC marker");
        }
        if index < 16 && (val & 15) > (val >> 4) {
            return bad("JPEG has a bad DAC marker");
        }
    }
    if length != 0 {
        return bad("JPEG has a DAC marker of the wrong length");
    }
    Ok(())
}
