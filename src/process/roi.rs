//! Regions of interest drawn by a person (circle, ellipse, rectangle) and their pixel masks.
//!
//! Coordinates are continuous, in the luminescent frame's own pixel grid: x to the right,
//! y down, the first pixel covering [0, 1) × [0, 1) so its centre is (0.5, 0.5). A pixel
//! belongs to a region when its centre lies inside the shape (Living Image's convention).

use ndarray::Array2;
use serde::{Deserialize, Serialize};

/// The geometric shape of a region, in pixel units of the frame it is measured on.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "shape", rename_all = "snake_case")]
pub enum RoiShape {
    /// Ellipse (a circle when `width == height`) centred on (xc, yc); `width` and `height`
    /// are full axes before rotation by `angle_deg` (counter-clockwise on screen).
    Ellipse {
        xc: f64,
        yc: f64,
        width: f64,
        height: f64,
        angle_deg: f64,
    },
    /// Rectangle centred on (xc, yc), rotated by `angle_deg`.
    Rectangle {
        xc: f64,
        yc: f64,
        width: f64,
        height: f64,
        angle_deg: f64,
    },
}

/// A named region to measure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Roi {
    pub label: String,
    #[serde(flatten)]
    pub shape: RoiShape,
}

impl RoiShape {
    /// Whether the point (x, y) lies inside the shape (boundary included).
    pub fn contains(&self, x: f64, y: f64) -> bool {
        match *self {
            RoiShape::Ellipse {
                xc,
                yc,
                width,
                height,
                angle_deg,
            } => {
                let (u, v) = rotate_into(x - xc, y - yc, angle_deg);
                let a = width / 2.0;
                let b = height / 2.0;
                if a <= 0.0 || b <= 0.0 {
                    return false;
                }
                (u / a).powi(2) + (v / b).powi(2) <= 1.0
            }
            RoiShape::Rectangle {
                xc,
                yc,
                width,
                height,
                angle_deg,
            } => {
                let (u, v) = rotate_into(x - xc, y - yc, angle_deg);
                u.abs() <= width / 2.0 && v.abs() <= height / 2.0
            }
        }
    }

    /// The same shape in a grid `factor` times coarser (e.g. unbinned → binned by 8).
    pub fn scaled(&self, factor: f64) -> RoiShape {
        match *self {
            RoiShape::Ellipse {
                xc,
                yc,
                width,
                height,
                angle_deg,
            } => RoiShape::Ellipse {
                xc: xc / factor,
                yc: yc / factor,
                width: width / factor,
                height: height / factor,
                angle_deg,
            },
            RoiShape::Rectangle {
                xc,
                yc,
                width,
                height,
                angle_deg,
            } => RoiShape::Rectangle {
                xc: xc / factor,
                yc: yc / factor,
                width: width / factor,
                height: height / factor,
                angle_deg,
            },
        }
    }

    /// Boolean mask over a `rows × cols` grid: pixels whose centres lie inside.
    pub fn mask(&self, rows: usize, cols: usize) -> Array2<bool> {
        Array2::from_shape_fn((rows, cols), |(r, c)| {
            self.contains(c as f64 + 0.5, r as f64 + 0.5)
        })
    }
}

/// Express an offset in the shape's own axes (undo a counter-clockwise on-screen rotation;
/// screen y points down, so the on-screen angle is the negative of the maths angle).
fn rotate_into(dx: f64, dy: f64, angle_deg: f64) -> (f64, f64) {
    if angle_deg == 0.0 {
        return (dx, dy);
    }
    let t = (-angle_deg).to_radians();
    let (s, c) = t.sin_cos();
    (dx * c + dy * s, -dx * s + dy * c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn circle_mask_counts_pixel_centres() {
        // Diameter 2.5 centred on a pixel centre: the four neighbours at distance 1 are in,
        // the diagonal ones at distance √2 > 1.25 are out.
        let c = RoiShape::Ellipse {
            xc: 5.5,
            yc: 5.5,
            width: 2.5,
            height: 2.5,
            angle_deg: 0.0,
        };
        let m = c.mask(11, 11);
        assert_eq!(m.iter().filter(|&&b| b).count(), 9 - 4);
        assert!(m[[5, 5]] && m[[4, 5]] && m[[5, 6]]);
        assert!(!m[[4, 4]]);
    }

    #[test]
    fn rotated_rectangle_by_90_swaps_axes() {
        let r0 = RoiShape::Rectangle {
            xc: 10.0,
            yc: 10.0,
            width: 8.0,
            height: 2.0,
            angle_deg: 90.0,
        };
        assert!(r0.contains(10.0, 13.5));
        assert!(!r0.contains(13.5, 10.0));
    }

    #[test]
    fn scaling_keeps_membership() {
        let e = RoiShape::Ellipse {
            xc: 80.0,
            yc: 40.0,
            width: 32.0,
            height: 16.0,
            angle_deg: 30.0,
        };
        let s = e.scaled(8.0);
        assert_eq!(e.contains(84.0, 44.0), s.contains(10.5, 5.5));
    }
}
