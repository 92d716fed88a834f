//! The overlay picture a biologist recognises from Living Image: the photograph in grey,
//! the luminescent radiance in a colour map above a threshold, region outlines with their
//! labels, a colour bar with its unit, and a title line.
//!
//! Owns: rendering an RGB image from in-memory arrays (the photograph counts, the net
//! radiance map, region masks), the display range (automatic or requested), the colour
//! map, the layout and a tiny built-in 5×7 bitmap font. [`render`] is pure: it reads no
//! file, clock or device. The only I/O is [`write_png`], which saves a rendered image.
//!
//! Does not own: any measurement (radiance and regions come from [`crate::process`]; a
//! [`crate::process::RegionMeasurement`] provides `label` and `centroid_px`, the mask comes
//! from [`crate::process::roi::RoiShape::mask`] or the detection footprint), choosing where
//! the file goes, or registering the photograph to the luminescent frame (both are assumed
//! to cover the same field of view; the photograph is simply resampled onto it).
//!
//! Conventions: arrays are indexed `[row (y), column (x)]`; region centroids are in
//! luminescent pixels with the first pixel centre at (0.5, 0.5), as in
//! [`crate::process::roi`]; radiance is in photons/s/cm²/sr.
//!
//! Automatic display range (when [`OverlayInput::range`] is `None`): with `m` the median of
//! the radiance map and `σ = 1.4826 × MAD` its robust noise, the colour map starts at
//! `min = m + 5σ` (pixels at or below it are transparent, so the noise never paints the
//! photograph) and tops out at `max` = the 99.9th percentile of the pixels above `min`, so a
//! single hot pixel does not set the scale yet a small tumour is not clipped. The scale never
//! spans more than 4 decades: `min` is raised to `max / 10⁴` if needed (this also covers a
//! noiseless map whose `m + 5σ` is zero, which a logarithmic scale cannot show).

use std::path::{Path, PathBuf};

use image::{Rgb, RgbImage};
use ndarray::Array2;

use crate::stats::percentile_sorted;

pub mod plot;
mod text;

use text::{draw_text, draw_text_upwards, text_size, GLYPH_ADVANCE, GLYPH_HEIGHT};

/// What to draw.
#[derive(Debug, Clone)]
pub struct OverlayInput<'a> {
    /// Photograph counts, any binning; resampled (bilinear) to the output size.
    /// `None` → black background.
    pub photograph: Option<&'a Array2<u16>>,
    /// Net radiance (photons/s/cm²/sr) on the luminescent grid, `[row, col]`.
    pub radiance: &'a Array2<f32>,
    /// Region outlines: per region a boolean mask on the luminescent grid, the label text,
    /// and the centroid in luminescent px.
    pub regions: Vec<OverlayRegion>,
    /// Radiance shown from `min` (transparent at or below) to `max` (top of the colour map),
    /// photons/s/cm²/sr. `None` → automatic (see the module documentation). A range that a
    /// logarithmic scale cannot show (not finite, `min <= 0` or `max <= min`) is replaced by
    /// the automatic one.
    pub range: Option<(f32, f32)>,
    /// Title line, e.g. instrument and time.
    pub title: String,
}

/// One region to outline and label.
#[derive(Debug, Clone, PartialEq)]
pub struct OverlayRegion {
    /// Pixels of the region on the luminescent grid (same shape as the radiance map; cells
    /// outside the radiance map are ignored).
    pub mask: Array2<bool>,
    /// Text drawn next to the outline, e.g. "ROI 1".
    pub label: String,
    /// Centroid in luminescent px, (x, y), first pixel centre at (0.5, 0.5).
    pub centroid_px: [f64; 2],
}

/// Why an overlay could not be saved.
#[derive(Debug, thiserror::Error)]
pub enum OverlayError {
    #[error("{path}: cannot write the overlay PNG: {source}; check that the directory exists and is writable")]
    WritePng {
        path: PathBuf,
        #[source]
        source: image::ImageError,
    },
}

// ----- Display constants ---------------------------------------------------------------

/// The output is at least this wide (the luminescent grid is upscaled by an integer factor).
const MIN_OUTPUT_WIDTH_PX: usize = 768;
/// Opacity of the radiance colour over the grey photograph.
const RADIANCE_ALPHA: f64 = 0.7;
/// Percentiles of the photograph mapped to black and white.
const PHOTO_BLACK_PERCENTILE: f64 = 0.5;
const PHOTO_WHITE_PERCENTILE: f64 = 99.5;
/// Automatic range: threshold in robust noise sigmas above the median.
const AUTO_MIN_NOISE_SIGMAS: f64 = 5.0;
/// Automatic range: percentile of the above-threshold pixels at the top of the colour map.
const AUTO_MAX_PERCENTILE: f64 = 99.9;
/// Scales a median absolute deviation to a Gaussian standard deviation.
const MAD_TO_SIGMA: f64 = 1.4826;
/// The automatic colour scale spans at most this many decades.
const MAX_DISPLAY_DECADES: f64 = 4.0;
/// Portion of the Turbo colour map used: its darkest blue and darkest red ends are cut off,
/// leaving blue → cyan → green → yellow → red like Living Image's rainbow.
const TURBO_LOW: f64 = 0.10;
const TURBO_HIGH: f64 = 0.87;

/// Output pixels per font pixel.
const TEXT_SCALE_PX: i64 = 2;
/// Width of the dark border drawn around text so it stays readable over the image.
const TEXT_HALO_PX: i64 = 1;
/// Width of a region outline, output pixels.
const OUTLINE_WIDTH_PX: i64 = 2;
/// Gap between a region's outline and its label, output pixels.
const LABEL_GAP_PX: i64 = 4;

const TITLE_BAND_HEIGHT_PX: i64 = GLYPH_HEIGHT * TEXT_SCALE_PX + 2 * PANEL_MARGIN_PX;
const PANEL_MARGIN_PX: i64 = 10;
const COLOUR_BAR_WIDTH_PX: i64 = 24;
const TICK_LENGTH_PX: i64 = 5;
const TICK_LABEL_GAP_PX: i64 = 4;
const TICK_COUNT: usize = 5;
/// Room for the longest tick label, e.g. "1.2e-12".
const TICK_LABEL_MAX_CHARS: i64 = 7;
const UNIT_LABEL_GAP_PX: i64 = 8;
/// Shortest colour-bar panel, so the vertical unit text always fits.
const MIN_PANEL_HEIGHT_PX: i64 = 360;
const COLOUR_BAR_PANEL_WIDTH_PX: i64 = PANEL_MARGIN_PX
    + COLOUR_BAR_WIDTH_PX
    + TICK_LENGTH_PX
    + TICK_LABEL_GAP_PX
    + TICK_LABEL_MAX_CHARS * GLYPH_ADVANCE * TEXT_SCALE_PX
    + UNIT_LABEL_GAP_PX
    + GLYPH_HEIGHT * TEXT_SCALE_PX
    + PANEL_MARGIN_PX;
/// Text beside the colour bar.
const UNIT_LABEL: &str = "Radiance (p/s/cm²/sr)";

const BACKGROUND: Rgb<u8> = Rgb([0, 0, 0]);
const TEXT_COLOUR: Rgb<u8> = Rgb([255, 255, 255]);
const TEXT_HALO_COLOUR: Rgb<u8> = Rgb([0, 0, 0]);
/// Magenta: on neither the grey photograph nor the blue→red colour map.
const OUTLINE_COLOUR: Rgb<u8> = Rgb([255, 0, 255]);
const LABEL_COLOUR: Rgb<u8> = OUTLINE_COLOUR;

// ----- Rendering -----------------------------------------------------------------------

/// Render the overlay: title band on top, the image (photograph + radiance + regions) below
/// it on the left, the colour bar on the right.
pub fn render(input: &OverlayInput) -> RgbImage {
    let layout = Layout::new(input.radiance.dim());
    let range = resolve_range(input.radiance, input.range);
    let mut img = RgbImage::from_pixel(layout.width_px as u32, layout.height_px as u32, BACKGROUND);
    if let Some(photo) = input.photograph {
        draw_photograph(&mut img, &layout, photo);
    }
    draw_radiance(&mut img, &layout, input.radiance, range);
    for region in &input.regions {
        draw_region_outline(&mut img, &layout, &region.mask);
    }
    // Labels after every outline, so no outline cuts through a label.
    for region in &input.regions {
        draw_region_label(&mut img, &layout, region);
    }
    draw_colour_bar(&mut img, &layout, range);
    draw_title(&mut img, &input.title);
    img
}

/// Save a rendered overlay as PNG.
pub fn write_png(path: &Path, img: &RgbImage) -> Result<(), OverlayError> {
    img.save_with_format(path, image::ImageFormat::Png)
        .map_err(|source| OverlayError::WritePng {
            path: path.to_path_buf(),
            source,
        })
}

/// Where things go on the canvas. All lengths in output pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Layout {
    grid_rows: usize,
    grid_cols: usize,
    /// Output pixels per luminescent pixel (each way).
    scale: usize,
    /// The image area: left edge at 0, top edge at `plot_top`.
    plot_top: i64,
    plot_width: i64,
    plot_height: i64,
    width_px: i64,
    height_px: i64,
}

impl Layout {
    fn new((grid_rows, grid_cols): (usize, usize)) -> Layout {
        // An empty map still gets a (blank) image area of a sensible size.
        let (rows, cols) = (grid_rows.max(1), grid_cols.max(1));
        let scale = MIN_OUTPUT_WIDTH_PX.div_ceil(cols).max(1);
        let plot_width = (cols * scale) as i64;
        let plot_height = (rows * scale) as i64;
        let plot_top = TITLE_BAND_HEIGHT_PX;
        Layout {
            grid_rows,
            grid_cols,
            scale,
            plot_top,
            plot_width,
            plot_height,
            width_px: plot_width + COLOUR_BAR_PANEL_WIDTH_PX,
            height_px: plot_top + plot_height.max(MIN_PANEL_HEIGHT_PX),
        }
    }

    /// The luminescent cell under image-area pixel (x, y), if it is inside the grid.
    fn grid_cell(&self, x: i64, y: i64) -> Option<(usize, usize)> {
        if x < 0 || y < 0 || x >= self.plot_width || y >= self.plot_height {
            return None;
        }
        let (row, col) = (y as usize / self.scale, x as usize / self.scale);
        (row < self.grid_rows && col < self.grid_cols).then_some((row, col))
    }

    /// Canvas position of a point given in luminescent px (continuous, x right, y down).
    fn canvas_point(&self, [x_px, y_px]: [f64; 2]) -> (i64, i64) {
        let s = self.scale as f64;
        (
            (x_px * s).round() as i64,
            self.plot_top + (y_px * s).round() as i64,
        )
    }
}

/// Grey photograph, stretched between its 0.5th and 99.5th percentiles.
fn draw_photograph(img: &mut RgbImage, layout: &Layout, photo: &Array2<u16>) {
    let (rows, cols) = photo.dim();
    if rows == 0 || cols == 0 {
        return;
    }
    let stretch = GreyStretch::from_percentiles(photo);
    let x_step = cols as f64 / layout.plot_width as f64;
    let y_step = rows as f64 / layout.plot_height as f64;
    for y in 0..layout.plot_height {
        let sy = (y as f64 + 0.5) * y_step - 0.5;
        for x in 0..layout.plot_width {
            let sx = (x as f64 + 0.5) * x_step - 0.5;
            let grey = stretch.grey(bilinear(photo, sx, sy));
            put(img, x, layout.plot_top + y, Rgb([grey, grey, grey]));
        }
    }
}

/// Linear map from photograph counts to 0–255 grey.
#[derive(Debug, Clone, Copy, PartialEq)]
struct GreyStretch {
    black_counts: f64,
    white_counts: f64,
}

impl GreyStretch {
    fn from_percentiles(photo: &Array2<u16>) -> GreyStretch {
        let mut histogram = vec![0u64; u16::MAX as usize + 1];
        for &v in photo {
            histogram[v as usize] += 1;
        }
        let n = photo.len() as u64;
        let black_counts = histogram_percentile(&histogram, n, PHOTO_BLACK_PERCENTILE) as f64;
        let white_counts = histogram_percentile(&histogram, n, PHOTO_WHITE_PERCENTILE) as f64;
        GreyStretch {
            black_counts,
            // A flat photograph would divide by zero: give it one count of range.
            white_counts: white_counts.max(black_counts + 1.0),
        }
    }

    fn grey(&self, counts: f64) -> u8 {
        let t = (counts - self.black_counts) / (self.white_counts - self.black_counts);
        (t.clamp(0.0, 1.0) * 255.0).round() as u8
    }
}

/// Nearest-rank percentile (0–100) of `n` values counted in a histogram.
fn histogram_percentile(histogram: &[u64], n: u64, percentile: f64) -> usize {
    let rank = ((percentile / 100.0 * n as f64).ceil() as u64).clamp(1, n.max(1));
    let mut seen = 0;
    for (value, &count) in histogram.iter().enumerate() {
        seen += count;
        if seen >= rank {
            return value;
        }
    }
    histogram.len() - 1
}

/// Bilinear sample at continuous array coordinates (x = column, y = row; pixel centres on
/// integers), clamped at the edges.
fn bilinear(a: &Array2<u16>, x: f64, y: f64) -> f64 {
    let (rows, cols) = a.dim();
    let x = x.clamp(0.0, (cols - 1) as f64);
    let y = y.clamp(0.0, (rows - 1) as f64);
    let (c0, r0) = (x.floor() as usize, y.floor() as usize);
    let (c1, r1) = ((c0 + 1).min(cols - 1), (r0 + 1).min(rows - 1));
    let (fx, fy) = (x - c0 as f64, y - r0 as f64);
    let v = |r: usize, c: usize| a[[r, c]] as f64;
    let top = v(r0, c0) * (1.0 - fx) + v(r0, c1) * fx;
    let bottom = v(r1, c0) * (1.0 - fx) + v(r1, c1) * fx;
    top * (1.0 - fy) + bottom * fy
}

/// Radiance above the display minimum, blended over whatever is below it.
fn draw_radiance(img: &mut RgbImage, layout: &Layout, radiance: &Array2<f32>, range: DisplayRange) {
    let s = layout.scale as i64;
    for ((row, col), &value) in radiance.indexed_iter() {
        let Some(t) = range.position(value) else {
            continue;
        };
        let colour = colour_map(t);
        for y in row as i64 * s..(row as i64 + 1) * s {
            for x in col as i64 * s..(col as i64 + 1) * s {
                let canvas_y = layout.plot_top + y;
                let below = *img.get_pixel(x as u32, canvas_y as u32);
                put(img, x, canvas_y, blend(below, colour, RADIANCE_ALPHA));
            }
        }
    }
}

/// `alpha` of `over` on top of `under`.
fn blend(under: Rgb<u8>, over: Rgb<u8>, alpha: f64) -> Rgb<u8> {
    let mix = |u: u8, o: u8| (u as f64 * (1.0 - alpha) + o as f64 * alpha).round() as u8;
    Rgb([
        mix(under[0], over[0]),
        mix(under[1], over[1]),
        mix(under[2], over[2]),
    ])
}

/// Radiance range shown by the colour map, photons/s/cm²/sr; `0 < min < max`.
#[derive(Debug, Clone, Copy, PartialEq)]
struct DisplayRange {
    min: f32,
    max: f32,
}

impl DisplayRange {
    /// Position of `value` on the logarithmic colour scale, 0 at `min` and 1 at `max` (values
    /// above `max` are clamped to 1); `None` at or below `min`, or for a non-number.
    fn position(&self, value: f32) -> Option<f64> {
        // A NaN (no value) is not drawn.
        if value.is_nan() || value <= self.min {
            return None;
        }
        let (lo, hi) = (self.min as f64, self.max as f64);
        Some(((value as f64 / lo).ln() / (hi / lo).ln()).clamp(0.0, 1.0))
    }

    /// Radiance at position `t` (0–1) on the logarithmic scale.
    fn value_at(&self, t: f64) -> f64 {
        let (lo, hi) = (self.min as f64, self.max as f64);
        lo * (hi / lo).powf(t)
    }

    fn is_drawable(min: f32, max: f32) -> bool {
        min.is_finite() && max.is_finite() && min > 0.0 && max > min
    }
}

/// The requested range if a log scale can show it, otherwise the automatic one.
fn resolve_range(radiance: &Array2<f32>, requested: Option<(f32, f32)>) -> DisplayRange {
    match requested {
        Some((min, max)) if DisplayRange::is_drawable(min, max) => DisplayRange { min, max },
        _ => auto_range(radiance),
    }
}

/// Noise-based threshold and robust top; see the module documentation.
fn auto_range(radiance: &Array2<f32>) -> DisplayRange {
    let mut values: Vec<f32> = radiance.iter().copied().filter(|v| v.is_finite()).collect();
    if values.is_empty() {
        return DisplayRange {
            min: 1.0,
            max: 10.0,
        };
    }
    values.sort_unstable_by(f32::total_cmp);
    let median = percentile_sorted(&values, 50.0);
    let mut deviations: Vec<f64> = values.iter().map(|&v| (v as f64 - median).abs()).collect();
    deviations.sort_unstable_by(f64::total_cmp);
    let noise_sigma = MAD_TO_SIGMA * percentile_sorted(&deviations, 50.0);
    let threshold = median + AUTO_MIN_NOISE_SIGMAS * noise_sigma;

    let first_above = values.partition_point(|&v| (v as f64) <= threshold);
    let signal = &values[first_above..];
    let max = if signal.is_empty() {
        threshold.max(0.0) * 10.0
    } else {
        percentile_sorted(signal, AUTO_MAX_PERCENTILE)
    };
    let floor = max / 10f64.powf(MAX_DISPLAY_DECADES);
    let min = threshold.max(floor);
    let (min, max) = (min as f32, max as f32);
    if DisplayRange::is_drawable(min, max) {
        DisplayRange { min, max }
    } else {
        // Nothing positive to show (e.g. an all-zero map): any valid range paints nothing.
        let min = min.max(f32::MIN_POSITIVE);
        DisplayRange {
            min,
            max: min * 10.0,
        }
    }
}

/// The colour at position `t` (0 = bottom, 1 = top) of the colour map: the middle of Google's
/// Turbo (a perceptually smoothed rainbow), blue → cyan → green → yellow → red, from its
/// published polynomial approximation.
fn colour_map(t: f64) -> Rgb<u8> {
    let x = TURBO_LOW + t.clamp(0.0, 1.0) * (TURBO_HIGH - TURBO_LOW);
    let poly = |c: [f64; 6]| c[0] + x * (c[1] + x * (c[2] + x * (c[3] + x * (c[4] + x * c[5]))));
    let red = poly([
        0.135_721_38,
        4.615_392_60,
        -42.660_322_58,
        132.131_082_34,
        -152.942_393_96,
        59.286_379_43,
    ]);
    let green = poly([
        0.091_402_61,
        2.194_188_39,
        4.842_966_58,
        -14.185_033_33,
        4.277_298_57,
        2.829_566_04,
    ]);
    let blue = poly([
        0.106_673_30,
        12.641_946_08,
        -60.582_048_36,
        110.362_767_71,
        -89.903_109_12,
        27.348_249_73,
    ]);
    let byte = |v: f64| (v.clamp(0.0, 1.0) * 255.0).round() as u8;
    Rgb([byte(red), byte(green), byte(blue)])
}

/// Canvas rectangle (inclusive) of the region's mask cells, or `None` for an empty mask.
fn mask_bounds(layout: &Layout, mask: &Array2<bool>) -> Option<(i64, i64, i64, i64)> {
    let mut bounds: Option<(usize, usize, usize, usize)> = None;
    for ((row, col), &inside) in mask.indexed_iter() {
        if !inside || row >= layout.grid_rows || col >= layout.grid_cols {
            continue;
        }
        bounds = Some(match bounds {
            None => (col, row, col, row),
            Some((x0, y0, x1, y1)) => (x0.min(col), y0.min(row), x1.max(col), y1.max(row)),
        });
    }
    let s = layout.scale as i64;
    bounds.map(|(x0, y0, x1, y1)| {
        (
            x0 as i64 * s,
            layout.plot_top + y0 as i64 * s,
            (x1 as i64 + 1) * s - 1,
            layout.plot_top + (y1 as i64 + 1) * s - 1,
        )
    })
}

/// Outline: the region's pixels (at output resolution) within `OUTLINE_WIDTH_PX` of a pixel
/// outside it, or of the image edge.
fn draw_region_outline(img: &mut RgbImage, layout: &Layout, mask: &Array2<bool>) {
    let Some((x0, y0, x1, y1)) = mask_bounds(layout, mask) else {
        return;
    };
    let inside = |x: i64, y: i64| {
        layout
            .grid_cell(x, y - layout.plot_top)
            .and_then(|cell| mask.get(cell).copied())
            .unwrap_or(false)
    };
    for y in y0..=y1 {
        for x in x0..=x1 {
            if !inside(x, y) {
                continue;
            }
            let on_boundary = (1..=OUTLINE_WIDTH_PX).any(|k| {
                !inside(x - k, y) || !inside(x + k, y) || !inside(x, y - k) || !inside(x, y + k)
            });
            if on_boundary {
                put(img, x, y, OUTLINE_COLOUR);
            }
        }
    }
}

/// The label, centred on the centroid's column just above the outline (below it if there
/// is no room above, at the centroid for an empty mask), kept inside the image area.
fn draw_region_label(img: &mut RgbImage, layout: &Layout, region: &OverlayRegion) {
    let (width, height) = text_size(&region.label);
    let (centre_x, centre_y) = layout.canvas_point(region.centroid_px);
    let y = match mask_bounds(layout, &region.mask) {
        Some((_, top, _, bottom)) => {
            let above = top - LABEL_GAP_PX - height;
            if above >= layout.plot_top {
                above
            } else {
                bottom + 1 + LABEL_GAP_PX
            }
        }
        None => centre_y - height / 2,
    };
    let x = (centre_x - width / 2).clamp(0, (layout.plot_width - width).max(0));
    let plot_bottom = layout.plot_top + layout.plot_height;
    let y = y.clamp(layout.plot_top, (plot_bottom - height).max(layout.plot_top));
    draw_text(img, x, y, &region.label, LABEL_COLOUR);
}

/// Vertical colour bar right of the image, with log-spaced tick labels and the unit.
fn draw_colour_bar(img: &mut RgbImage, layout: &Layout, range: DisplayRange) {
    let text_height = GLYPH_HEIGHT * TEXT_SCALE_PX;
    let bar = ColourBarGeometry::new(layout);
    for y in bar.top..=bar.bottom {
        let colour = colour_map(bar.position_at(y));
        for x in bar.left..bar.left + COLOUR_BAR_WIDTH_PX {
            put(img, x, y, colour);
        }
    }
    draw_rectangle_outline(
        img,
        bar.left - 1,
        bar.top - 1,
        bar.left + COLOUR_BAR_WIDTH_PX,
        bar.bottom + 1,
        TEXT_COLOUR,
    );

    let tick_left = bar.left + COLOUR_BAR_WIDTH_PX;
    let label_left = tick_left + TICK_LENGTH_PX + TICK_LABEL_GAP_PX;
    for i in 0..TICK_COUNT {
        let t = i as f64 / (TICK_COUNT - 1) as f64;
        let y = bar.y_at(t);
        for x in tick_left..tick_left + TICK_LENGTH_PX {
            put(img, x, y, TEXT_COLOUR);
        }
        draw_text(
            img,
            label_left,
            y - text_height / 2,
            &format_tick(range.value_at(t)),
            TEXT_COLOUR,
        );
    }

    let unit_left =
        label_left + TICK_LABEL_MAX_CHARS * GLYPH_ADVANCE * TEXT_SCALE_PX + UNIT_LABEL_GAP_PX;
    let (unit_length, _) = text_size(UNIT_LABEL);
    let unit_bottom = (bar.top + bar.bottom) / 2 + unit_length / 2;
    draw_text_upwards(img, unit_left, unit_bottom, UNIT_LABEL, TEXT_COLOUR);
}

/// Vertical extent of the colour bar: the height of the canvas below the title, less room
/// for half a tick label at each end.
#[derive(Debug, Clone, Copy, PartialEq)]
struct ColourBarGeometry {
    left: i64,
    top: i64,
    bottom: i64,
}

impl ColourBarGeometry {
    fn new(layout: &Layout) -> ColourBarGeometry {
        let half_text = GLYPH_HEIGHT * TEXT_SCALE_PX / 2;
        ColourBarGeometry {
            left: layout.plot_width + PANEL_MARGIN_PX,
            top: layout.plot_top + PANEL_MARGIN_PX + half_text,
            bottom: layout.height_px - 1 - PANEL_MARGIN_PX - half_text,
        }
    }

    /// Colour-map position (0 bottom, 1 top) of canvas row `y`.
    fn position_at(&self, y: i64) -> f64 {
        (self.bottom - y) as f64 / (self.bottom - self.top) as f64
    }

    /// Canvas row of colour-map position `t`.
    fn y_at(&self, t: f64) -> i64 {
        self.bottom - (t * (self.bottom - self.top) as f64).round() as i64
    }
}

/// Scientific notation with two significant digits, e.g. "1.2e6", "3.0e-2".
fn format_tick(value: f64) -> String {
    format!("{value:.1e}")
}

fn draw_title(img: &mut RgbImage, title: &str) {
    let text_height = GLYPH_HEIGHT * TEXT_SCALE_PX;
    draw_text(
        img,
        PANEL_MARGIN_PX,
        (TITLE_BAND_HEIGHT_PX - text_height) / 2,
        title,
        TEXT_COLOUR,
    );
}

fn draw_rectangle_outline(img: &mut RgbImage, x0: i64, y0: i64, x1: i64, y1: i64, colour: Rgb<u8>) {
    for x in x0..=x1 {
        put(img, x, y0, colour);
        put(img, x, y1, colour);
    }
    for y in y0..=y1 {
        put(img, x0, y, colour);
        put(img, x1, y, colour);
    }
}

/// Set one pixel; anything off the canvas is silently clipped.
fn put(img: &mut RgbImage, x: i64, y: i64, colour: Rgb<u8>) {
    if x >= 0 && y >= 0 && x < img.width() as i64 && y < img.height() as i64 {
        img.put_pixel(x as u32, y as u32, colour);
    }
}

#[cfg(test)]
mod tests;
