//! ImageDecoder (opset 20).

use image::{DynamicImage, GenericImageView};
use runnx_ir::{Tensor, Value};

use crate::{Inputs, Kernel, NodeInfo, OpError, Registry};

pub(super) fn register(reg: &mut Registry) {
    reg.add("", "ImageDecoder", 20, build);
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum PixelFormat {
    Rgb,
    Bgr,
    Grayscale,
}

/// ONNX `ImageDecoder`: decodes an encoded image (a 1-D uint8 tensor holding a JPEG, JPEG 2000,
/// PNG, BMP, TIFF, WebP or PNM file) into `[H, W, 3]` RGB or BGR, or `[H, W, 1]` grayscale, uint8.
///
/// Colour images become grayscale with ITU-R 601 luma weights in 16-bit fixed point,
/// `(19595·R + 38470·G + 7471·B + 2¹⁵) >> 16`, the conversion Pillow (the reference) applies;
/// images with more than 8 bits per sample are scaled down to 8. Alpha is dropped.
struct ImageDecoder {
    format: PixelFormat,
}

fn build(info: &NodeInfo) -> Result<Box<dyn Kernel>, OpError> {
    let format = match info.attr_string("pixel_format", "RGB")?.as_str() {
        "RGB" => PixelFormat::Rgb,
        "BGR" => PixelFormat::Bgr,
        "Grayscale" => PixelFormat::Grayscale,
        other => {
            return Err(OpError::attribute(
                "pixel_format",
                format!("expected RGB, BGR or Grayscale, got '{other}'"),
            ))
        }
    };
    Ok(Box::new(ImageDecoder { format }))
}

/// The JPEG 2000 file format (JP2) box signature and the raw codestream's first markers.
const JP2_SIGNATURE: &[u8] = b"\x00\x00\x00\x0cjP  \r\n\x87\n";
const J2C_SIGNATURE: &[u8] = b"\xff\x4f\xff\x51";

/// Pillow's RGB to luma conversion.
fn luma(r: u8, g: u8, b: u8) -> u8 {
    ((19595 * u32::from(r) + 38470 * u32::from(g) + 7471 * u32::from(b) + 0x8000) >> 16) as u8
}

fn decode(bytes: &[u8], format: PixelFormat) -> Result<Tensor, OpError> {
    let failed =
        |e: &dyn std::fmt::Display| OpError::input(0, format!("cannot decode the image: {e}"));
    let img = if bytes.starts_with(JP2_SIGNATURE) || bytes.starts_with(J2C_SIGNATURE) {
        let j2k = hayro_jpeg2000::Image::new(bytes, &hayro_jpeg2000::DecodeSettings::default())
            .map_err(|e| failed(&e))?;
        DynamicImage::from_decoder(j2k).map_err(|e| failed(&e))?
    } else {
        image::load_from_memory(bytes).map_err(|e| failed(&e))?
    };
    let (w, h) = img.dimensions();
    let (w, h) = (w as usize, h as usize);
    let gray_source = !img.color().has_color();
    let (channels, pixels) = match format {
        PixelFormat::Grayscale if gray_source => (1, img.to_luma8().into_raw()),
        PixelFormat::Grayscale => {
            let rgb = img.to_rgb8().into_raw();
            (
                1,
                rgb.chunks_exact(3)
                    .map(|p| luma(p[0], p[1], p[2]))
                    .collect(),
            )
        }
        PixelFormat::Rgb => (3, img.to_rgb8().into_raw()),
        PixelFormat::Bgr => {
            let mut rgb = img.to_rgb8().into_raw();
            rgb.chunks_exact_mut(3).for_each(|p| p.swap(0, 2));
            (3, rgb)
        }
    };
    Ok(Tensor::from_vec([h, w, channels], pixels)?)
}

impl Kernel for ImageDecoder {
    fn run(&self, inputs: Inputs) -> Result<Vec<Value>, OpError> {
        let t = inputs.tensor(0)?;
        if t.rank() != 1 {
            return Err(OpError::input(
                0,
                format!("expected a 1-D uint8 stream, got shape {:?}", t.shape()),
            ));
        }
        let bytes = inputs.slice::<u8>(0)?;
        Ok(vec![Value::Tensor(decode(bytes, self.format)?)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn luma_matches_pillow_weights() {
        assert_eq!(luma(255, 255, 255), 255);
        assert_eq!(luma(0, 0, 0), 0);
        assert_eq!(luma(255, 0, 0), 76);
        assert_eq!(luma(0, 255, 0), 150);
        assert_eq!(luma(0, 0, 255), 29);
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(decode(&[1, 2, 3], PixelFormat::Rgb).is_err());
    }
}
