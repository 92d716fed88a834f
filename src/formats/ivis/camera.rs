//! The camera block of a click folder as calibration: the shelf of the image's field of
//! view, its C-ccd coefficient, its flat-field polynomial (with the plausibility check) and
//! the defect map in Living Image's `CCDMap` grammar.
//!
//! Owns: turning camera-block fields into numbers and masks, and the errors that name the
//! line. Does not own: the text grammar (`click_info`) nor applying the calibration
//! (`crate::process`).

use super::*;

/// The shelf whose `Shelf Position X FOV` matches `fov_cm`.
pub(super) fn shelf_for_fov(info: &ClickInfo, fov_cm: f64) -> Result<char, FormatError> {
    let mut shelves = Vec::new();
    for (key, value) in info.all_fields() {
        if let Some(letter) = shelf_fov_key(key) {
            shelves.push((letter, info.number_in(CAMERA, key, value)?));
        }
    }
    if shelves.is_empty() {
        return Err(info.missing(CAMERA, "Shelf Position D FOV"));
    }
    shelves
        .iter()
        .find(|(_, fov)| (fov - fov_cm).abs() <= FOV_TOLERANCE_CM)
        .map(|(l, _)| *l)
        .ok_or_else(|| {
            let listed: Vec<String> = shelves
                .iter()
                .map(|(l, f)| format!("{l} {}", num(*f)))
                .collect();
            FormatError::bad_field(
                info.file_of(LUMINESCENT),
                format!("{LUMINESCENT} / Field of View"),
                format!(
                    "is {} cm, which matches no `Shelf Position X FOV` line (shelves: {})",
                    num(fov_cm),
                    listed.join(", ")
                ),
                "the flat field is stored per shelf, so the shelf must be known; check the Field \
                 of View against the Camera System Info block, or re-export from Living Image",
            )
        })
}

/// The `Coef C-ccd` line for (fov, f-number).
pub(super) fn coefficient_for(
    info: &ClickInfo,
    fov_cm: f64,
    f_number: f64,
) -> Result<f64, FormatError> {
    let mut available = Vec::new();
    for (key, value) in info.all_fields() {
        if let Some((fov, f)) = coefficient_key(key) {
            if (fov - fov_cm).abs() <= FOV_TOLERANCE_CM
                && (f - f_number).abs() <= F_NUMBER_TOLERANCE
            {
                let c = info.number_in(CAMERA, key, value)?;
                if c <= 0.0 {
                    return Err(FormatError::bad_field(
                        info.file_of(CAMERA),
                        format!("{CAMERA} / {key}"),
                        format!("is {c}"),
                        "a radiance coefficient must be positive (p/sec/cm2/sr per count/s)",
                    ));
                }
                return Ok(c);
            }
            available.push(format!("FOV {}, f{}", num(fov), num(f)));
        }
    }
    let wanted = format!("Coef C-ccd at FOV {}, f{}", num(fov_cm), num(f_number));
    Err(FormatError::missing(
        info.file_of(CAMERA),
        format!("{CAMERA} / {wanted}"),
        info.missing_fix(
            info.file_of(CAMERA),
            format!(
            "no absolute calibration for FOV {} cm at f/{}; the folder has {}; radiance cannot be \
             computed without it: re-export the folder from Living Image, or process the frames \
             with a lumiq calibration set",
            num(fov_cm),
            num(f_number),
            if available.is_empty() {
                "no `Coef C-ccd` lines at all".to_string()
            } else {
                format!("coefficients for {}", available.join("; "))
            }
        ),
        ),
    ))
}

/// The `Shelf Position X FF5 f/N Coefs` polynomial for (shelf, f-number), with its key.
pub(super) fn flat_polynomial(
    info: &ClickInfo,
    shelf: char,
    f_number: f64,
) -> Result<(RadialFlat, String), FormatError> {
    let mut available = Vec::new();
    for (key, value) in info.all_fields() {
        let Some((letter, f)) = flat_key(key) else {
            continue;
        };
        if letter == shelf && (f - f_number).abs() <= F_NUMBER_TOLERANCE {
            let numbers: Option<Vec<f64>> = value.split(',').map(parse_number).collect();
            let coefs = numbers.and_then(|n| <[f64; 7]>::try_from(n).ok());
            let Some([k0, k1, k2, k3, k4, x0, y0]) = coefs else {
                return Err(FormatError::bad_field(
                    info.file_of(CAMERA),
                    format!("{CAMERA} / {key}"),
                    format!("is {value:?}"),
                    "expected seven comma-separated numbers k0,k1,k2,k3,k4,x0,y0 (r, x0, y0 in cm)",
                ));
            };
            let flat = RadialFlat {
                k: [k0, k1, k2, k3, k4],
                x0_cm: x0,
                y0_cm: y0,
            };
            return Ok((flat, key.to_string()));
        }
        available.push(format!("shelf {letter} f/{}", num(f)));
    }
    let wanted = format!("Shelf Position {shelf} FF5 f/{} Coefs", num(f_number));
    Err(FormatError::missing(
        info.file_of(CAMERA),
        format!("{CAMERA} / {wanted}"),
        info.missing_fix(
            info.file_of(CAMERA),
            format!(
            "no flat-field polynomial for shelf {shelf} at f/{}; the folder has {}; re-export the \
             folder from Living Image, or process the frames with a lumiq calibration set",
            num(f_number),
            if available.is_empty() {
                "none".to_string()
            } else {
                available.join(", ")
            }
        ),
        ),
    ))
}

/// Physics check of a flat-field polynomial over the frame. Real coefficients need not
/// fall monotonically, and a flat `1,0,0,0,0,0,0` is valid, so only a polynomial that is
/// zero, negative or not a number somewhere in the frame is an error (radiance is divided by
/// it). One that is positive but unlike any vignetting profile returns `Ok(Some(why))`: the
/// caller flags the record ([`QualityFlag::FlatImplausible`]) and warns.
pub(super) fn check_flat(
    info: &ClickInfo,
    key: &str,
    poly: &RadialFlat,
    flat: &Array2<f32>,
) -> Result<Option<String>, FormatError> {
    if let Some(((r, c), v)) = flat
        .indexed_iter()
        .find(|(_, v)| !(v.is_finite() && **v > 0.0))
    {
        return Err(FormatError::bad_field(
            info.file_of(CAMERA),
            format!("{CAMERA} / {key}"),
            format!(
                "the flat-field polynomial is {v} at row {r}, column {c}: radiance is divided \
                 by it, so it must be > 0 everywhere in the frame"
            ),
            "check the seven numbers (k0..k4 of ff(r) = Σ kᵢ rⁱ with r in cm at the object \
             plane, then the axis offset x0, y0 in cm); re-export the folder from Living Image, \
             or process the frames with a lumiq calibration set",
        ));
    }
    let axis = poly.at_radius(0.0);
    let (lo, hi) = flat
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(f64::from(v)), hi.max(f64::from(v)))
        });
    let why = if !(FLAT_AXIS_RANGE.0..=FLAT_AXIS_RANGE.1).contains(&axis) {
        Some(format!(
            "its on-axis value k0 = {axis:.4} is far from 1 (expected {}..{})",
            FLAT_AXIS_RANGE.0, FLAT_AXIS_RANGE.1
        ))
    } else if hi > axis * (1.0 + FLAT_PEAK_TOLERANCE) {
        Some(format!(
            "it rises to {hi:.4} in the frame, more than {:.0} % above its on-axis value \
             {axis:.4}",
            FLAT_PEAK_TOLERANCE * 100.0
        ))
    } else if lo < axis * FLAT_MIN_RELATIVE {
        Some(format!(
            "it falls to {lo:.4} in the frame, below {:.0} % of its on-axis value {axis:.4}",
            FLAT_MIN_RELATIVE * 100.0
        ))
    } else {
        None
    };
    Ok(why)
}

/// Sensor defects from `CCDMap`, in unbinned sensor coordinates (x = column, y = row, from 0).
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct CcdMap {
    /// Bad column segments: (column, first row, last row), rows inclusive.
    pub(super) columns: Vec<(usize, usize, usize)>,
    /// Bad row segments: (row, first column, last column), columns inclusive.
    pub(super) rows: Vec<(usize, usize, usize)>,
    /// Bad pixels: (x, y) = (column, row).
    pub(super) pixels: Vec<(usize, usize)>,
}

/// The first `CCDMap` line of the camera block, in Living Image's grammar (the file's own
/// comment): `col #, start row #, end row #, ... -1, row #, start col, end col, ... -1,
/// xVal1, yVal1, xVal2, yVal2 ... -1, substitute value, debug flag`. Bad columns come as
/// triples, then bad rows as triples, then bad pixels as pairs, each list closed by `-1`;
/// the substitute value and the debug flag are read and not used (lumiq repairs defects from
/// their neighbours). Later `CCDMap` lines are ignored, as Living Image ignores them.
pub(super) fn ccd_map(info: &ClickInfo) -> Result<CcdMap, FormatError> {
    let value = if info.section(CAMERA).is_some() {
        info.get(CAMERA, "CCDMap")
    } else {
        info.find("CCDMap")
    };
    let Some(value) = value else {
        return Ok(CcdMap::default());
    };
    parse_ccd_map(value).map_err(|problem| {
        FormatError::bad_field(
            info.file_of(CAMERA),
            format!("{CAMERA} / CCDMap"),
            format!("{value:?}: {problem}"),
            "the line must read `bad columns as col,start row,end row triples, -1, bad rows as \
             row,start col,end col triples, -1, bad pixels as x,y pairs, -1, substitute value, \
             debug flag` in sensor pixels (e.g. `-1,-1,929,1211,1828,1069,-1, 0, 0`); re-export \
             the folder from Living Image, or delete the line to read it without a defect map",
        )
    })
}

/// What is wrong with a CCDMap value (`what` names the list: "bad columns", ...).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub(super) enum CcdMapError {
    #[error("item {0:?} is not a whole number")]
    NotANumber(String),
    #[error("{what} {n} is negative (only -1 closes a list)")]
    Negative { what: &'static str, n: i64 },
    #[error("the list of {0} is not closed by -1")]
    NotClosed(&'static str),
    #[error("the list of {what} ends inside a group of {width}")]
    CutGroup { what: &'static str, width: usize },
    #[error("{what} {at}: start {start} is after end {end}")]
    Span {
        what: &'static str,
        at: usize,
        start: usize,
        end: usize,
    },
}

/// The grammar of [`ccd_map`], on the value alone; the error says what is wrong.
pub(super) fn parse_ccd_map(value: &str) -> Result<CcdMap, CcdMapError> {
    let mut numbers = Vec::new();
    for item in value.split(',').map(str::trim) {
        if item.is_empty() {
            continue;
        }
        let n: i64 = item
            .parse()
            .map_err(|_| CcdMapError::NotANumber(item.to_string()))?;
        numbers.push(n);
    }
    let mut rest = numbers.as_slice();
    let coordinate = |n: i64, what: &'static str| {
        usize::try_from(n).map_err(|_| CcdMapError::Negative { what, n })
    };
    // One list: groups of `width` numbers until a group starts with -1.
    let mut list = |width: usize, what: &'static str| -> Result<Vec<Vec<usize>>, CcdMapError> {
        let mut groups = Vec::new();
        loop {
            match rest.first() {
                None => return Err(CcdMapError::NotClosed(what)),
                Some(-1) => {
                    rest = &rest[1..];
                    return Ok(groups);
                }
                Some(_) if rest.len() < width => return Err(CcdMapError::CutGroup { what, width }),
                Some(_) => {
                    let group = rest[..width]
                        .iter()
                        .map(|&n| coordinate(n, what))
                        .collect::<Result<Vec<_>, _>>()?;
                    groups.push(group);
                    rest = &rest[width..];
                }
            }
        }
    };
    let span = |g: &[usize], what: &'static str| {
        if g[1] <= g[2] {
            Ok((g[0], g[1], g[2]))
        } else {
            Err(CcdMapError::Span {
                what,
                at: g[0],
                start: g[1],
                end: g[2],
            })
        }
    };
    let columns = list(3, "bad columns")?
        .iter()
        .map(|g| span(g, "bad column"))
        .collect::<Result<Vec<_>, _>>()?;
    let rows = list(3, "bad rows")?
        .iter()
        .map(|g| span(g, "bad row"))
        .collect::<Result<Vec<_>, _>>()?;
    let pixels = list(2, "bad pixels")?
        .iter()
        .map(|g| (g[0], g[1]))
        .collect();
    // What follows (substitute value, debug flag) carries nothing lumiq uses.
    Ok(CcdMap {
        columns,
        rows,
        pixels,
    })
}

/// Defects in unbinned sensor coordinates → mask in the binned grid: a binned pixel is bad
/// when any of the unbinned pixels it sums is. Defects outside the frame are ignored.
pub(super) fn binned_bad_pixels(dim: (usize, usize), binning: u32, map: &CcdMap) -> Array2<bool> {
    let b = binning as usize;
    let (rows, cols) = dim;
    let mut mask = Array2::from_elem(dim, false);
    let mut mark = |y: usize, x: usize| {
        let (r, c) = (y / b, x / b);
        if r < rows && c < cols {
            mask[[r, c]] = true;
        }
    };
    for &(x, y) in &map.pixels {
        mark(y, x);
    }
    // Segments are walked in steps of one binned pixel (plus their end), not pixel by pixel.
    for &(x, first, last) in &map.columns {
        for y in (first..=last.min(rows * b)).step_by(b).chain([last]) {
            mark(y, x);
        }
    }
    for &(y, first, last) in &map.rows {
        for x in (first..=last.min(cols * b)).step_by(b).chain([last]) {
            mark(y, x);
        }
    }
    mask
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ccd_map_grammar() {
        let ok = |v: &str| parse_ccd_map(v).unwrap();
        assert_eq!(
            ok("-1,-1,929,1211,1828,1069,-1, 0, 0"),
            CcdMap {
                columns: vec![],
                rows: vec![],
                pixels: vec![(929, 1211), (1828, 1069)],
            }
        );
        assert_eq!(
            ok("12, 0, 1919, 40, 100, 200, -1, 7, 3, 9, -1, -1, 0, 0"),
            CcdMap {
                columns: vec![(12, 0, 1919), (40, 100, 200)],
                rows: vec![(7, 3, 9)],
                pixels: vec![],
            }
        );
        // Nothing bad at all; the substitute value and debug flag may be absent.
        assert_eq!(ok("-1,-1,-1"), CcdMap::default());
        for (bad, says) in [
            ("-1,-1,929,1211", "not closed"),
            ("-1,-1,929", "inside a group"),
            ("-1,-1,929,x,-1,0,0", "not a whole number"),
            ("-1,-1,929,-5,-1,0,0", "negative"),
            ("5,10,2,-1,-1,-1,0,0", "after end"),
            ("pixel 120,455; column 1337", "not a whole number"),
        ] {
            let e = parse_ccd_map(bad).unwrap_err().to_string();
            assert!(e.contains(says), "{bad}: {e}");
        }
        // Bad column and row segments mark every binned pixel they touch.
        let map = ok("3,8,23,-1,17,0,15,-1,-1,0,0");
        let mask = binned_bad_pixels((4, 4), 8, &map);
        let marked: Vec<(usize, usize)> = mask
            .indexed_iter()
            .filter(|(_, &b)| b)
            .map(|(i, _)| i)
            .collect();
        assert_eq!(marked, [(1, 0), (2, 0), (2, 1)]);
    }
}
