//! The overlay's tiny built-in 5×7 bitmap font: glyphs for the characters the overlay
//! writes (digits, letters, units, signs), drawn at `TEXT_SCALE_PX` with a dark halo so
//! labels stay legible over any colour, horizontally or upwards (the colour bar's unit).
//!
//! Owns: the glyph table, text measurement and drawing. Pure: draws into an image.

use image::{Rgb, RgbImage};

use super::{put, TEXT_HALO_COLOUR, TEXT_HALO_PX, TEXT_SCALE_PX};

pub(super) const GLYPH_WIDTH: i64 = 5;
pub(super) const GLYPH_HEIGHT: i64 = 7;
/// Horizontal distance from one glyph to the next, font pixels (one blank column).
pub(super) const GLYPH_ADVANCE: i64 = GLYPH_WIDTH + 1;

/// Size in canvas pixels of `text` drawn at `TEXT_SCALE_PX`.
pub(super) fn text_size(text: &str) -> (i64, i64) {
    let chars = text.chars().count() as i64;
    let width = (chars * GLYPH_ADVANCE - 1).max(0) * TEXT_SCALE_PX;
    (width, GLYPH_HEIGHT * TEXT_SCALE_PX)
}

/// Horizontal text with its top-left corner at (x, y), with a dark halo.
pub(super) fn draw_text(img: &mut RgbImage, x: i64, y: i64, text: &str, colour: Rgb<u8>) {
    let to_canvas = |i: i64, gx: i64, gy: i64| {
        (
            x + (i * GLYPH_ADVANCE + gx) * TEXT_SCALE_PX,
            y + gy * TEXT_SCALE_PX,
        )
    };
    draw_glyphs(img, text, colour, to_canvas);
}

/// Text reading bottom to top (rotated a quarter turn anticlockwise), the bottom of the first
/// character at `y_bottom` and the tops of the letters facing left at `x_left`.
pub(super) fn draw_text_upwards(
    img: &mut RgbImage,
    x_left: i64,
    y_bottom: i64,
    text: &str,
    colour: Rgb<u8>,
) {
    let to_canvas = |i: i64, gx: i64, gy: i64| {
        (
            x_left + gy * TEXT_SCALE_PX,
            y_bottom - (i * GLYPH_ADVANCE + gx + 1) * TEXT_SCALE_PX + 1,
        )
    };
    draw_glyphs(img, text, colour, to_canvas);
}

/// Draw each lit font pixel as a `TEXT_SCALE_PX` square at `to_canvas(char index, glyph
/// column, glyph row)` (its top-left corner): first all halos, then all glyph pixels.
pub(super) fn draw_glyphs(
    img: &mut RgbImage,
    text: &str,
    colour: Rgb<u8>,
    to_canvas: impl Fn(i64, i64, i64) -> (i64, i64),
) {
    let lit: Vec<(i64, i64)> = text
        .chars()
        .enumerate()
        .flat_map(|(i, ch)| glyph_pixels(ch).map(move |(gx, gy)| (i as i64, gx, gy)))
        .map(|(i, gx, gy)| to_canvas(i, gx, gy))
        .collect();
    for &(x, y) in &lit {
        fill_square(
            img,
            x - TEXT_HALO_PX,
            y - TEXT_HALO_PX,
            TEXT_SCALE_PX + 2 * TEXT_HALO_PX,
            TEXT_HALO_COLOUR,
        );
    }
    for &(x, y) in &lit {
        fill_square(img, x, y, TEXT_SCALE_PX, colour);
    }
}

pub(super) fn fill_square(img: &mut RgbImage, x: i64, y: i64, side: i64, colour: Rgb<u8>) {
    for dy in 0..side {
        for dx in 0..side {
            put(img, x + dx, y + dy, colour);
        }
    }
}

/// The lit pixels (column, row) of a character; characters without a glyph show as '?'.
pub(super) fn glyph_pixels(ch: char) -> impl Iterator<Item = (i64, i64)> {
    let rows = glyph(ch).or_else(|| glyph('?')).unwrap_or_default();
    (0..GLYPH_HEIGHT).flat_map(move |gy| {
        (0..GLYPH_WIDTH)
            .filter(move |&gx| rows[gy as usize] & (1 << (GLYPH_WIDTH - 1 - gx)) != 0)
            .map(move |gx| (gx, gy))
    })
}

/// 5×7 glyphs, one byte per row from the top, the leftmost column in bit 4.
#[rustfmt::skip]
pub(super) fn glyph(ch: char) -> Option<[u8; 7]> {
    let rows = match ch {
        '0' => [0b01110, 0b10001, 0b10011, 0b10101, 0b11001, 0b10001, 0b01110],
        '1' => [0b00100, 0b01100, 0b00100, 0b00100, 0b00100, 0b00100, 0b01110],
        '2' => [0b01110, 0b10001, 0b00001, 0b00010, 0b00100, 0b01000, 0b11111],
        '3' => [0b11111, 0b00010, 0b00100, 0b00010, 0b00001, 0b10001, 0b01110],
        '4' => [0b00010, 0b00110, 0b01010, 0b10010, 0b11111, 0b00010, 0b00010],
        '5' => [0b11111, 0b10000, 0b11110, 0b00001, 0b00001, 0b10001, 0b01110],
        '6' => [0b00110, 0b01000, 0b10000, 0b11110, 0b10001, 0b10001, 0b01110],
        '7' => [0b11111, 0b00001, 0b00010, 0b00100, 0b01000, 0b01000, 0b01000],
        '8' => [0b01110, 0b10001, 0b10001, 0b01110, 0b10001, 0b10001, 0b01110],
        '9' => [0b01110, 0b10001, 0b10001, 0b01111, 0b00001, 0b00010, 0b01100],
        'A' => [0b01110, 0b10001, 0b10001, 0b11111, 0b10001, 0b10001, 0b10001],
        'B' => [0b11110, 0b10001, 0b10001, 0b11110, 0b10001, 0b10001, 0b11110],
        'C' => [0b01110, 0b10001, 0b10000, 0b10000, 0b10000, 0b10001, 0b01110],
        'D' => [0b11100, 0b10010, 0b10001, 0b10001, 0b10001, 0b10010, 0b11100],
        'E' => [0b11111, 0b10000, 0b10000, 0b11110, 0b10000, 0b10000, 0b11111],
        'F' => [0b11111, 0b10000, 0b10000, 0b11110, 0b10000, 0b10000, 0b10000],
        'G' => [0b01110, 0b10001, 0b10000, 0b10111, 0b10001, 0b10001, 0b01111],
        'H' => [0b10001, 0b10001, 0b10001, 0b11111, 0b10001, 0b10001, 0b10001],
        'I' => [0b01110, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100, 0b01110],
        'J' => [0b00111, 0b00010, 0b00010, 0b00010, 0b00010, 0b10010, 0b01100],
        'K' => [0b10001, 0b10010, 0b10100, 0b11000, 0b10100, 0b10010, 0b10001],
        'L' => [0b10000, 0b10000, 0b10000, 0b10000, 0b10000, 0b10000, 0b11111],
        'M' => [0b10001, 0b11011, 0b10101, 0b10101, 0b10001, 0b10001, 0b10001],
        'N' => [0b10001, 0b10001, 0b11001, 0b10101, 0b10011, 0b10001, 0b10001],
        'O' => [0b01110, 0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b01110],
        'P' => [0b11110, 0b10001, 0b10001, 0b11110, 0b10000, 0b10000, 0b10000],
        'Q' => [0b01110, 0b10001, 0b10001, 0b10001, 0b10101, 0b10010, 0b01101],
        'R' => [0b11110, 0b10001, 0b10001, 0b11110, 0b10100, 0b10010, 0b10001],
        'S' => [0b01111, 0b10000, 0b10000, 0b01110, 0b00001, 0b00001, 0b11110],
        'T' => [0b11111, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100],
        'U' => [0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b01110],
        'V' => [0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b01010, 0b00100],
        'W' => [0b10001, 0b10001, 0b10001, 0b10101, 0b10101, 0b10101, 0b01010],
        'X' => [0b10001, 0b10001, 0b01010, 0b00100, 0b01010, 0b10001, 0b10001],
        'Y' => [0b10001, 0b10001, 0b10001, 0b01010, 0b00100, 0b00100, 0b00100],
        'Z' => [0b11111, 0b00001, 0b00010, 0b00100, 0b01000, 0b10000, 0b11111],
        'a' => [0b00000, 0b00000, 0b01110, 0b00001, 0b01111, 0b10001, 0b01111],
        'b' => [0b10000, 0b10000, 0b10110, 0b11001, 0b10001, 0b10001, 0b11110],
        'c' => [0b00000, 0b00000, 0b01110, 0b10000, 0b10000, 0b10001, 0b01110],
        'd' => [0b00001, 0b00001, 0b01101, 0b10011, 0b10001, 0b10001, 0b01111],
        'e' => [0b00000, 0b00000, 0b01110, 0b10001, 0b11111, 0b10000, 0b01110],
        'f' => [0b00110, 0b01001, 0b01000, 0b11100, 0b01000, 0b01000, 0b01000],
        'g' => [0b00000, 0b01111, 0b10001, 0b10001, 0b01111, 0b00001, 0b01110],
        'h' => [0b10000, 0b10000, 0b10110, 0b11001, 0b10001, 0b10001, 0b10001],
        'i' => [0b00100, 0b00000, 0b01100, 0b00100, 0b00100, 0b00100, 0b01110],
        'j' => [0b00010, 0b00000, 0b00110, 0b00010, 0b00010, 0b10010, 0b01100],
        'k' => [0b10000, 0b10000, 0b10010, 0b10100, 0b11000, 0b10100, 0b10010],
        'l' => [0b01100, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100, 0b01110],
        'm' => [0b00000, 0b00000, 0b11010, 0b10101, 0b10101, 0b10001, 0b10001],
        'n' => [0b00000, 0b00000, 0b10110, 0b11001, 0b10001, 0b10001, 0b10001],
        'o' => [0b00000, 0b00000, 0b01110, 0b10001, 0b10001, 0b10001, 0b01110],
        'p' => [0b00000, 0b00000, 0b11110, 0b10001, 0b10001, 0b11110, 0b10000],
        'q' => [0b00000, 0b00000, 0b01111, 0b10001, 0b10001, 0b01111, 0b00001],
        'r' => [0b00000, 0b00000, 0b10110, 0b11001, 0b10000, 0b10000, 0b10000],
        's' => [0b00000, 0b00000, 0b01110, 0b10000, 0b01110, 0b00001, 0b11110],
        't' => [0b01000, 0b01000, 0b11100, 0b01000, 0b01000, 0b01001, 0b00110],
        'u' => [0b00000, 0b00000, 0b10001, 0b10001, 0b10001, 0b10011, 0b01101],
        'v' => [0b00000, 0b00000, 0b10001, 0b10001, 0b10001, 0b01010, 0b00100],
        'w' => [0b00000, 0b00000, 0b10001, 0b10001, 0b10101, 0b10101, 0b01010],
        'x' => [0b00000, 0b00000, 0b10001, 0b01010, 0b00100, 0b01010, 0b10001],
        'y' => [0b00000, 0b00000, 0b10001, 0b10001, 0b01111, 0b00001, 0b01110],
        'z' => [0b00000, 0b00000, 0b11111, 0b00010, 0b00100, 0b01000, 0b11111],
        ' ' => [0b00000, 0b00000, 0b00000, 0b00000, 0b00000, 0b00000, 0b00000],
        '.' => [0b00000, 0b00000, 0b00000, 0b00000, 0b00000, 0b01100, 0b01100],
        ',' => [0b00000, 0b00000, 0b00000, 0b00000, 0b01100, 0b00100, 0b01000],
        ':' => [0b00000, 0b01100, 0b01100, 0b00000, 0b01100, 0b01100, 0b00000],
        '-' => [0b00000, 0b00000, 0b00000, 0b01110, 0b00000, 0b00000, 0b00000],
        '+' => [0b00000, 0b00100, 0b00100, 0b11111, 0b00100, 0b00100, 0b00000],
        '=' => [0b00000, 0b00000, 0b11111, 0b00000, 0b11111, 0b00000, 0b00000],
        '/' => [0b00000, 0b00001, 0b00010, 0b00100, 0b01000, 0b10000, 0b00000],
        '^' => [0b00100, 0b01010, 0b10001, 0b00000, 0b00000, 0b00000, 0b00000],
        '_' => [0b00000, 0b00000, 0b00000, 0b00000, 0b00000, 0b00000, 0b11111],
        '(' => [0b00010, 0b00100, 0b01000, 0b01000, 0b01000, 0b00100, 0b00010],
        ')' => [0b01000, 0b00100, 0b00010, 0b00010, 0b00010, 0b00100, 0b01000],
        '[' => [0b01110, 0b01000, 0b01000, 0b01000, 0b01000, 0b01000, 0b01110],
        ']' => [0b01110, 0b00010, 0b00010, 0b00010, 0b00010, 0b00010, 0b01110],
        '#' => [0b01010, 0b01010, 0b11111, 0b01010, 0b11111, 0b01010, 0b01010],
        '%' => [0b11000, 0b11001, 0b00010, 0b00100, 0b01000, 0b10011, 0b00011],
        '?' => [0b01110, 0b10001, 0b00001, 0b00010, 0b00100, 0b00000, 0b00100],
        '²' => [0b01100, 0b10010, 0b00100, 0b01000, 0b11110, 0b00000, 0b00000],
        '°' => [0b01100, 0b10010, 0b10010, 0b01100, 0b00000, 0b00000, 0b00000],
        'µ' => [0b00000, 0b00000, 0b10001, 0b10001, 0b10011, 0b11101, 0b10000],
        _ => return None,
    };
    Some(rows)
}
