//! Progressive Huffman scans (spectral selection and successive approximation), as
//! libjpeg-turbo's jdphuff.c decodes them into the whole-image coefficient buffer, including
//! its progression bookkeeping (`coef_bits`), which block smoothing reads later.

use super::huffman::{extend, BitState, Block, Cursor, Table};
use super::markers::{ScanHeader, Stop, Stream, NATURAL};

#[derive(Clone, Copy, PartialEq)]
enum Pass {
    DcFirst,
    AcFirst,
    DcRefine,
    AcRefine,
}

/// jdphuff.c's phuff_entropy_decoder for one scan.
pub(super) struct Progressive {
    state: BitState,
    last_dc: [i32; 4],
    eobrun: u32,
    restarts_to_go: u32,
    restart_interval: u32,
    pass: Pass,
    ss: usize,
    se: usize,
    al: u32,
    /// DC tables per component of the scan (DC first scans), or the one AC table.
    tables: Vec<Table>,
}

/// Per component: the successive-approximation bit each coefficient has reached (-1: none
/// yet), now and before the latest scan that touched it (jdphuff.c / jdcoefct.c coef_bits).
pub(super) struct CoefBits {
    pub cur: Vec<[i32; 64]>,
    pub prev: Vec<[i32; 64]>,
}

impl CoefBits {
    pub fn new(ncomp: usize) -> CoefBits {
        CoefBits { cur: vec![[-1; 64]; ncomp], prev: vec![[0; 64]; ncomp] }
    }
}

impl Progressive {
    /// start_pass_phuff_decoder: validates the scan parameters, updates `coef_bits` and picks
    /// the decoding routine. `tables` maps the scan's components to derived tables (built by
    /// the caller from the DC or AC specs, as the pass needs).
    pub fn start(comps: &[usize], scan: &ScanHeader, scan_number: usize, bits: &mut CoefBits, restart_interval: u16) -> Result<(Progressive, bool), Stop> {
        let (ss, se, ah, al) = (scan.ss, scan.se, scan.ah, scan.al);
        let is_dc = ss == 0;
        let mut bad = if is_dc { se != 0 } else { ss > se || se >= 64 || comps.len() != 1 };
        if ah != 0 && al != ah.wrapping_sub(1) {
            bad = true;
        }
        if al > 13 {
            bad = true;
        }
        if bad {
            return Err(Stop::Bad(format!("JPEG has an invalid progressive scan (Ss={ss}, Se={se}, Ah={ah}, Al={al})")));
        }
        let (ss, se) = (usize::from(ss), usize::from(se));
        for &c in comps {
            for k in ss.min(1)..=se.max(9) {
                bits.prev[c][k] = if scan_number > 1 { bits.cur[c][k] } else { 0 };
            }
            for k in ss..=se {
                bits.cur[c][k] = i32::from(al);
            }
        }
        let pass = match (ah == 0, is_dc) {
            (true, true) => Pass::DcFirst,
            (true, false) => Pass::AcFirst,
            (false, true) => Pass::DcRefine,
            (false, false) => Pass::AcRefine,
        };
        let p = Progressive {
            state: BitState::default(),
            last_dc: [0; 4],
            eobrun: 0,
            restarts_to_go: u32::from(restart_interval),
            restart_interval: u32::from(restart_interval),
            pass,
            ss,
            se,
            al: u32::from(al),
            tables: Vec::new(),
        };
        // DC refinement needs no table; the caller derives DC tables for DC first scans
        // and the AC table otherwise.
        Ok((p, pass != Pass::DcRefine))
    }

    pub fn set_tables(&mut self, tables: Vec<Table>) {
        self.tables = tables;
    }

    pub fn is_dc(&self) -> bool {
        matches!(self.pass, Pass::DcFirst | Pass::DcRefine)
    }

    /// One MCU: `blocks` lists (component, block index, position in scan) of its blocks in
    /// `store`. Retried with more input where libjpeg would have suspended.
    pub fn decode_mcu(&mut self, s: &mut Stream, store: &mut [Vec<Block>], blocks: &[(usize, usize, usize)]) -> Result<(), Stop> {
        loop {
            match self.try_mcu(s, store, blocks) {
                Err(Stop::Suspend) => s.feed()?,
                r => return r,
            }
        }
    }

    fn try_mcu(&mut self, s: &mut Stream, store: &mut [Vec<Block>], blocks: &[(usize, usize, usize)]) -> Result<(), Stop> {
        if self.restart_interval != 0 && self.restarts_to_go == 0 {
            self.state.left = 0;
            s.read_restart_marker()?;
            self.last_dc = [0; 4];
            self.eobrun = 0;
            self.restarts_to_go = self.restart_interval;
            if s.unread_marker == 0 {
                s.insufficient = false;
            }
        }
        match self.pass {
            Pass::DcFirst => self.dc_first(s, store, blocks)?,
            Pass::AcFirst => self.ac_first(s, &mut store[blocks[0].0][blocks[0].1])?,
            Pass::DcRefine => self.dc_refine(s, store, blocks)?,
            Pass::AcRefine => self.ac_refine(s, &mut store[blocks[0].0][blocks[0].1])?,
        }
        if self.restart_interval != 0 {
            self.restarts_to_go -= 1;
        }
        Ok(())
    }

    /// decode_mcu_DC_first.
    fn dc_first(&mut self, s: &mut Stream, store: &mut [Vec<Block>], blocks: &[(usize, usize, usize)]) -> Result<(), Stop> {
        if s.insufficient {
            return Ok(());
        }
        let mut c = Cursor::load(self.state, s);
        let mut dc = self.last_dc;
        for &(comp, idx, ci) in blocks {
            let mut v = c.decode(s, &self.tables[ci])?;
            if v != 0 {
                let r = c.bits(s, v)?;
                v = extend(r, v);
            }
            let sum = dc[ci].checked_add(v).ok_or_else(|| Stop::Bad("JPEG has a corrupt DC coefficient (its running sum overflows)".into()))?;
            dc[ci] = sum;
            store[comp][idx][0] = sum.wrapping_shl(self.al) as i16;
        }
        c.save(&mut self.state, s);
        self.last_dc = dc;
        Ok(())
    }

    /// decode_mcu_AC_first.
    fn ac_first(&mut self, s: &mut Stream, b: &mut Block) -> Result<(), Stop> {
        if s.insufficient {
            return Ok(());
        }
        let mut eobrun = self.eobrun;
        if eobrun > 0 {
            eobrun -= 1;
        } else {
            let mut c = Cursor::load(self.state, s);
            let t = &self.tables[0];
            let mut k = self.ss;
            while k <= self.se {
                let sym = c.decode(s, t)?;
                let r = sym >> 4;
                let size = sym & 15;
                if size != 0 {
                    k += r as usize;
                    let bits = c.bits(s, size)?;
                    b[NATURAL[k]] = extend(bits, size).wrapping_shl(self.al) as i16;
                } else if r == 15 {
                    k += 15;
                } else {
                    eobrun = 1 << r;
                    if r != 0 {
                        eobrun += c.bits(s, r)? as u32;
                    }
                    eobrun -= 1;
                    break;
                }
                k += 1;
            }
            c.save(&mut self.state, s);
        }
        self.eobrun = eobrun;
        Ok(())
    }

    /// decode_mcu_DC_refine (which reads on even past a marker: zeros change nothing).
    fn dc_refine(&mut self, s: &mut Stream, store: &mut [Vec<Block>], blocks: &[(usize, usize, usize)]) -> Result<(), Stop> {
        let p1 = 1i16 << self.al;
        let mut c = Cursor::load(self.state, s);
        for &(comp, idx, _) in blocks {
            if c.bits(s, 1)? != 0 {
                store[comp][idx][0] |= p1;
            }
        }
        c.save(&mut self.state, s);
        Ok(())
    }

    /// decode_mcu_AC_refine, undoing newly non-zero coefficients if it has to suspend.
    fn ac_refine(&mut self, s: &mut Stream, b: &mut Block) -> Result<(), Stop> {
        if s.insufficient {
            return Ok(());
        }
        let p1 = 1i16 << self.al;
        let m1 = (-1i16) << self.al;
        let mut c = Cursor::load(self.state, s);
        let mut eobrun = self.eobrun;
        let mut newnz = [0usize; 64];
        let mut n_new = 0;
        let t = &self.tables[0];
        let (ss, se) = (self.ss, self.se);
        // A correction bit for an already non-zero coefficient: 1 means one more in magnitude.
        let correct = |coef: &mut i16, c: &mut Cursor, s: &mut Stream| -> Result<(), Stop> {
            if c.bits(s, 1)? != 0 && *coef & p1 == 0 {
                *coef = if *coef >= 0 { coef.wrapping_add(p1) } else { coef.wrapping_add(m1) };
            }
            Ok(())
        };
        let mut run = || -> Result<(), Stop> {
            let mut k = ss;
            if eobrun == 0 {
                while k <= se {
                    let sym = c.decode(s, t)?;
                    let mut r = sym >> 4;
                    let size = sym & 15;
                    let mut val = 0i16;
                    if size != 0 {
                        // A size other than 1 is corrupt; libjpeg warns and reads one bit anyway.
                        val = if c.bits(s, 1)? != 0 { p1 } else { m1 };
                    } else if r != 15 {
                        eobrun = 1 << r;
                        if r != 0 {
                            eobrun += c.bits(s, r)? as u32;
                        }
                        break;
                    }
                    loop {
                        let coef = &mut b[NATURAL[k]];
                        if *coef != 0 {
                            correct(coef, &mut c, s)?;
                        } else {
                            r -= 1;
                            if r < 0 {
                                break;
                            }
                        }
                        k += 1;
                        if k > se {
                            break;
                        }
                    }
                    if val != 0 {
                        let pos = NATURAL[k];
                        b[pos] = val;
                        newnz[n_new] = pos;
                        n_new += 1;
                    }
                    k += 1;
                }
            }
            if eobrun > 0 {
                while k <= se {
                    let coef = &mut b[NATURAL[k]];
                    if *coef != 0 {
                        correct(coef, &mut c, s)?;
                    }
                    k += 1;
                }
                eobrun -= 1;
            }
            Ok(())
        };
        match run() {
            Ok(()) => {
                c.save(&mut self.state, s);
                self.eobrun = eobrun;
                Ok(())
            }
            Err(e) => {
                for &pos in &newnz[..n_new] {
                    b[pos] = 0;
                }
                Err(e)
            }
        }
    }
}
