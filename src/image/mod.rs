//! Images, before the model sees them: decoding (PNG and other formats through `image`, JPEG
//! by our own decoder, bit-exact with libjpeg-turbo), Exif orientation, and the Qwen2-VL image
//! processor (PIL's bicubic resampling, rescale and normalisation, patches in the vision
//! tower's order).

pub mod jpeg;
pub mod processor;
pub mod resample;
