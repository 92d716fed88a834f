//! Unit tests of the overlay: layout, display range, colour map, font and rendering.

use super::text::*;
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
