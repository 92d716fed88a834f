//! Single-page greyscale TIFF frames: 16-bit unsigned raw counts and 32-bit float masters
//! and radiance maps.
//!
//! Owns: decoding with strict checks (bit depth, sample format, one channel, complete
//! strips) and encoding. A truncated or mis-typed file is an error naming the file, never a
//! partially filled frame.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom};
use std::path::Path;

use ndarray::Array2;
use tiff::decoder::{Decoder, DecodingResult, Limits};
use tiff::encoder::{colortype, TiffEncoder};
use tiff::ColorType;

use super::FormatError;

/// The widest and tallest frame read (a 4096² sensor unbinned is the largest imager here;
/// twice that leaves room): a file claiming more is damaged, and is refused before any
/// memory is taken for it.
pub const MAX_FRAME_SIDE_PX: u32 = 8192;

/// What the decoder may allocate: one frame of the largest size at 4 bytes a sample.
fn frame_limits() -> Limits {
    let frame_bytes = (MAX_FRAME_SIDE_PX as usize).pow(2) * 4;
    let mut l = Limits::default();
    l.decoding_buffer_size = frame_bytes;
    l.intermediate_buffer_size = frame_bytes;
    l
}

/// Run one step of the `tiff` decoder, its errors named by `path`. The decoder panics on
/// some damaged files (those found are refused before it runs, `check_first_ifd`); any
/// other such panic becomes an error naming the file instead of ending the process's
/// thread.
fn guarded<T>(
    path: &Path,
    step: impl FnOnce() -> Result<T, tiff::TiffError>,
) -> Result<T, FormatError> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(step)) {
        Ok(r) => r.map_err(|e| bad_tiff(path, e)),
        Err(_) => Err(FormatError::invalid(
            path,
            "the TIFF decoder failed on this file",
            "the file is damaged: copy it again from the instrument",
        )),
    }
}

/// A decoding error, saying "truncated" when the file ends early.
fn bad_tiff(path: &Path, e: tiff::TiffError) -> FormatError {
    let detail = match &e {
        tiff::TiffError::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            "the file is truncated (it ends before its pixel data does); copy it again from the instrument".to_string()
        }
        _ => format!("{e}; re-export it as a single-page greyscale TIFF (16-bit for raw frames)"),
    };
    FormatError::BadTiff {
        path: path.to_path_buf(),
        detail,
    }
}

/// Read a file's bytes once: the SHA-256 of what was decoded is then exactly what was hashed.
pub fn read_f32_and_sha256(path: &Path) -> Result<(Array2<f32>, String), FormatError> {
    use sha2::{Digest, Sha256};
    let bytes = std::fs::read(path).map_err(|e| FormatError::io(path, e))?;
    let sha = format!("{:x}", Sha256::digest(&bytes));
    let mut cursor = std::io::Cursor::new(bytes);
    check_first_ifd(path, &mut cursor)?;
    let mut dec = guarded(path, || Decoder::new(cursor))?.with_limits(frame_limits());
    let (w, h) = guarded(path, || dec.dimensions())?;
    check_size(path, w, h)?;
    match guarded(path, || dec.read_image())? {
        DecodingResult::F32(data) => Ok((to_array(path, h as usize, w as usize, data)?, sha)),
        other => Err(FormatError::WrongPixelType {
            path: path.to_path_buf(),
            expected: "32-bit float greyscale",
            found: result_kind(&other).to_string(),
            fix: "calibration masters are 32-bit float TIFFs written by `lumiq calibrate`",
        }),
    }
}

fn open_decoder(path: &Path) -> Result<Decoder<BufReader<File>>, FormatError> {
    let mut file = File::open(path).map_err(|e| FormatError::io(path, e))?;
    check_first_ifd(path, &mut file)?;
    let decoder = guarded(path, || Decoder::new(BufReader::new(file)))?;
    Ok(decoder.with_limits(frame_limits()))
}

/// BitsPerSample (258) and SampleFormat (339): the `tiff` crate indexes their first value
/// without checking that there is one, and panics on a tag with no value or with values of
/// a type that is not an unsigned integer (which it reads as none).
const TAGS_NEEDING_A_VALUE: [(u16, &str); 2] = [(258, "BitsPerSample"), (339, "SampleFormat")];

/// Look at the first IFD (the one image read) before the decoder does, and refuse a tag
/// the decoder would panic on (see [`TAGS_NEEDING_A_VALUE`]). Anything else that is wrong
/// is left to the decoder's own errors. Leaves `r` at its start.
fn check_first_ifd<R: Read + Seek>(path: &Path, r: &mut R) -> Result<(), FormatError> {
    let found = first_ifd_empty_tag(r).map_err(|e| FormatError::io(path, e))?;
    r.seek(SeekFrom::Start(0))
        .map_err(|e| FormatError::io(path, e))?;
    match found {
        Some(name) => Err(FormatError::invalid(
            path,
            format!("the TIFF tag {name} is present but holds no unsigned integer value"),
            "the file is damaged: copy it again from the instrument",
        )),
        None => Ok(()),
    }
}

/// The name of a tag of [`TAGS_NEEDING_A_VALUE`] with no value, or values of another type
/// than BYTE, SHORT, LONG or LONG8, in the first IFD, if any
/// (classic and BigTIFF, either byte order). A file too short or not a TIFF gives `None`:
/// the decoder says what is wrong with it.
fn first_ifd_empty_tag<R: Read + Seek>(r: &mut R) -> std::io::Result<Option<&'static str>> {
    let mut head = [0u8; 16];
    let mut got = 0;
    while got < head.len() {
        match r.read(&mut head[got..])? {
            0 => break,
            n => got += n,
        }
    }
    let le = match &head[..2] {
        b"II" => true,
        b"MM" => false,
        _ => return Ok(None),
    };
    let uint = |b: &[u8]| -> u64 {
        let mut v = 0u64;
        for i in 0..b.len() {
            let byte = if le { b[b.len() - 1 - i] } else { b[i] };
            v = (v << 8) | u64::from(byte);
        }
        v
    };
    if got < 8 {
        return Ok(None);
    }
    let big = match uint(&head[2..4]) {
        42 => false,
        43 if got == 16 => true,
        _ => return Ok(None),
    };
    let ifd = if big {
        uint(&head[8..16])
    } else {
        uint(&head[4..8])
    };
    if r.seek(SeekFrom::Start(ifd)).is_err() {
        return Ok(None);
    }
    let mut count = [0u8; 8];
    let count_len = if big { 8 } else { 2 };
    if r.read_exact(&mut count[..count_len]).is_err() {
        return Ok(None);
    }
    let entries = uint(&count[..count_len]).min(4096) as usize;
    let entry_len = if big { 20 } else { 12 };
    let mut buf = vec![0u8; entries * entry_len];
    if r.read_exact(&mut buf).is_err() {
        return Ok(None);
    }
    for e in buf.chunks_exact(entry_len) {
        let tag = uint(&e[0..2]) as u16;
        let kind = uint(&e[2..4]);
        let values = if big { uint(&e[4..12]) } else { uint(&e[4..8]) };
        if let Some((_, name)) = TAGS_NEEDING_A_VALUE.iter().find(|(t, _)| *t == tag) {
            if values == 0 || !matches!(kind, 1 | 3 | 4 | 16) {
                return Ok(Some(name));
            }
        }
    }
    Ok(None)
}

/// Refuse an empty image or one larger than [`MAX_FRAME_SIDE_PX`] on a side.
fn check_size(path: &Path, w: u32, h: u32) -> Result<(), FormatError> {
    if w == 0 || h == 0 {
        return Err(FormatError::invalid(
            path,
            "the image has zero width or height",
            "re-export the frame",
        ));
    }
    if w > MAX_FRAME_SIDE_PX || h > MAX_FRAME_SIDE_PX {
        return Err(FormatError::invalid(
            path,
            format!(
                "the image claims {w}×{h} pixels, more than the {MAX_FRAME_SIDE_PX}×{MAX_FRAME_SIDE_PX} of any camera frame"
            ),
            "the file is damaged or is not a camera frame: copy it again from the instrument",
        ));
    }
    Ok(())
}

fn dimensions(
    dec: &mut Decoder<BufReader<File>>,
    path: &Path,
) -> Result<(usize, usize), FormatError> {
    let (w, h) = guarded(path, || dec.dimensions())?;
    check_size(path, w, h)?;
    Ok((h as usize, w as usize))
}

fn decode(dec: &mut Decoder<BufReader<File>>, path: &Path) -> Result<DecodingResult, FormatError> {
    guarded(path, || dec.read_image())
}

/// Read a 16-bit unsigned greyscale TIFF (raw counts) as `[row, column]`.
pub fn read_u16(path: &Path) -> Result<Array2<u16>, FormatError> {
    let mut dec = open_decoder(path)?;
    let (rows, cols) = dimensions(&mut dec, path)?;
    let ct = guarded(path, || dec.colortype())?;
    if ct != ColorType::Gray(16) {
        return Err(FormatError::WrongPixelType {
            path: path.to_path_buf(),
            expected: "16-bit greyscale (raw counts)",
            found: format!("{ct:?}"),
            fix: "raw frames must be saved as 16-bit unsigned single-channel TIFF",
        });
    }
    match decode(&mut dec, path)? {
        DecodingResult::U16(data) => to_array(path, rows, cols, data),
        other => Err(FormatError::WrongPixelType {
            path: path.to_path_buf(),
            expected: "16-bit unsigned integer samples",
            found: result_kind(&other).to_string(),
            fix: "raw frames must be saved as 16-bit unsigned single-channel TIFF",
        }),
    }
}

/// Read a 32-bit float greyscale TIFF (masters, radiance maps) as `[row, column]`.
pub fn read_f32(path: &Path) -> Result<Array2<f32>, FormatError> {
    let mut dec = open_decoder(path)?;
    let (rows, cols) = dimensions(&mut dec, path)?;
    match decode(&mut dec, path)? {
        DecodingResult::F32(data) => to_array(path, rows, cols, data),
        other => Err(FormatError::WrongPixelType {
            path: path.to_path_buf(),
            expected: "32-bit float greyscale",
            found: result_kind(&other).to_string(),
            fix: "calibration masters are 32-bit float TIFFs written by `lumiq calibrate`",
        }),
    }
}

fn result_kind(r: &DecodingResult) -> &'static str {
    match r {
        DecodingResult::U8(_) => "8-bit unsigned samples",
        DecodingResult::U16(_) => "16-bit unsigned samples",
        DecodingResult::U32(_) => "32-bit unsigned samples",
        DecodingResult::U64(_) => "64-bit unsigned samples",
        DecodingResult::F32(_) => "32-bit float samples",
        DecodingResult::F64(_) => "64-bit float samples",
        DecodingResult::I8(_) => "8-bit signed samples",
        DecodingResult::I16(_) => "16-bit signed samples",
        DecodingResult::I32(_) => "32-bit signed samples",
        DecodingResult::I64(_) => "64-bit signed samples",
        _ => "an unsupported sample type",
    }
}

fn to_array<T>(
    path: &Path,
    rows: usize,
    cols: usize,
    data: Vec<T>,
) -> Result<Array2<T>, FormatError> {
    let n = data.len();
    Array2::from_shape_vec((rows, cols), data).map_err(|_| FormatError::BadTiff {
        path: path.to_path_buf(),
        detail: format!(
            "expected {rows}x{cols} = {} samples, found {n} (multi-channel or truncated)",
            rows * cols
        ),
    })
}

/// Write a 16-bit greyscale TIFF.
pub fn write_u16(path: &Path, frame: &Array2<u16>) -> Result<(), FormatError> {
    let (rows, cols) = frame.dim();
    let file = File::create(path).map_err(|e| FormatError::io(path, e))?;
    let mut enc = TiffEncoder::new(BufWriter::new(file)).map_err(|e| tiff_write_err(path, e))?;
    let data: Vec<u16> = frame.iter().copied().collect();
    enc.write_image::<colortype::Gray16>(cols as u32, rows as u32, &data)
        .map_err(|e| tiff_write_err(path, e))
}

/// Write a 32-bit float greyscale TIFF.
pub fn write_f32(path: &Path, frame: &Array2<f32>) -> Result<(), FormatError> {
    let (rows, cols) = frame.dim();
    let file = File::create(path).map_err(|e| FormatError::io(path, e))?;
    let mut enc = TiffEncoder::new(BufWriter::new(file)).map_err(|e| tiff_write_err(path, e))?;
    let data: Vec<f32> = frame.iter().copied().collect();
    enc.write_image::<colortype::Gray32Float>(cols as u32, rows as u32, &data)
        .map_err(|e| tiff_write_err(path, e))
}

fn tiff_write_err(path: &Path, e: tiff::TiffError) -> FormatError {
    match e {
        tiff::TiffError::IoError(io) => FormatError::io(path, io),
        other => FormatError::invalid(
            path,
            format!("cannot encode TIFF: {other}"),
            "check free disk space and permissions",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    /// A valid 12×10 TIFF (float or 16-bit) written as `name` in `dir`, then the bytes at
    /// the given offsets set: how the fuzz target's crashes were made.
    fn patched_tiff(dir: &Path, name: &str, float: bool, patches: &[(usize, u8)]) -> PathBuf {
        let p = dir.join(name);
        if float {
            write_f32(
                &p,
                &Array2::from_shape_fn((10, 12), |(r, c)| (r + c) as f32 * 0.5),
            )
        } else {
            write_u16(
                &p,
                &Array2::from_shape_fn((10, 12), |(r, c)| (r * 12 + c) as u16),
            )
        }
        .unwrap();
        let mut bytes = std::fs::read(&p).unwrap();
        for &(at, v) in patches {
            bytes[at] = v;
        }
        std::fs::write(&p, &bytes).unwrap();
        p
    }

    /// The error of each reader on `p`.
    fn every_reader_refuses(p: &Path) -> Vec<String> {
        [
            read_f32(p).map(|_| ()).unwrap_err(),
            read_u16(p).map(|_| ()).unwrap_err(),
            read_f32_and_sha256(p).map(|_| ()).unwrap_err(),
        ]
        .iter()
        .map(|e| e.to_string())
        .collect()
    }

    /// Found by the `tiff` fuzz target: two bytes changed in a valid 12×10 float TIFF's tags
    /// made the decoder ask for 132 GB and abort the process.
    #[test]
    fn a_damaged_tag_claiming_a_huge_image_is_an_error_not_an_abort() {
        let dir = tempfile::tempdir().unwrap();
        let p = patched_tiff(dir.path(), "damaged.tif", true, &[(514, 58), (517, 197)]);
        for msg in every_reader_refuses(&p) {
            assert!(msg.contains("damaged.tif"), "{msg}");
        }
    }

    /// Found by the `tiff` fuzz target: two zeroed bytes in a valid 12×10 16-bit TIFF left
    /// its SampleFormat tag without a value, and the `tiff` crate panicked on it.
    #[test]
    fn an_empty_sample_format_tag_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let p = patched_tiff(dir.path(), "empty-tag.tif", false, &[(426, 0), (32, 0)]);
        for msg in every_reader_refuses(&p) {
            assert!(
                msg.contains("empty-tag.tif") && msg.contains("holds no unsigned integer value"),
                "{msg}"
            );
        }
    }

    /// Found by the `tiff` fuzz target once empty tags were refused: the SampleFormat tag's
    /// type changed to ASCII (count 155) made the decoder read no value and panic.
    #[test]
    fn a_sample_format_tag_of_the_wrong_type_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let p = patched_tiff(
            dir.path(),
            "ascii-tag.tif",
            false,
            &[(424, 2), (426, 155), (430, 18)],
        );
        for msg in every_reader_refuses(&p) {
            assert!(
                msg.contains("ascii-tag.tif") && msg.contains("SampleFormat"),
                "{msg}"
            );
        }
    }

    #[test]
    fn a_panic_inside_the_decoder_is_an_error_naming_the_file() {
        let p = Path::new("/data/frame.tif");
        let r: Result<(), FormatError> =
            guarded(p, || panic!("index out of bounds inside the decoder"));
        let msg = r.unwrap_err().to_string();
        assert!(
            msg.contains("/data/frame.tif") && msg.contains("decoder failed"),
            "{msg}"
        );
    }

    #[test]
    fn a_frame_larger_than_any_camera_is_refused_before_decoding() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("huge.tif");
        std::fs::write(&p, b"").unwrap();
        let err = check_size(&p, 100_000, 16).unwrap_err().to_string();
        assert!(
            err.contains("100000×16") && err.contains("copy it again"),
            "{err}"
        );
        assert!(check_size(&p, 8192, 8192).is_ok());
    }

    #[test]
    fn u16_round_trip_and_truncation_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f.tif");
        let frame = Array2::from_shape_fn((37, 53), |(r, c)| (r * 1000 + c) as u16);
        write_u16(&p, &frame).unwrap();
        assert_eq!(read_u16(&p).unwrap(), frame);
        let bytes = std::fs::read(&p).unwrap();
        std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
        let err = read_u16(&p).unwrap_err().to_string();
        assert!(err.contains("f.tif"), "{err}");
    }

    #[test]
    fn f32_file_is_refused_as_raw_counts() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.tif");
        write_f32(&p, &Array2::from_elem((4, 4), 1.5f32)).unwrap();
        assert_eq!(read_f32(&p).unwrap()[[2, 2]], 1.5);
        let err = read_u16(&p).unwrap_err().to_string();
        assert!(err.contains("16-bit"), "{err}");
    }
}
