//! Frame and scan geometry: component sizes in blocks and samples, MCU layout, as
//! libjpeg-turbo's jdinput.c initial_setup and per_scan_setup compute them.

use super::huffman::Block;
use super::markers::{FrameHeader, Stop};

/// jmorecfg.h JPEG_MAX_DIMENSION.
const MAX_DIMENSION: usize = 65500;
/// jpeglib.h D_MAX_BLOCKS_IN_MCU.
const MAX_BLOCKS_IN_MCU: usize = 10;

pub(super) struct Component {
    pub id: u8,
    pub h: usize,
    pub v: usize,
    pub tq: usize,
    /// width_in_blocks / height_in_blocks.
    pub bw: usize,
    pub bh: usize,
    /// downsampled_width / downsampled_height: the samples that hold image data.
    pub dw: usize,
    pub dh: usize,
    /// Block counts rounded up to whole MCUs, the size of the coefficient buffer.
    pub bw_pad: usize,
    pub bh_pad: usize,
    /// The quantization table, latched at the first scan that includes the component.
    pub quant: Option<[u16; 64]>,
}

pub(super) struct Frame {
    pub width: usize,
    pub height: usize,
    pub progressive: bool,
    pub comps: Vec<Component>,
    pub hmax: usize,
    pub vmax: usize,
    /// total_iMCU_rows.
    pub imcu_rows: usize,
    /// MCUs per row of an interleaved scan.
    pub mcus_per_row: usize,
}

/// `n` zeroed elements, or an error rather than an abort when memory runs out (the largest
/// image allowed needs about 1.6 GB).
pub(super) fn zeroed<T: Clone>(n: usize, zero: T) -> Result<Vec<T>, Stop> {
    let mut v = Vec::new();
    v.try_reserve_exact(n).map_err(|_| Stop::Bad(format!("JPEG needs {n} x {} bytes of memory to decode, which cannot be allocated", std::mem::size_of::<T>())))?;
    v.resize(n, zero);
    Ok(v)
}

fn div_up(a: usize, b: usize) -> usize {
    a.div_ceil(b)
}

impl Frame {
    /// initial_setup's checks and sizes.
    pub fn new(h: &FrameHeader) -> Result<Frame, Stop> {
        if h.width > MAX_DIMENSION || h.height > MAX_DIMENSION {
            return Err(Stop::Bad(format!("JPEG is {}x{}, over libjpeg's {MAX_DIMENSION}-pixel side limit", h.width, h.height)));
        }
        if h.comps.iter().any(|c| !(1..=4).contains(&c.h) || !(1..=4).contains(&c.v)) {
            return Err(Stop::Bad("JPEG has a sampling factor outside 1..4".into()));
        }
        let hmax = h.comps.iter().map(|c| c.h).max().unwrap_or(1);
        let vmax = h.comps.iter().map(|c| c.v).max().unwrap_or(1);
        let comps = h
            .comps
            .iter()
            .map(|c| {
                let bw = div_up(h.width * c.h, hmax * 8);
                let bh = div_up(h.height * c.v, vmax * 8);
                Component {
                    id: c.id,
                    h: c.h,
                    v: c.v,
                    tq: usize::from(c.tq),
                    bw,
                    bh,
                    dw: div_up(h.width * c.h, hmax),
                    dh: div_up(h.height * c.v, vmax),
                    bw_pad: div_up(bw, c.h) * c.h,
                    bh_pad: div_up(bh, c.v) * c.v,
                    quant: None,
                }
            })
            .collect();
        Ok(Frame {
            width: h.width,
            height: h.height,
            progressive: h.progressive,
            comps,
            hmax,
            vmax,
            imcu_rows: div_up(h.height, vmax * 8),
            mcus_per_row: div_up(h.width, hmax * 8),
        })
    }

    /// A whole-image coefficient buffer per component, zeroed (what jdcoefct.c requests).
    pub fn coefficient_buffers(&self) -> Result<Vec<Vec<Block>>, Stop> {
        self.comps.iter().map(|c| zeroed(c.bw_pad * c.bh_pad, [0i16; 64])).collect()
    }
}

/// One block of an MCU: its component, offset (in blocks) within the MCU, and the position
/// of its component in the scan.
#[derive(Clone, Copy)]
pub(super) struct McuBlock {
    pub comp: usize,
    pub dx: usize,
    pub dy: usize,
    pub scan_pos: usize,
}

/// per_scan_setup: how a scan's MCUs tile the image.
pub(super) struct ScanLayout {
    pub interleaved: bool,
    pub mcus_per_row: usize,
    pub mcu_rows: usize,
    pub blocks: Vec<McuBlock>,
}

impl ScanLayout {
    pub fn new(f: &Frame, comps: &[usize]) -> Result<ScanLayout, Stop> {
        if comps.len() == 1 {
            let c = &f.comps[comps[0]];
            return Ok(ScanLayout { interleaved: false, mcus_per_row: c.bw, mcu_rows: c.bh, blocks: vec![McuBlock { comp: comps[0], dx: 0, dy: 0, scan_pos: 0 }] });
        }
        let mut blocks = Vec::new();
        for (pos, &ci) in comps.iter().enumerate() {
            let c = &f.comps[ci];
            if blocks.len() + c.h * c.v > MAX_BLOCKS_IN_MCU {
                return Err(Stop::Bad(format!("JPEG has more than {MAX_BLOCKS_IN_MCU} blocks per MCU (sampling factors too large)")));
            }
            for dy in 0..c.v {
                for dx in 0..c.h {
                    blocks.push(McuBlock { comp: ci, dx, dy, scan_pos: pos });
                }
            }
        }
        Ok(ScanLayout { interleaved: true, mcus_per_row: f.mcus_per_row, mcu_rows: f.imcu_rows, blocks })
    }

    /// The block (column, row) of MCU (mx, my)'s block `b`.
    #[inline]
    pub fn block_at(&self, f: &Frame, b: &McuBlock, mx: usize, my: usize) -> (usize, usize) {
        if self.interleaved {
            let c = &f.comps[b.comp];
            (mx * c.h + b.dx, my * c.v + b.dy)
        } else {
            (mx, my)
        }
    }

    /// The iMCU row an MCU row belongs to (input_iMCU_row).
    #[inline]
    pub fn imcu_row(&self, f: &Frame, my: usize) -> usize {
        if self.interleaved { my } else { my / f.comps[self.blocks[0].comp].v }
    }
}
