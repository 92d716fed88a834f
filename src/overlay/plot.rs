//! The trend plot: each tumour's flux against day on a logarithmic axis, the calibrated
//! value as a hollow marker and the QC-corrected one filled, each with its 1σ error bar,
//! one colour per tumour with a legend.
//!
//! Owns: drawing the plot into an image. Pure.

use image::{Rgb, RgbImage};

use super::put;
use super::text::{draw_text, draw_text_upwards, text_size};

/// One point: day, value and its 1σ.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PlotPoint {
    pub day: f64,
    pub value: f64,
    pub sigma: f64,
}

/// One tumour: its label, calibrated and corrected points.
#[derive(Debug, Clone, PartialEq)]
pub struct PlotSeries {
    pub label: String,
    pub raw: Vec<PlotPoint>,
    pub corrected: Vec<PlotPoint>,
}

const WIDTH_PX: i64 = 1000;
const HEIGHT_PX: i64 = 640;
const LEFT_PX: i64 = 90;
const RIGHT_PX: i64 = 200;
const TOP_PX: i64 = 40;
const BOTTOM_PX: i64 = 60;
const BACKGROUND: Rgb<u8> = Rgb([255, 255, 255]);
const AXIS: Rgb<u8> = Rgb([40, 40, 40]);
const GRID: Rgb<u8> = Rgb([225, 225, 225]);
const MARKER_PX: i64 = 4;
const PALETTE: [Rgb<u8>; 8] = [
    Rgb([31, 119, 180]),
    Rgb([255, 127, 14]),
    Rgb([44, 160, 44]),
    Rgb([214, 39, 40]),
    Rgb([148, 103, 189]),
    Rgb([140, 86, 75]),
    Rgb([227, 119, 194]),
    Rgb([23, 190, 207]),
];

/// Render the plot; `title` goes on top.
pub fn render_trend(series: &[PlotSeries], title: &str) -> RgbImage {
    let mut img = RgbImage::from_pixel(WIDTH_PX as u32, HEIGHT_PX as u32, BACKGROUND);
    let all = || {
        series
            .iter()
            .flat_map(|s| s.raw.iter().chain(&s.corrected))
            .filter(|p| p.value > 0.0 && p.value.is_finite())
    };
    let (mut lo, mut hi) = all().fold((f64::MAX, f64::MIN), |(lo, hi), p| {
        (lo.min(p.value - p.sigma), hi.max(p.value + p.sigma))
    });
    let max_day = all().map(|p| p.day).fold(0.0f64, f64::max).max(1.0);
    if !(lo.is_finite() && hi.is_finite() && lo < hi) {
        lo = 1.0;
        hi = 10.0;
    }
    let (l0, l1) = (
        lo.max(1e-30).log10().floor(),
        hi.log10().ceil().max(lo.log10().floor() + 1.0),
    );
    let (x0, x1) = (LEFT_PX, WIDTH_PX - RIGHT_PX);
    let (y0, y1) = (TOP_PX, HEIGHT_PX - BOTTOM_PX);
    let px = |day: f64| x0 + ((day / max_day) * (x1 - x0) as f64).round() as i64;
    let py = |v: f64| {
        let t = (v.max(10f64.powf(l0)).log10() - l0) / (l1 - l0);
        y1 - (t * (y1 - y0) as f64).round() as i64
    };
    // Grid and axes.
    let mut decade = l0;
    while decade <= l1 + 1e-9 {
        let y = py(10f64.powf(decade));
        line(&mut img, x0, y, x1, y, GRID);
        let label = format!("1e{}", decade as i64);
        let (w, h) = text_size(&label);
        draw_text(&mut img, x0 - w - 8, y - h / 2, &label, AXIS);
        decade += 1.0;
    }
    let step = if max_day > 20.0 { 5.0 } else { 1.0 };
    let mut d = 0.0;
    while d <= max_day + 1e-9 {
        let x = px(d);
        line(&mut img, x, y1, x, y1 + 5, AXIS);
        let label = format!("{d:.0}");
        let (w, _) = text_size(&label);
        draw_text(&mut img, x - w / 2, y1 + 10, &label, AXIS);
        d += step;
    }
    line(&mut img, x0, y0, x0, y1, AXIS);
    line(&mut img, x0, y1, x1, y1, AXIS);
    let (w, _) = text_size("day");
    draw_text(&mut img, (x0 + x1) / 2 - w / 2, y1 + 34, "day", AXIS);
    draw_text_upwards(&mut img, 12, (y0 + y1) / 2 + 60, "flux (p/s)", AXIS);
    draw_text(&mut img, x0, 12, title, AXIS);
    // The series.
    for (i, s) in series.iter().enumerate() {
        let colour = PALETTE[i % PALETTE.len()];
        for (points, filled) in [(&s.raw, false), (&s.corrected, true)] {
            let mut prev: Option<(i64, i64)> = None;
            for p in points.iter().filter(|p| p.value > 0.0) {
                let (x, y) = (px(p.day) + if filled { 3 } else { -3 }, py(p.value));
                let (ya, yb) = (py((p.value - p.sigma).max(1e-30)), py(p.value + p.sigma));
                line(&mut img, x, ya, x, yb, colour);
                marker(&mut img, x, y, colour, filled);
                if filled {
                    if let Some((qx, qy)) = prev {
                        line(&mut img, qx, qy, x, y, colour);
                    }
                    prev = Some((x, y));
                }
            }
        }
        let ly = TOP_PX + 10 + 22 * i as i64;
        marker(&mut img, x1 + 20, ly + 6, colour, true);
        draw_text(&mut img, x1 + 32, ly, &s.label, colour);
    }
    let ly = TOP_PX + 10 + 22 * series.len() as i64 + 10;
    marker(&mut img, x1 + 20, ly + 6, AXIS, true);
    draw_text(&mut img, x1 + 32, ly, "QC-corrected", AXIS);
    marker(&mut img, x1 + 20, ly + 28, AXIS, false);
    draw_text(&mut img, x1 + 32, ly + 22, "calibrated", AXIS);
    img
}

fn marker(img: &mut RgbImage, x: i64, y: i64, colour: Rgb<u8>, filled: bool) {
    for dy in -MARKER_PX..=MARKER_PX {
        for dx in -MARKER_PX..=MARKER_PX {
            let edge = dx.abs() == MARKER_PX || dy.abs() == MARKER_PX;
            if filled || edge {
                put(img, x + dx, y + dy, colour);
            }
        }
    }
}

/// A straight line (Bresenham).
fn line(img: &mut RgbImage, x0: i64, y0: i64, x1: i64, y1: i64, colour: Rgb<u8>) {
    let (dx, dy) = ((x1 - x0).abs(), -(y1 - y0).abs());
    let (sx, sy) = (if x0 < x1 { 1 } else { -1 }, if y0 < y1 { 1 } else { -1 });
    let (mut x, mut y, mut err) = (x0, y0, dx + dy);
    loop {
        put(img, x, y, colour);
        if x == x1 && y == y1 {
            break;
        }
        let e2 = 2 * err;
        if e2 >= dy {
            err += dy;
            x += sx;
        }
        if e2 <= dx {
            err += dx;
            y += sy;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_land_where_their_values_say() {
        let s = vec![PlotSeries {
            label: "M101-T1".into(),
            raw: vec![],
            corrected: vec![
                PlotPoint {
                    day: 0.0,
                    value: 1e6,
                    sigma: 0.0,
                },
                PlotPoint {
                    day: 9.0,
                    value: 1e7,
                    sigma: 0.0,
                },
            ],
        }];
        let img = render_trend(&s, "test");
        assert_eq!(img.dimensions(), (WIDTH_PX as u32, HEIGHT_PX as u32));
        // The axis spans 1e6..1e7: the first point sits on the bottom-left, the last on
        // the top-right of the plot area, in the first palette colour.
        let at = |x: i64, y: i64| *img.get_pixel(x as u32, y as u32);
        assert_eq!(at(LEFT_PX + 3, HEIGHT_PX - BOTTOM_PX), PALETTE[0]);
        assert_eq!(at(WIDTH_PX - RIGHT_PX + 3, TOP_PX), PALETTE[0]);
    }
}
