//! The output side: per component, the inverse-transformed samples of three iMCU rows (the
//! previous one, the current one and the next, which is all the vertical upsampling filters
//! reach), then per output row the upsampled components, colour-converted into RGB.

use super::color;
use super::frame::Frame;
use super::markers::Stop;
use super::upsample::{self, Method};

/// The colour space libjpeg assumes (jdapimin.c default_decompress_parms).
#[derive(Clone, Copy, PartialEq, Debug)]
pub(super) enum Space {
    Gray,
    Ycc,
    Rgb,
}

/// One component's samples for a window of three iMCU rows.
struct Plane {
    /// Sample rows per iMCU row (v * 8).
    rows: usize,
    /// width_in_blocks * 8.
    stride: usize,
    buf: Vec<u8>,
    dw: usize,
    dh: usize,
    method: Method,
}

impl Plane {
    fn row(&self, r: usize) -> &[u8] {
        let at = ((r / self.rows) % 3 * self.rows + r % self.rows) * self.stride;
        &self.buf[at..at + self.stride]
    }
}

pub(super) struct Output {
    planes: Vec<Plane>,
    /// Per component, room for one upsampled row.
    tmp: Vec<Vec<u8>>,
    sums: Vec<u16>,
    space: Space,
    width: usize,
    height: usize,
    /// Output rows per iMCU row (vmax * 8).
    rows: usize,
}

impl Output {
    pub fn new(f: &Frame, space: Space) -> Result<Output, Stop> {
        let mut planes = Vec::new();
        for c in &f.comps {
            let method = Method::choose(c.h, c.v, f.hmax, f.vmax, c.dw)?;
            let (rows, stride) = (c.v * 8, c.bw * 8);
            planes.push(Plane { rows, stride, buf: vec![0; 3 * rows * stride], dw: c.dw, dh: c.dh, method });
        }
        let tmp = planes.iter().map(|p| vec![0u8; (2 * p.dw).max(f.width) + 8]).collect();
        let sums = vec![0u16; planes.iter().map(|p| p.dw).max().unwrap_or(0) + 8];
        Ok(Output { planes, tmp, sums, space, width: f.width, height: f.height, rows: f.vmax * 8 })
    }

    /// Component `c`'s samples for iMCU row `m`, and their stride.
    pub fn slot(&mut self, c: usize, m: usize) -> (&mut [u8], usize) {
        let p = &mut self.planes[c];
        let n = p.rows * p.stride;
        let at = m % 3 * n;
        (&mut p.buf[at..at + n], p.stride)
    }

    /// Upsamples and colour-converts the output rows of iMCU row `m` into `out` (RGB8 of the
    /// whole image). Needs iMCU rows m - 1 ..= m + 1 (as far as they exist) in the slots.
    pub fn emit(&mut self, m: usize, out: &mut [u8]) {
        let w = self.width;
        let y0 = m * self.rows;
        let y1 = (y0 + self.rows).min(self.height);
        for y in y0..y1 {
            for (p, tmp) in self.planes.iter().zip(self.tmp.iter_mut()) {
                let (near, far) = p.method.rows(y, p.dh);
                match p.method {
                    Method::Full => {}
                    Method::H2V1 => upsample::h2v1(p.row(near), p.dw, tmp),
                    Method::H1V2 => upsample::h1v2(&p.row(near)[..p.dw], p.row(far), if y.is_multiple_of(2) { 1 } else { 2 }, tmp),
                    Method::H2V2 => upsample::h2v2(p.row(near), p.row(far), p.dw, &mut self.sums, tmp),
                    Method::Int { h, .. } => upsample::replicate(p.row(near), h, w, tmp),
                }
            }
            let row = |i: usize| -> &[u8] {
                let p = &self.planes[i];
                if p.method == Method::Full { &p.row(y)[..w] } else { &self.tmp[i][..w] }
            };
            let dst = &mut out[y * w * 3..(y + 1) * w * 3];
            match self.space {
                Space::Gray => color::gray_row(row(0), dst),
                Space::Ycc => color::ycc_row(row(0), row(1), row(2), dst),
                Space::Rgb => color::rgb_row(row(0), row(1), row(2), dst),
            }
        }
    }
}
