//! A JPEG decoder whose RGB output is bit-exact with what transformers' image processor sees:
//! Pillow's `Image.open(f).convert("RGB")`, i.e. libjpeg-turbo's default decode (islow integer
//! IDCT, fancy upsampling, jdcolor.c's fixed-point YCbCr->RGB). Written from the JPEG spec
//! (ITU T.81) and from reading libjpeg-turbo's sources; std only, no `unsafe`.
//!
//! Supported: baseline and extended sequential Huffman (interleaved or one component per
//! scan), progressive Huffman, restart intervals, 8-bit samples, 1 component (greyscale,
//! replicated to RGB) or 3 (YCbCr, or RGB as libjpeg infers from an Adobe marker or R/G/B
//! component ids), any integer sampling ratio. Refused with an error, as unsupported:
//! arithmetic coding, lossless, hierarchical, 12-bit, CMYK/YCCK. Refused as Pillow refuses
//! them: truncated files (data ending before libjpeg can finish), files over
//! [`MAX_PIXELS`]. Damaged data that libjpeg decodes with a warning (bad Huffman codes,
//! segments cut short by a marker, broken restart markers) is decoded the same way.
//!
//! Pipeline: `markers` (the stream, marker segments) -> `huffman` / `progressive`
//! (coefficients) -> `idct` (and `smoothing` for incomplete progressive files) -> `output`
//! (`upsample`, `color`), with `frame` holding the geometry.

#![forbid(unsafe_code)]

mod color;
mod frame;
mod huffman;
mod idct;
mod markers;
mod output;
mod progressive;
mod smoothing;
mod upsample;

use frame::{Frame, ScanLayout};
use huffman::{scan_tables, Block, Sequential};
use markers::{Event, Markers, ScanHeader, Stop, Stream, Tables};
use output::{Output, Space};
use progressive::{CoefBits, Progressive};

/// PIL's decompression-bomb limit (twice `Image.MAX_IMAGE_PIXELS`), the same as
/// `image::processor::MAX_IMAGE_PIXELS`: larger images are refused before anything is allocated.
pub const MAX_PIXELS: u64 = 178_956_970;

/// More scans than any encoder writes; a bound on the work a hostile file can ask for
/// (libjpeg has none; real progressive files have about ten).
const MAX_SCANS: usize = 1000;

/// A decoded image: `data` is RGB8, row-major, `width * height * 3` bytes, as stored (the
/// Exif orientation is not applied here).
pub struct Decoded {
    pub width: usize,
    pub height: usize,
    pub data: Vec<u8>,
    /// The TIFF body of the file's Exif segment, if it has one.
    pub exif: Option<Vec<u8>>,
}

/// Decodes a JPEG file to RGB8 exactly as Pillow would.
pub fn decode(bytes: &[u8]) -> Result<Decoded, String> {
    Decoder::new(bytes).run().map_err(message)
}

/// The image size from the headers (up to the first scan), after the checks `decode` makes
/// on them before it allocates anything (Pillow's and libjpeg's size limits among them).
pub fn read_size(bytes: &[u8]) -> Result<(usize, usize), String> {
    let mut d = Decoder::new(bytes);
    d.header().map_err(message)?;
    Ok((d.frame.width, d.frame.height))
}

fn message(e: Stop) -> String {
    match e {
        Stop::Bad(m) => m,
        Stop::Eof | Stop::Suspend => "JPEG is truncated: the data ends before the image does (Pillow refuses it as \"image file is truncated\")".to_string(),
    }
}

struct Decoder<'a> {
    s: Stream<'a>,
    tables: Tables,
    markers: Markers,
    frame: Frame,
    scan: Option<ScanHeader>,
    /// input_scan_number: SOS markers read so far.
    scans: usize,
}

impl<'a> Decoder<'a> {
    fn new(bytes: &'a [u8]) -> Decoder<'a> {
        let frame = Frame { width: 0, height: 0, progressive: false, comps: Vec::new(), hmax: 1, vmax: 1, imcu_rows: 0, mcus_per_row: 0 };
        Decoder { s: Stream::new(bytes), tables: Tables::new(), markers: Markers::new(), frame, scan: None, scans: 0 }
    }

    /// jpeg_read_header (as Pillow calls it: tables-only datastreams are skipped), then the
    /// size checks Pillow and libjpeg make before decoding.
    fn header(&mut self) -> Result<(), Stop> {
        let scan = loop {
            match self.markers.read(&mut self.s, &mut self.tables)? {
                Event::Sos(scan) => break scan,
                Event::Eoi if self.markers.frame.is_some() => return Err(Stop::Bad("JPEG has a frame header but no scan".into())),
                // A tables-only datastream: libjpeg starts over, expecting SOI.
                Event::Eoi => self.markers.saw_soi = false,
            }
        };
        self.scans = 1;
        let Some(fh) = &self.markers.frame else { return Err(Stop::Bad("JPEG has no frame header".into())) };
        if fh.width as u64 * fh.height as u64 > MAX_PIXELS {
            return Err(Stop::Bad(format!("JPEG is {}x{}, over the {MAX_PIXELS}-pixel limit (a decompression bomb?)", fh.width, fh.height)));
        }
        self.frame = Frame::new(fh)?;
        self.scan = Some(scan);
        Ok(())
    }

    fn space(&self) -> Space {
        if self.frame.comps.len() == 1 {
            return Space::Gray;
        }
        let t = &self.tables;
        let ids: Vec<u8> = self.frame.comps.iter().map(|c| c.id).collect();
        if t.jfif {
            Space::Ycc
        } else if let Some(transform) = t.adobe {
            if transform == 0 { Space::Rgb } else { Space::Ycc }
        } else if ids == [82, 71, 66] {
            Space::Rgb
        } else {
            Space::Ycc
        }
    }

    fn run(mut self) -> Result<Decoded, Stop> {
        self.header()?;
        let mut output = Output::new(&self.frame, self.space())?;
        let Some(first) = self.scan.take() else { return Err(Stop::Bad("JPEG has no scan".into())) };
        if !self.frame.progressive {
            self.tables.default_huffman();
        }
        let (w, h) = (self.frame.width, self.frame.height);
        let mut rgb: Vec<u8> = frame::zeroed(w * h * 3, 0u8)?;
        if first.comps.len() < self.frame.comps.len() || self.frame.progressive {
            self.buffered(first, &mut output, &mut rgb)?;
        } else {
            self.one_pass(&first, &mut output, &mut rgb)?;
        }
        Ok(Decoded { width: w, height: h, data: rgb, exif: self.markers.exif.take() })
    }

    /// latch_quant_tables: each component keeps the table it had at its first scan.
    fn latch(&mut self, scan: &ScanHeader) -> Result<(), Stop> {
        for &(ci, _, _) in &scan.comps {
            let c = &mut self.frame.comps[ci];
            if c.quant.is_none() {
                let q = self.tables.quant.get(c.tq).copied().flatten();
                c.quant = Some(q.ok_or_else(|| Stop::Bad(format!("JPEG uses quantization table {}, which is not defined", c.tq)))?);
            }
        }
        Ok(())
    }

    fn quant(&self, c: usize) -> [u16; 64] {
        self.frame.comps[c].quant.unwrap_or([0; 64])
    }

    fn sequential(&self, scan: &ScanHeader, layout: &ScanLayout) -> Result<Sequential, Stop> {
        let dc = scan_tables(&self.tables.dc, scan.comps.iter().map(|c| c.1), true)?;
        let ac = scan_tables(&self.tables.ac, scan.comps.iter().map(|c| c.2), false)?;
        Ok(Sequential::new(dc, ac, layout.blocks.iter().map(|b| b.scan_pos).collect(), self.tables.restart_interval))
    }

    /// A file with one scan holding every component: decoded iMCU row by iMCU row
    /// (jdcoefct.c decompress_onepass), then the rest of the file read up to EOI as
    /// jpeg_finish_decompress does.
    fn one_pass(&mut self, scan: &ScanHeader, output: &mut Output, rgb: &mut [u8]) -> Result<(), Stop> {
        let comps: Vec<usize> = scan.comps.iter().map(|c| c.0).collect();
        let layout = ScanLayout::new(&self.frame, &comps)?;
        self.latch(scan)?;
        let mut ent = self.sequential(scan, &layout)?;
        self.s.insufficient = false;
        let quant: Vec<[u16; 64]> = (0..self.frame.comps.len()).map(|c| self.quant(c)).collect();
        let mut mcu: Vec<Block> = vec![[0; 64]; layout.blocks.len()];
        let rows = self.frame.imcu_rows;
        for m in 0..=rows {
            if m < rows {
                let f = &self.frame;
                let mcu_rows = if layout.interleaved {
                    1
                } else {
                    let c = &f.comps[comps[0]];
                    (c.bh - m * c.v).min(c.v)
                };
                for dy in 0..mcu_rows {
                    let my = if layout.interleaved { m } else { m * f.comps[comps[0]].v + dy };
                    for mx in 0..layout.mcus_per_row {
                        ent.decode_mcu(&mut self.s, &mut mcu, true)?;
                        for (b, block) in layout.blocks.iter().zip(&mcu) {
                            let (bx, by) = layout.block_at(f, b, mx, my);
                            let c = &f.comps[b.comp];
                            if bx < c.bw && by < c.bh {
                                let (out, stride) = output.slot(b.comp, m);
                                idct::islow(block, &quant[b.comp], out, (by - m * c.v) * 8 * stride + bx * 8, stride);
                            }
                        }
                    }
                }
            }
            if m > 0 {
                output.emit(m - 1, rgb);
            }
        }
        // jpeg_finish_decompress: read to EOI; Pillow feeds nothing more, so running out of
        // data here ends the decode normally, but a bad marker still fails it.
        self.s.finishing = true;
        match self.markers.read(&mut self.s, &mut self.tables) {
            Ok(Event::Eoi) | Err(Stop::Eof) => Ok(()),
            Ok(Event::Sos(_)) => Err(Stop::Bad("JPEG has a second scan after a scan that held every component".into())),
            Err(e) => Err(e),
        }
    }

    /// Files with several scans: every scan is read into whole-image coefficient buffers
    /// (jpeg_start_decompress absorbs them all up to EOI), then one output pass.
    fn buffered(&mut self, first: ScanHeader, output: &mut Output, rgb: &mut [u8]) -> Result<(), Stop> {
        let mut coefs = self.frame.coefficient_buffers()?;
        let mut bits = CoefBits::new(self.frame.comps.len());
        let mut last_good = 0usize;
        let mut scan = first;
        loop {
            self.read_scan(&scan, &mut coefs, &mut bits, &mut last_good)?;
            match self.markers.read(&mut self.s, &mut self.tables)? {
                Event::Sos(next) => {
                    self.scans += 1;
                    if self.scans > MAX_SCANS {
                        return Err(Stop::Bad(format!("JPEG has more than {MAX_SCANS} scans")));
                    }
                    scan = next;
                }
                Event::Eoi => break,
            }
        }
        let latched = self.smoothing(&bits);
        let rows = self.frame.imcu_rows;
        for m in 0..=rows {
            if m < rows {
                for (ci, c) in self.frame.comps.iter().enumerate() {
                    let q = c.quant.unwrap_or([0; 64]);
                    let (out, stride) = output.slot(ci, m);
                    if let Some((cur, prev)) = &latched {
                        let b = if m > last_good { &prev[ci] } else { &cur[ci] };
                        smoothing::smooth_row(c, &coefs[ci], b, m, rows, &q, out, stride);
                        continue;
                    }
                    let block_rows = if m + 1 < rows {
                        c.v
                    } else {
                        match c.bh % c.v {
                            0 => c.v,
                            r => r,
                        }
                    };
                    for br in 0..block_rows {
                        let by = m * c.v + br;
                        for bx in 0..c.bw {
                            idct::islow(&coefs[ci][by * c.bw_pad + bx], &q, out, br * 8 * stride + bx * 8, stride);
                        }
                    }
                }
            }
            if m > 0 {
                output.emit(m - 1, rgb);
            }
        }
        Ok(())
    }

    /// One scan into the coefficient buffers (jdcoefct.c consume_data).
    fn read_scan(&mut self, scan: &ScanHeader, coefs: &mut [Vec<Block>], bits: &mut CoefBits, last_good: &mut usize) -> Result<(), Stop> {
        let comps: Vec<usize> = scan.comps.iter().map(|c| c.0).collect();
        let layout = ScanLayout::new(&self.frame, &comps)?;
        self.latch(scan)?;
        self.s.insufficient = false;
        let f = &self.frame;
        let index = |b: &frame::McuBlock, mx: usize, my: usize| {
            let (bx, by) = layout.block_at(f, b, mx, my);
            (b.comp, by * f.comps[b.comp].bw_pad + bx, b.scan_pos)
        };
        if f.progressive {
            let (mut p, needs_tables) = Progressive::start(&comps, scan, self.scans, bits, self.tables.restart_interval)?;
            if needs_tables {
                p.set_tables(if p.is_dc() {
                    scan_tables(&self.tables.dc, scan.comps.iter().map(|c| c.1), true)?
                } else {
                    scan_tables(&self.tables.ac, scan.comps.iter().map(|c| c.2), false)?
                });
            }
            let mut list = Vec::with_capacity(layout.blocks.len());
            for my in 0..layout.mcu_rows {
                for mx in 0..layout.mcus_per_row {
                    if !self.s.insufficient {
                        *last_good = layout.imcu_row(f, my);
                    }
                    list.clear();
                    list.extend(layout.blocks.iter().map(|b| index(b, mx, my)));
                    p.decode_mcu(&mut self.s, coefs, &list)?;
                }
            }
        } else {
            let mut ent = self.sequential(scan, &layout)?;
            let mut mcu: Vec<Block> = vec![[0; 64]; layout.blocks.len()];
            for my in 0..layout.mcu_rows {
                for mx in 0..layout.mcus_per_row {
                    if !self.s.insufficient {
                        *last_good = layout.imcu_row(f, my);
                    }
                    for (b, blk) in layout.blocks.iter().zip(mcu.iter_mut()) {
                        let (c, i, _) = index(b, mx, my);
                        *blk = coefs[c][i];
                    }
                    ent.decode_mcu(&mut self.s, &mut mcu, false)?;
                    for (b, blk) in layout.blocks.iter().zip(&mcu) {
                        let (c, i, _) = index(b, mx, my);
                        coefs[c][i] = *blk;
                    }
                }
            }
        }
        Ok(())
    }

    /// jdcoefct.c smoothing_ok: Some((coef_bits, coef_bits before the last scan)) of the first
    /// ten coefficients per component when block smoothing applies.
    #[allow(clippy::type_complexity)]
    fn smoothing(&self, bits: &CoefBits) -> Option<(Vec<[i32; 10]>, Vec<[i32; 10]>)> {
        if !self.frame.progressive {
            return None;
        }
        let mut useful = false;
        let mut cur = Vec::new();
        let mut prev = Vec::new();
        for (ci, c) in self.frame.comps.iter().enumerate() {
            let q = c.quant?;
            if !smoothing::quant_ok(&q) || bits.cur[ci][0] < 0 {
                return None;
            }
            let mut a = [0i32; 10];
            let mut b = [0i32; 10];
            a[0] = bits.cur[ci][0];
            for k in 1..10 {
                b[k] = if self.scans > 1 { bits.prev[ci][k] } else { -1 };
                a[k] = bits.cur[ci][k];
                useful |= a[k] != 0;
            }
            cur.push(a);
            prev.push(b);
        }
        useful.then_some((cur, prev))
    }
}
