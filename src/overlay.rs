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

// ----- Text ----------------------------------------------------------------------------

const GLYPH_WIDTH: i64 = 5;
const GLYPH_HEIGHT: i64 = 7;
/// Horizontal distance from one glyph to the next, font pixels (one blank column).
const GLYPH_ADVANCE: i64 = GLYPH_WIDTH + 1;

/// Size in canvas pixels of `text` drawn at `TEXT_SCALE_PX`.
fn text_size(text: &str) -> (i64, i64) {
    let chars = text.chars().count() as i64;
    let width = (chars * GLYPH_ADVANCE - 1).max(0) * TEXT_SCALE_PX;
    (width, GLYPH_HEIGHT * TEXT_SCALE_PX)
}

/// Horizontal text with its top-left corner at (x, y), with a dark halo.
fn draw_text(img: &mut RgbImage, x: i64, y: i64, text: &str, colour: Rgb<u8>) {
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
fn draw_text_upwards(img: &mut RgbImage, x_left: i64, y_bottom: i64, text: &str, colour: Rgb<u8>) {
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
fn draw_glyphs(
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

fn fill_square(img: &mut RgbImage, x: i64, y: i64, side: i64, colour: Rgb<u8>) {
    for dy in 0..side {
        for dx in 0..side {
            put(img, x + dx, y + dy, colour);
        }
    }
}

/// The lit pixels (column, row) of a character; characters without a glyph show as '?'.
fn glyph_pixels(ch: char) -> impl Iterator<Item = (i64, i64)> {
    let rows = glyph(ch).or_else(|| glyph('?')).unwrap_or_default();
    (0..GLYPH_HEIGHT).flat_map(move |gy| {
        (0..GLYPH_WIDTH)
            .filter(move |&gx| rows[gy as usize] & (1 << (GLYPH_WIDTH - 1 - gx)) != 0)
            .map(move |gx| (gx, gy))
    })
}

/// 5×7 glyphs, one byte per row from the top, the leftmost column in bit 4.
#[rustfmt::skip]
fn glyph(ch: char) -> Option<[u8; 7]> {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic pseudo-noise in [-1, 1), so tests need no random generator.
    fn pseudo_noise(i: usize) -> f32 {
        let h = (i as u64)
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((h >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }

    const GRID: usize = 100;
    const DISC_CENTRE_PX: [f64; 2] = [40.5, 55.5];
    const DISC_RADIUS_PX: f64 = 8.0;
    const DISC_PEAK: f32 = 1.0e6;
    const NOISE_AMPLITUDE: f32 = 1.0e3;

    fn in_disc(row: usize, col: usize, radius: f64) -> bool {
        let (dx, dy) = (
            col as f64 + 0.5 - DISC_CENTRE_PX[0],
            row as f64 + 0.5 - DISC_CENTRE_PX[1],
        );
        dx.hypot(dy) <= radius
    }

    /// Noise everywhere plus one bright flat disc.
    fn disc_radiance() -> Array2<f32> {
        Array2::from_shape_fn((GRID, GRID), |(r, c)| {
            let noise = NOISE_AMPLITUDE * pseudo_noise(r * GRID + c);
            if in_disc(r, c, DISC_RADIUS_PX) {
                DISC_PEAK + noise
            } else {
                noise
            }
        })
    }

    /// A horizontal gradient at twice the luminescent resolution (a different binning).
    fn gradient_photo() -> Array2<u16> {
        Array2::from_shape_fn((2 * GRID, 2 * GRID), |(_, c)| 1_000 + 20 * c as u16)
    }

    fn disc_region() -> OverlayRegion {
        OverlayRegion {
            mask: Array2::from_shape_fn((GRID, GRID), |(r, c)| in_disc(r, c, DISC_RADIUS_PX + 2.0)),
            label: "ROI 1".to_string(),
            centroid_px: DISC_CENTRE_PX,
        }
    }

    fn render_disc(regions: Vec<OverlayRegion>, range: Option<(f32, f32)>) -> (RgbImage, Layout) {
        let radiance = disc_radiance();
        let photo = gradient_photo();
        let input = OverlayInput {
            photograph: Some(&photo),
            radiance: &radiance,
            regions,
            range,
            title: "IVIS Lumina 2024-05-01 10:32".to_string(),
        };
        (render(&input), Layout::new(radiance.dim()))
    }

    fn is_grey(p: Rgb<u8>) -> bool {
        p[0] == p[1] && p[1] == p[2]
    }

    fn chroma(p: Rgb<u8>) -> u8 {
        p.0.iter().max().unwrap() - p.0.iter().min().unwrap()
    }

    /// Canvas pixel at the centre of luminescent cell (row, col).
    fn cell_centre(img: &RgbImage, layout: &Layout, row: usize, col: usize) -> Rgb<u8> {
        let s = layout.scale;
        *img.get_pixel(
            (col * s + s / 2) as u32,
            (layout.plot_top as usize + row * s + s / 2) as u32,
        )
    }

    #[test]
    fn disc_is_coloured_and_far_away_is_grey() {
        let (img, layout) = render_disc(vec![], None);
        let centre = cell_centre(&img, &layout, 55, 40);
        assert!(
            chroma(centre) > 60,
            "disc centre {centre:?} should be coloured"
        );
        for (row, col) in [(2, 2), (5, 95), (95, 5), (90, 90)] {
            let p = cell_centre(&img, &layout, row, col);
            assert!(is_grey(p), "far pixel ({row},{col}) = {p:?} should be grey");
        }
        // The photograph's gradient shows through: darker on the left than on the right.
        assert!(cell_centre(&img, &layout, 5, 5)[0] + 100 < cell_centre(&img, &layout, 5, 95)[0]);
    }

    #[test]
    fn radiance_above_max_is_top_colour_blended_over_the_photograph() {
        let range = (1.0e4, 5.0e5);
        let (with_disc, layout) = render_disc(vec![], Some(range));
        let radiance = Array2::<f32>::zeros((GRID, GRID));
        let photo = gradient_photo();
        let photo_only = render(&OverlayInput {
            photograph: Some(&photo),
            radiance: &radiance,
            regions: vec![],
            range: Some(range),
            title: String::new(),
        });
        let grey = cell_centre(&photo_only, &layout, 55, 40);
        assert!(is_grey(grey));
        let expected = blend(grey, colour_map(1.0), RADIANCE_ALPHA);
        assert_eq!(cell_centre(&with_disc, &layout, 55, 40), expected);
    }

    #[test]
    fn without_photograph_the_background_is_black() {
        let radiance = disc_radiance();
        let img = render(&OverlayInput {
            photograph: None,
            radiance: &radiance,
            regions: vec![],
            range: None,
            title: String::new(),
        });
        let layout = Layout::new(radiance.dim());
        assert_eq!(cell_centre(&img, &layout, 90, 90), Rgb([0, 0, 0]));
        assert!(chroma(cell_centre(&img, &layout, 55, 40)) > 60);
    }

    #[test]
    fn outline_pixels_have_the_outline_colour() {
        let region = disc_region();
        let (img, layout) = render_disc(vec![region.clone()], None);
        let s = layout.scale as i64;
        // Left-most mask cell on the disc's centre row: its left edge is the boundary.
        let row = 55;
        let col = (0..GRID).find(|&c| region.mask[[row, c]]).unwrap() as i64;
        let y = layout.plot_top + row as i64 * s + s / 2;
        assert_eq!(*img.get_pixel((col * s) as u32, y as u32), OUTLINE_COLOUR);
        // Just outside the mask: not outline; the disc centre: not outline.
        assert_ne!(
            *img.get_pixel((col * s - 1) as u32, y as u32),
            OUTLINE_COLOUR
        );
        assert_ne!(cell_centre(&img, &layout, 55, 40), OUTLINE_COLOUR);
    }

    #[test]
    fn label_is_drawn_just_above_the_outline() {
        let region = disc_region();
        let (img, layout) = render_disc(vec![region.clone()], None);
        let (_, top, _, _) = mask_bounds(&layout, &region.mask).unwrap();
        let (width, height) = text_size(&region.label);
        let (cx, _) = layout.canvas_point(region.centroid_px);
        let label_pixels = (top - LABEL_GAP_PX - height..top - LABEL_GAP_PX)
            .flat_map(|y| (cx - width / 2..cx + width / 2).map(move |x| (x, y)))
            .filter(|&(x, y)| *img.get_pixel(x as u32, y as u32) == LABEL_COLOUR)
            .count();
        assert!(
            label_pixels > 20,
            "only {label_pixels} label pixels above the region"
        );
        // With an empty label nothing is drawn there.
        let mut unlabelled = region;
        unlabelled.label = String::new();
        let (img, _) = render_disc(vec![unlabelled], None);
        assert_ne!(
            *img.get_pixel(cx as u32, (top - LABEL_GAP_PX - height / 2) as u32),
            LABEL_COLOUR
        );
    }

    #[test]
    fn colour_bar_shows_the_whole_ramp() {
        let (img, layout) = render_disc(vec![], None);
        let bar = ColourBarGeometry::new(&layout);
        let x = (bar.left + COLOUR_BAR_WIDTH_PX / 2) as u32;
        let top = *img.get_pixel(x, bar.top as u32);
        let middle = *img.get_pixel(x, ((bar.top + bar.bottom) / 2) as u32);
        let bottom = *img.get_pixel(x, bar.bottom as u32);
        assert_eq!(top, colour_map(1.0));
        assert_eq!(bottom, colour_map(0.0));
        // Blue at the bottom, red at the top, green in the middle.
        assert!(
            bottom[2] > bottom[0] && bottom[2] > bottom[1],
            "bottom {bottom:?}"
        );
        assert!(top[0] > top[1] && top[0] > top[2], "top {top:?}");
        assert!(
            middle[1] > middle[0] && middle[1] > middle[2],
            "middle {middle:?}"
        );
        assert!(bar.bottom - bar.top > 200, "bar too short to read");
    }

    #[test]
    fn colour_bar_has_tick_labels_and_unit_text() {
        let (img, layout) = render_disc(vec![], None);
        let bar = ColourBarGeometry::new(&layout);
        let label_left = bar.left + COLOUR_BAR_WIDTH_PX + TICK_LENGTH_PX + TICK_LABEL_GAP_PX;
        let unit_left =
            label_left + TICK_LABEL_MAX_CHARS * GLYPH_ADVANCE * TEXT_SCALE_PX + UNIT_LABEL_GAP_PX;
        let white_in = |x0: i64, x1: i64| {
            (bar.top..=bar.bottom)
                .flat_map(|y| (x0..x1).map(move |x| (x, y)))
                .filter(|&(x, y)| *img.get_pixel(x as u32, y as u32) == TEXT_COLOUR)
                .count()
        };
        assert!(white_in(label_left, unit_left) > 100, "no tick labels");
        assert!(white_in(unit_left, layout.width_px) > 100, "no unit text");
        assert!((unit_left + GLYPH_HEIGHT * TEXT_SCALE_PX) <= layout.width_px);
    }

    #[test]
    fn output_is_at_least_768_wide_for_any_grid() {
        for cols in [1, 37, 100, 128, 256, 767, 768, 769, 1024] {
            let radiance = Array2::<f32>::zeros((cols / 2 + 1, cols));
            let layout = Layout::new(radiance.dim());
            let img = render(&OverlayInput {
                photograph: None,
                radiance: &radiance,
                regions: vec![],
                range: None,
                title: "t".to_string(),
            });
            assert!(
                layout.plot_width >= MIN_OUTPUT_WIDTH_PX as i64,
                "{cols} columns"
            );
            assert_eq!(
                layout.plot_width % cols as i64,
                0,
                "integer upscale for {cols} columns"
            );
            assert_eq!(img.width() as i64, layout.width_px);
        }
    }

    #[test]
    fn empty_radiance_map_renders_without_panicking() {
        let radiance = Array2::<f32>::zeros((0, 0));
        let photo = gradient_photo();
        let img = render(&OverlayInput {
            photograph: Some(&photo),
            radiance: &radiance,
            regions: vec![disc_region()],
            range: None,
            title: "empty".to_string(),
        });
        assert!(img.width() >= MIN_OUTPUT_WIDTH_PX as u32);
    }

    #[test]
    fn automatic_range_sits_between_noise_and_peak() {
        let range = auto_range(&disc_radiance());
        let noise_sigma = NOISE_AMPLITUDE / 3.0_f32.sqrt(); // uniform on [-A, A)
        assert!(
            range.min > 3.0 * noise_sigma,
            "min {} inside the noise",
            range.min
        );
        assert!(
            range.min < 0.1 * DISC_PEAK,
            "min {} hides the disc",
            range.min
        );
        assert!(
            range.max > 0.95 * DISC_PEAK && range.max <= DISC_PEAK + NOISE_AMPLITUDE,
            "max {}",
            range.max
        );
    }

    #[test]
    fn automatic_range_limits_decades_and_survives_flat_maps() {
        let mut radiance = Array2::<f32>::zeros((50, 50));
        radiance[[10, 10]] = 5.0e6;
        let range = auto_range(&radiance);
        assert!(DisplayRange::is_drawable(range.min, range.max));
        assert!((range.max / range.min) as f64 <= 10f64.powf(MAX_DISPLAY_DECADES) * 1.001);
        let flat = auto_range(&Array2::<f32>::zeros((8, 8)));
        assert!(DisplayRange::is_drawable(flat.min, flat.max));
        assert_eq!(flat.position(0.0), None);
    }

    #[test]
    fn invalid_requested_range_falls_back_to_automatic() {
        let radiance = disc_radiance();
        let auto = auto_range(&radiance);
        for bad in [
            (0.0, 1.0e6),
            (-5.0, 1.0e6),
            (1.0e6, 1.0e3),
            (f32::NAN, 1.0e6),
        ] {
            assert_eq!(resolve_range(&radiance, Some(bad)), auto, "{bad:?}");
        }
        let good = (2.0e3, 3.0e5);
        assert_eq!(
            resolve_range(&radiance, Some(good)),
            DisplayRange {
                min: good.0,
                max: good.1
            }
        );
    }

    #[test]
    fn colour_scale_is_logarithmic() {
        let range = DisplayRange {
            min: 1.0e3,
            max: 1.0e7,
        };
        assert_eq!(range.position(1.0e3), None);
        assert_eq!(range.position(f32::NAN), None);
        assert!((range.position(1.0e5).unwrap() - 0.5).abs() < 1e-9);
        assert_eq!(range.position(1.0e9), Some(1.0));
        assert!((range.value_at(0.25) - 1.0e4).abs() < 1e-6);
    }

    #[test]
    fn photograph_stretch_ignores_a_few_hot_pixels() {
        let mut photo =
            Array2::from_shape_fn((100, 100), |(_, c)| if c < 50 { 1_000u16 } else { 3_000 });
        for i in 0..3 {
            photo[[i, 0]] = u16::MAX;
        }
        let stretch = GreyStretch::from_percentiles(&photo);
        assert_eq!(stretch.grey(1_000.0), 0);
        assert_eq!(stretch.grey(3_000.0), 255);
        assert_eq!(stretch.grey(2_000.0), 128);
    }

    #[test]
    fn tick_labels_use_short_scientific_notation() {
        assert_eq!(format_tick(1.234e6), "1.2e6");
        assert_eq!(format_tick(3.0e-2), "3.0e-2");
        assert_eq!(format_tick(9.96e6), "1.0e7");
        assert!(format_tick(1.0e-12).len() as i64 <= TICK_LABEL_MAX_CHARS);
    }

    #[test]
    fn font_covers_every_character_used_and_glyphs_are_distinct() {
        let required = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz.-+/^:_()# ";
        let mut seen: Vec<(char, [u8; 7])> = Vec::new();
        for ch in required.chars().chain(UNIT_LABEL.chars()) {
            let rows = glyph(ch).unwrap_or_else(|| panic!("no glyph for {ch:?}"));
            assert!(
                rows.iter().all(|&r| r < 1 << GLYPH_WIDTH),
                "{ch:?} wider than 5"
            );
            if let Some((other, _)) = seen.iter().find(|(o, r)| *r == rows && *o != ch) {
                panic!("{ch:?} and {other:?} have the same glyph");
            }
            seen.push((ch, rows));
        }
        // Unknown characters are drawn (as '?'), not skipped.
        assert_eq!(glyph_pixels('€').count(), glyph_pixels('?').count());
    }

    #[test]
    fn upright_and_upward_text_light_the_same_number_of_pixels() {
        let count_white = |img: &RgbImage| img.pixels().filter(|&&p| p == TEXT_COLOUR).count();
        let mut across = RgbImage::new(200, 200);
        draw_text(&mut across, 10, 10, "1.2e6", TEXT_COLOUR);
        let mut up = RgbImage::new(200, 200);
        draw_text_upwards(&mut up, 10, 190, "1.2e6", TEXT_COLOUR);
        assert!(count_white(&across) > 0);
        assert_eq!(count_white(&across), count_white(&up));
    }

    #[test]
    fn write_png_round_trips() {
        let (img, _) = render_disc(vec![disc_region()], None);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("overlay.png");
        write_png(&path, &img).unwrap();
        let back = image::open(&path).unwrap();
        assert_eq!((back.width(), back.height()), img.dimensions());
        assert_eq!(back.to_rgb8(), img);
    }

    #[test]
    fn write_png_into_a_missing_directory_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("no_such_dir").join("overlay.png");
        let err = write_png(&path, &RgbImage::new(4, 4)).unwrap_err();
        let message = err.to_string();
        assert!(message.contains(&path.display().to_string()), "{message}");
        assert!(message.contains("directory exists"), "{message}");
    }

    /// A mouse-like photograph with two tumours, written to the temporary directory for a
    /// person to look at: `cargo test --lib overlay::tests::demo -- --ignored`.
    #[test]
    #[ignore = "writes a demo image for visual inspection"]
    fn demo_png_for_visual_inspection() {
        const LUM: usize = 128;
        const PHOTO: usize = 1024;
        let body = |x: f64, y: f64| ((x - 0.5) / 0.22).powi(2) + ((y - 0.5) / 0.42).powi(2) <= 1.0;
        let photo = Array2::from_shape_fn((PHOTO, PHOTO), |(r, c)| {
            let (x, y) = (
                (c as f64 + 0.5) / PHOTO as f64,
                (r as f64 + 0.5) / PHOTO as f64,
            );
            let texture = 300.0 * pseudo_noise(r * PHOTO + c) as f64;
            let level = if body(x, y) {
                9_000.0 - 4_000.0 * ((x - 0.5) / 0.22).powi(2)
            } else {
                1_500.0
            };
            (level + texture) as u16
        });
        let tumours = [([60.5, 45.5], 5.0, 3.0e6), ([70.5, 90.5], 4.0, 2.0e5)];
        let radiance = Array2::from_shape_fn((LUM, LUM), |(r, c)| {
            let (x, y) = (c as f64 + 0.5, r as f64 + 0.5);
            let signal: f64 = tumours
                .iter()
                .map(|([tx, ty], sigma, peak)| {
                    peak * (-((x - tx).powi(2) + (y - ty).powi(2)) / (2.0 * sigma * sigma)).exp()
                })
                .sum();
            (signal + 2.0e3 * pseudo_noise(r * LUM + c) as f64) as f32
        });
        let regions = tumours
            .iter()
            .enumerate()
            .map(|(i, &(centre, sigma, _))| OverlayRegion {
                mask: Array2::from_shape_fn((LUM, LUM), |(r, c)| {
                    (c as f64 + 0.5 - centre[0]).hypot(r as f64 + 0.5 - centre[1]) <= 2.5 * sigma
                }),
                label: format!("ROI {}", i + 1),
                centroid_px: centre,
            })
            .collect();
        let img = render(&OverlayInput {
            photograph: Some(&photo),
            radiance: &radiance,
            regions,
            range: None,
            title: "IVIS Lumina III  2024-05-01 10:32:05  exp 60 s  bin 8".to_string(),
        });
        write_png(&std::env::temp_dir().join("overlay_demo.png"), &img).unwrap();
    }
}
