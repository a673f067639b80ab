//! transformers' `Qwen2VLImageProcessorPil` for one still image: decode to 8-bit RGB (PNG with
//! the `image` crate, transparency composited onto white as transformers' convert_to_rgb does;
//! JPEG with pgpo's own decoder in `jpeg`, bit-exact with the libjpeg-turbo that Pillow
//! uses, where jpeg-decoder was up to 3 levels off and zune-jpeg up to 8); smart-resize to
//! multiples of patch x merge within [min_pixels, max_pixels] with Pillow's bicubic; rescale
//! and normalise; repeat the frame to temporal_patch_size; cut [N, C * T * P * P] patches in
//! the processor's order (2 x 2 merge blocks row-major, patches row-major within each).

use crate::json_fields::{self, Fields};
use super::resample::resize_bicubic;
use crate::error::{Error, Result};
use image::metadata::Orientation;
use image::ImageDecoder;
use std::path::Path;

const CLIP_MEAN: [f64; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
const CLIP_STD: [f64; 3] = [0.268_629_54, 0.261_302_58, 0.275_777_11];
/// PIL's code for BICUBIC, the only resampling the Qwen2-VL processors use.
const PIL_BICUBIC: usize = 3;

#[derive(Clone, Debug, PartialEq)]
pub struct ImageProcessorConfig {
    pub min_pixels: usize,
    pub max_pixels: usize,
    pub patch_size: usize,
    pub merge_size: usize,
    pub temporal_patch_size: usize,
    pub do_resize: bool,
    pub do_rescale: bool,
    pub rescale_factor: f64,
    pub do_normalize: bool,
    pub image_mean: [f64; 3],
    pub image_std: [f64; 3],
}

impl Default for ImageProcessorConfig {
    /// The processor's class defaults.
    fn default() -> Self {
        ImageProcessorConfig {
            min_pixels: 56 * 56,
            max_pixels: 28 * 28 * 1280,
            patch_size: 14,
            merge_size: 2,
            temporal_patch_size: 2,
            do_resize: true,
            do_rescale: true,
            rescale_factor: 1.0 / 255.0,
            do_normalize: true,
            image_mean: CLIP_MEAN,
            image_std: CLIP_STD,
        }
    }
}

fn three(f: &Fields, key: &str, default: [f64; 3]) -> Result<[f64; 3]> {
    let v = f.f64s_or(key, &default)?;
    <[f64; 3]>::try_from(v.as_slice()).map_err(|_| f.err(key, &format!("must hold 3 numbers (R, G, B), got {}", v.len())))
}

impl ImageProcessorConfig {
    /// Reads preprocessor_config.json's text. Pixel bounds come from top-level
    /// `min_pixels`/`max_pixels` (published checkpoints) or `size.shortest_edge`/
    /// `size.longest_edge` (transformers 5), else the class defaults.
    pub fn parse(text: &str, file: &str) -> Result<ImageProcessorConfig> {
        let map = json_fields::object(text, file)?;
        let f = Fields { file, prefix: String::new(), map: &map };
        let d = ImageProcessorConfig::default();
        let (mut min_pixels, mut max_pixels) = (d.min_pixels, d.max_pixels);
        if f.get("size").is_some() {
            let size = f.object("size")?;
            min_pixels = size.usize_or("shortest_edge", size.usize_or("min_pixels", min_pixels)?)?;
            max_pixels = size.usize_or("longest_edge", size.usize_or("max_pixels", max_pixels)?)?;
        }
        min_pixels = f.usize_or("min_pixels", min_pixels)?;
        max_pixels = f.usize_or("max_pixels", max_pixels)?;
        if max_pixels as u64 > MAX_IMAGE_PIXELS {
            return Err(f.err("max_pixels", &format!("is {max_pixels}, above the {MAX_IMAGE_PIXELS}-pixel limit on images")));
        }
        if min_pixels > max_pixels {
            return Err(f.err("min_pixels", &format!("{min_pixels} is above max_pixels {max_pixels}")));
        }
        let resample = f.usize_or("resample", PIL_BICUBIC)?;
        if resample != PIL_BICUBIC {
            return Err(f.err("resample", &format!("is {resample}; pgpo implements the Qwen2-VL processor's bicubic (3) only")));
        }
        let c = ImageProcessorConfig {
            min_pixels,
            max_pixels,
            patch_size: f.usize_or("patch_size", d.patch_size)?,
            merge_size: f.usize_or("merge_size", d.merge_size)?,
            temporal_patch_size: f.usize_or("temporal_patch_size", d.temporal_patch_size)?,
            do_resize: f.bool_or("do_resize", true)?,
            do_rescale: f.bool_or("do_rescale", true)?,
            rescale_factor: f.f64_or("rescale_factor", d.rescale_factor)?,
            do_normalize: f.bool_or("do_normalize", true)?,
            image_mean: three(&f, "image_mean", CLIP_MEAN)?,
            image_std: three(&f, "image_std", CLIP_STD)?,
        };
        for (key, v, max) in [("patch_size", c.patch_size, 1024), ("merge_size", c.merge_size, 64), ("temporal_patch_size", c.temporal_patch_size, 64)] {
            if v == 0 || v > max {
                return Err(f.err(key, &format!("is {v}; it must be between 1 and {max}")));
            }
        }
        if c.image_std.iter().any(|&s| s == 0.0) {
            return Err(f.err("image_std", "must not contain 0"));
        }
        if !f.bool_or("do_convert_rgb", true)? {
            return Err(f.err("do_convert_rgb", "false is not supported: pgpo always converts to RGB"));
        }
        Ok(c)
    }

    /// `dir/preprocessor_config.json`, or the class defaults when the file is absent.
    pub fn load(dir: &Path) -> Result<ImageProcessorConfig> {
        let path = dir.join("preprocessor_config.json");
        match std::fs::read_to_string(&path) {
            Ok(text) => ImageProcessorConfig::parse(&text, &path.display().to_string()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ImageProcessorConfig::default()),
            Err(e) => Err(Error::Config { file: path.display().to_string(), field: String::new(), msg: format!("cannot be read: {e}") }),
        }
    }

    /// transformers' `smart_resize`: (height, width), multiples of patch x merge.
    pub fn smart_resize(&self, height: usize, width: usize) -> Result<(usize, usize)> {
        let factor = (self.patch_size * self.merge_size) as f64;
        let (h, w) = (height as f64, width as f64);
        if h.max(w) / h.min(w) > 200.0 {
            return Err(Error::input("image", format!("aspect ratio {width}x{height} is above 200, which the processor refuses")));
        }
        // Python's round() rounds half to even.
        let mut hb = (h / factor).round_ties_even() * factor;
        let mut wb = (w / factor).round_ties_even() * factor;
        if hb * wb > self.max_pixels as f64 {
            let beta = (h * w / self.max_pixels as f64).sqrt();
            hb = factor.max((h / beta / factor).floor() * factor);
            wb = factor.max((w / beta / factor).floor() * factor);
        } else if hb * wb < self.min_pixels as f64 {
            let beta = (self.min_pixels as f64 / (h * w)).sqrt();
            hb = (h * beta / factor).ceil() * factor;
            wb = (w * beta / factor).ceil() * factor;
        }
        if hb * wb > MAX_IMAGE_PIXELS as f64 {
            return Err(Error::input("image", format!("would be resized to {wb}x{hb}, over the {MAX_IMAGE_PIXELS}-pixel limit (patch_size x merge_size = {factor} is too coarse)")));
        }
        Ok((hb as usize, wb as usize))
    }
}

/// A decoded image: 8-bit RGB, row-major.
#[derive(Clone, Debug)]
pub struct RgbImage {
    pub width: usize,
    pub height: usize,
    pub data: Vec<u8>,
}

/// Decodes a PNG or JPEG file; errors name the file.
pub fn load_image(path: &Path) -> Result<RgbImage> {
    let bad = |msg: String| Error::input("image", format!("{}: {msg}", path.display()));
    let bytes = std::fs::read(path).map_err(|e| bad(format!("cannot be read: {e}")))?;
    decode_image(&bytes).map_err(|e| match e {
        Error::Input { msg, .. } => bad(msg),
        e => e,
    })
}

/// PIL's decompression-bomb limit (twice `Image.MAX_IMAGE_PIXELS`): larger images are refused
/// before any pixel is decoded.
pub const MAX_IMAGE_PIXELS: u64 = super::jpeg::MAX_PIXELS;

fn check_size(width: u64, height: u64) -> Result<()> {
    if width == 0 || height == 0 {
        return Err(Error::input("image", format!("has zero size ({width}x{height})")));
    }
    if width * height > MAX_IMAGE_PIXELS {
        return Err(Error::input("image", format!("is {width}x{height}, over the {MAX_IMAGE_PIXELS}-pixel limit (a decompression bomb?)")));
    }
    Ok(())
}

fn decode_jpeg(bytes: &[u8]) -> Result<RgbImage> {
    let d = super::jpeg::decode(bytes).map_err(|e| Error::input("image", format!("does not decode as JPEG: {e}")))?;
    let orientation = d.exif.as_deref().and_then(Orientation::from_exif_chunk).unwrap_or(Orientation::NoTransforms);
    oriented(RgbImage { width: d.width, height: d.height, data: d.data }, orientation)
}

/// The image as it is meant to be seen: a camera's Exif orientation applied, as transformers'
/// `load_image` does (PIL's `ImageOps.exif_transpose`) before its processor sees the image.
fn oriented(img: RgbImage, orientation: Orientation) -> Result<RgbImage> {
    if orientation == Orientation::NoTransforms {
        return Ok(img);
    }
    let (w, h) = (img.width as u32, img.height as u32);
    let buffer = image::RgbImage::from_raw(w, h, img.data).ok_or_else(|| Error::input("image", format!("decoded to fewer bytes than its {w}x{h} pixels")))?;
    let mut d = image::DynamicImage::ImageRgb8(buffer);
    d.apply_orientation(orientation);
    let (width, height) = (d.width() as usize, d.height() as usize);
    Ok(RgbImage { width, height, data: d.into_rgb8().into_raw() })
}

/// Decodes PNG or JPEG bytes, with the file's Exif orientation applied.
pub fn decode_image(bytes: &[u8]) -> Result<RgbImage> {
    if bytes.starts_with(&[0xFF, 0xD8]) {
        return decode_jpeg(bytes);
    }
    let not_image = |e: image::ImageError| Error::input("image", format!("does not decode as PNG or JPEG: {e}"));
    let reader = || image::ImageReader::new(std::io::Cursor::new(bytes)).with_guessed_format().map_err(|e| Error::input("image", format!("cannot be read: {e}")));
    let (w, h) = reader()?.into_dimensions().map_err(not_image)?;
    check_size(u64::from(w), u64::from(h))?;
    let mut decoder = reader()?.into_decoder().map_err(not_image)?;
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let img = image::DynamicImage::from_decoder(decoder).map_err(not_image)?;
    let (width, height) = (img.width() as usize, img.height() as usize);
    let data = if img.color().has_alpha() { over_white(&img.to_rgba8().into_raw()) } else { img.to_rgb8().into_raw() };
    oriented(RgbImage { width, height, data }, orientation)
}

/// PIL's alpha_composite of RGBA pixels over opaque white, in its integer arithmetic (7 extra
/// bits, divisions by 255 rounded with the shift trick), then dropping alpha.
fn over_white(rgba: &[u8]) -> Vec<u8> {
    const BITS: u32 = 7;
    let div255 = |a: u32| ((a >> 8) + a) >> 8;
    rgba.chunks_exact(4)
        .flat_map(|p| {
            let a = u32::from(p[3]);
            let (c1, c2) = (a << BITS, (255 - a) << BITS);
            let mix = |c: u8| if a == 0 { 255 } else { (div255(u32::from(c) * c1 + 255 * c2 + (0x80 << BITS)) >> BITS) as u8 };
            [mix(p[0]), mix(p[1]), mix(p[2])]
        })
        .collect()
}

/// One image's model input.
pub struct Patches {
    /// [N, 3 * temporal * patch * patch].
    pub pixels: Vec<f32>,
    /// (t, h, w) in patches.
    pub grid: [usize; 3],
}

pub fn preprocess(img: &RgbImage, c: &ImageProcessorConfig) -> Result<Patches> {
    let (h, w) = if c.do_resize { c.smart_resize(img.height, img.width)? } else { (img.height, img.width) };
    let unit = c.patch_size * c.merge_size;
    if h % unit != 0 || w % unit != 0 || h == 0 || w == 0 {
        return Err(Error::input("image", format!("{w}x{h} is not a multiple of patch_size x merge_size = {unit} (do_resize is false)")));
    }
    let rgb = resize_bicubic(&img.data, img.width, img.height, w, h);
    // In transformers' order and precision, so the values are equal to the last bit: the
    // rescale in f64 rounded to f32, then (x - mean) / std in f32 with f32 mean and std.
    let (mean, std) = (c.image_mean.map(|m| m as f32), c.image_std.map(|s| s as f32));
    let value = |y: usize, x: usize, ch: usize| -> f32 {
        let byte = rgb[(y * w + x) * 3 + ch];
        let v = if c.do_rescale { (f64::from(byte) * c.rescale_factor) as f32 } else { f32::from(byte) };
        if c.do_normalize { (v - mean[ch]) / std[ch] } else { v }
    };
    let (p, m, tp) = (c.patch_size, c.merge_size, c.temporal_patch_size);
    let (gh, gw) = (h / p, w / p);
    let mut pixels = Vec::with_capacity(gh * gw * 3 * tp * p * p);
    for bh in 0..gh / m {
        for bw in 0..gw / m {
            for mh in 0..m {
                for mw in 0..m {
                    let (py, px) = ((bh * m + mh) * p, (bw * m + mw) * p);
                    for ch in 0..3 {
                        for _ in 0..tp {
                            for y in 0..p {
                                for x in 0..p {
                                    pixels.push(value(py + y, px + x, ch));
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    Ok(Patches { pixels, grid: [1, gh, gw] })
}
