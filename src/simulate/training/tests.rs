//! Unit tests of the training-set generator: determinism, tumour labels and SNR, region matching, the .npy header.

use super::*;

#[test]
fn same_seed_and_index_same_frame() {
    let a = generate_frame(Profile::Train, 11, 3);
    let b = generate_frame(Profile::Train, 11, 3);
    assert_eq!(a.sim.luminescent_adu, b.sim.luminescent_adu);
    assert_eq!(a.input, b.input);
    assert_eq!(a.info, b.info);
    let c = generate_frame(Profile::Train, 11, 4);
    assert_ne!(a.info, c.info);
}

#[test]
fn tumours_get_their_drawn_snr_and_a_label() {
    let mut checked = 0;
    for index in 0..6 {
        let f = generate_frame(Profile::Train, 5, index);
        assert_eq!(f.input.dim(), f.labels.dim());
        assert_eq!((f.info.rows, f.info.cols), f.input.dim());
        for t in &f.info.tumours {
            assert!(
                t.label_pixels >= 1,
                "tumour {} has no label pixels",
                t.label
            );
            let r = t.snr;
            assert!((1.5..=1000.0).contains(&r));
            // A bright, isolated tumour stands out in the input at its peak.
            if r > 100.0 && !t.touching {
                let (x, y) = (t.centre_work_px[0] as usize, t.centre_work_px[1] as usize);
                let peak = f.input[[y.min(f.info.rows - 1), x.min(f.info.cols - 1)]];
                assert!(peak > 2.0, "SNR {r} tumour peaks at only {peak}");
                checked += 1;
            }
        }
    }
    assert!(checked > 0, "no bright tumour among the frames checked");
}

#[test]
fn a_region_finds_only_the_brightest_tumour_whose_centre_it_covers() {
    let mut regions = Array2::<u32>::zeros((10, 10));
    for r in 0..4 {
        for c in 0..4 {
            regions[[r, c]] = 1;
        }
    }
    regions[[8, 8]] = 2;
    let tumours = [([1.5, 1.5], 10.0), ([3.2, 2.9], 50.0), ([6.5, 6.5], 5.0)];
    let (found, fp) = match_regions(&regions, &tumours);
    assert_eq!(found, vec![false, true, false]);
    assert_eq!(fp, 1, "region 2 covers no centre");
}

#[test]
fn npy_header_is_aligned_and_describes_the_array() {
    let a = Array2::from_shape_fn((3, 5), |(r, c)| (r * 5 + c) as f32);
    let b = npy_f32(&a);
    assert_eq!(&b[..8], b"\x93NUMPY\x01\x00");
    let hlen = u16::from_le_bytes([b[8], b[9]]) as usize;
    assert_eq!((10 + hlen) % 64, 0);
    let header = std::str::from_utf8(&b[10..10 + hlen]).unwrap();
    assert!(header.contains("'descr': '<f4'") && header.contains("'shape': (3, 5)"));
    assert_eq!(b.len(), 10 + hlen + 15 * 4);
    let last = f32::from_le_bytes(b[b.len() - 4..].try_into().unwrap());
    assert_eq!(last, 14.0);
}
