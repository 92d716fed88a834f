//! Padding and tiling of a model input so a fully convolutional network sees every frame
//! the same way: each side padded with zeros to a multiple of the network's total stride,
//! and frames above a size limit cut into equal tiles that overlap by a margin, each tile
//! contributing only its centre.
//!
//! Owns: the geometry (where tiles start, which part of each is kept) and the stitching.
//! Deliberately does not own inference: the caller passes the function that runs one tile,
//! so this file is pure and is tested without a model.

use ndarray::{Array2, Array3, ArrayView2, ArrayView3, ArrayViewMut2, Axis, Slice};

/// How inputs are cut before inference, in pixels of the model's grid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TileLayout {
    /// Every side given to the model is a multiple of this (the network's total stride).
    pub pad_multiple_px: usize,
    /// Sides (after padding) up to this run in one pass; larger ones are tiled with tiles
    /// of this side. A multiple of `pad_multiple_px`.
    pub max_tile_px: usize,
    /// Each tile's border of this width is computed but discarded (it sees zeros or a cut
    /// where the whole frame has data), except at the frame's own edges. A multiple of
    /// `pad_multiple_px`, at least the network's receptive-field radius.
    pub overlap_px: usize,
}

/// Why a layout cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("tile layout {layout:?}: {reason}")]
pub struct LayoutError {
    pub layout: TileLayout,
    pub reason: &'static str,
}

impl TileLayout {
    /// Check the invariants the stitching relies on.
    pub fn validate(&self) -> Result<(), LayoutError> {
        let fail = |reason| {
            Err(LayoutError {
                layout: *self,
                reason,
            })
        };
        if self.pad_multiple_px == 0 {
            return fail("pad_multiple_px must be at least 1");
        }
        if self.max_tile_px % self.pad_multiple_px != 0
            || self.overlap_px % self.pad_multiple_px != 0
        {
            return fail("max_tile_px and overlap_px must be multiples of pad_multiple_px");
        }
        if self.max_tile_px <= 2 * self.overlap_px {
            return fail("max_tile_px must exceed twice overlap_px");
        }
        Ok(())
    }

    /// The side after zero padding.
    pub fn padded(&self, side_px: usize) -> usize {
        side_px.div_ceil(self.pad_multiple_px).max(1) * self.pad_multiple_px
    }

    /// Tiles along one side of `padded_px`: (start, length, keep_from, keep_to) with the
    /// kept ranges covering `0..padded_px` exactly once, in order. Every start is a
    /// multiple of `pad_multiple_px`, so a strided network sees each pixel at the same
    /// phase as in a single pass.
    pub fn spans(&self, padded_px: usize) -> Vec<Span> {
        if padded_px <= self.max_tile_px {
            return vec![Span {
                start: 0,
                len: padded_px,
                keep_from: 0,
                keep_to: padded_px,
            }];
        }
        let t = self.max_tile_px;
        let step = t - 2 * self.overlap_px;
        let mut out = Vec::new();
        let mut kept_to = 0;
        let mut start = 0;
        loop {
            let start_px = start.min(padded_px - t);
            let last = start_px + t == padded_px;
            let keep_to = if last {
                padded_px
            } else {
                start_px + t - self.overlap_px
            };
            out.push(Span {
                start: start_px,
                len: t,
                keep_from: kept_to,
                keep_to,
            });
            kept_to = keep_to;
            if last {
                return out;
            }
            start += step;
        }
    }
}

/// One tile along one axis: the tile covers `start..start + len`; its pixels in
/// `keep_from..keep_to` (frame coordinates) go into the result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub start: usize,
    pub len: usize,
    pub keep_from: usize,
    pub keep_to: usize,
}

/// Run `infer` over `input` (channels × rows × cols) padded and tiled by `layout`, and
/// return its single-channel output on the input's own rows and columns. `infer` gets a
/// tile (channels × tile rows × tile cols) and must return a map of the tile's size.
pub fn run_tiled<E>(
    input: ArrayView3<f32>,
    layout: &TileLayout,
    mut infer: impl FnMut(ArrayView3<f32>) -> Result<Array2<f32>, E>,
) -> Result<Array2<f32>, E> {
    let (channels, rows, cols) = input.dim();
    let (pr, pc) = (layout.padded(rows), layout.padded(cols));
    let padded = if (pr, pc) == (rows, cols) {
        None
    } else {
        let mut p = Array3::<f32>::zeros((channels, pr, pc));
        p.slice_axis_mut(Axis(1), Slice::from(..rows))
            .slice_axis_mut(Axis(2), Slice::from(..cols))
            .assign(&input);
        Some(p)
    };
    let full = padded.as_ref().map_or(input, |p| p.view());
    let mut out = Array2::<f32>::zeros((pr, pc));
    for rs in layout.spans(pr) {
        for cs in layout.spans(pc) {
            let tile = full
                .slice_axis_move(Axis(1), Slice::from(rs.start..rs.start + rs.len))
                .slice_axis_move(Axis(2), Slice::from(cs.start..cs.start + cs.len));
            let map = infer(tile)?;
            let kept = window(
                map.view(),
                rs.keep_from - rs.start..rs.keep_to - rs.start,
                cs.keep_from - cs.start..cs.keep_to - cs.start,
            );
            window_mut(
                out.view_mut(),
                rs.keep_from..rs.keep_to,
                cs.keep_from..cs.keep_to,
            )
            .assign(&kept);
        }
    }
    if (pr, pc) == (rows, cols) {
        Ok(out)
    } else {
        Ok(window(out.view(), 0..rows, 0..cols).to_owned())
    }
}

fn window(
    a: ArrayView2<'_, f32>,
    rows: std::ops::Range<usize>,
    cols: std::ops::Range<usize>,
) -> ArrayView2<'_, f32> {
    a.slice_axis_move(Axis(0), Slice::from(rows))
        .slice_axis_move(Axis(1), Slice::from(cols))
}

fn window_mut(
    a: ArrayViewMut2<'_, f32>,
    rows: std::ops::Range<usize>,
    cols: std::ops::Range<usize>,
) -> ArrayViewMut2<'_, f32> {
    a.slice_axis_move(Axis(0), Slice::from(rows))
        .slice_axis_move(Axis(1), Slice::from(cols))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(p: usize, t: usize, o: usize) -> TileLayout {
        TileLayout {
            pad_multiple_px: p,
            max_tile_px: t,
            overlap_px: o,
        }
    }

    #[test]
    fn spans_cover_every_pixel_once_with_aligned_starts() {
        let l = layout(8, 64, 16);
        l.validate().unwrap();
        for padded in (8..=400).step_by(8) {
            let spans = l.spans(padded);
            let mut next = 0;
            for sp in &spans {
                assert_eq!(sp.keep_from, next, "{padded}: {spans:?}");
                assert!(sp.keep_to > sp.keep_from);
                assert_eq!(sp.start % 8, 0);
                assert!(sp.start + sp.len <= padded);
                assert!(sp.keep_from >= sp.start && sp.keep_to <= sp.start + sp.len);
                // Away from the frame's edges a tile keeps nothing within its margin.
                if sp.start > 0 {
                    assert!(sp.keep_from >= sp.start + 16, "{padded}: {sp:?}");
                }
                if sp.start + sp.len < padded {
                    assert!(sp.keep_to + 16 <= sp.start + sp.len, "{padded}: {sp:?}");
                }
                next = sp.keep_to;
            }
            assert_eq!(next, padded);
        }
    }

    #[test]
    fn bad_layouts_are_refused() {
        assert!(layout(8, 60, 16).validate().is_err());
        assert!(layout(8, 64, 32).validate().is_err());
        assert!(layout(0, 64, 16).validate().is_err());
    }

    /// A local operator (3×3 box sum) tiled gives exactly what it gives in one pass.
    #[test]
    fn a_local_operator_is_unchanged_by_tiling() {
        let (rows, cols) = (150, 211);
        let input = Array3::from_shape_fn((2, rows, cols), |(c, r, k)| {
            ((r * 31 + k * 17 + c * 7) % 13) as f32
        });
        let box_sum = |x: ArrayView3<f32>| -> Result<Array2<f32>, ()> {
            let (_, h, w) = x.dim();
            Ok(Array2::from_shape_fn((h, w), |(r, c)| {
                let mut s = 0.0;
                for rr in r.saturating_sub(1)..(r + 2).min(h) {
                    for cc in c.saturating_sub(1)..(c + 2).min(w) {
                        s += x[[0, rr, cc]] - x[[1, rr, cc]];
                    }
                }
                s
            }))
        };
        let single = run_tiled(input.view(), &layout(8, 1024, 8), box_sum).unwrap();
        let mut calls = 0;
        let tiled = run_tiled(input.view(), &layout(8, 48, 8), |t| {
            calls += 1;
            box_sum(t)
        })
        .unwrap();
        assert!(calls > 4);
        assert_eq!(single.dim(), (rows, cols));
        assert_eq!(single, tiled);
    }
}
