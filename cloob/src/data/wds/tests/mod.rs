mod fixtures;

use super::*;
use fixtures::{clean, messy, name, Pair, Tar, TempDir};
use std::collections::{BTreeSet, HashSet};

const SEED: u64 = 11;

fn config(pattern: &str, shuffle_buffer: usize) -> WdsConfig {
    WdsConfig {
        pattern: pattern.to_owned(),
        image_size: 8,
        caption: CaptionField::Txt,
        shuffle_buffer,
        train_num_samples: None,
    }
}

fn source(pattern: &str, shuffle_buffer: usize) -> WdsSource {
    WdsSource::open(config(pattern, shuffle_buffer)).unwrap()
}

fn pair(c: &Candidate) -> Pair {
    Pair { id: c.id.clone(), caption: c.caption.clone(), image: c.image.clone() }
}

/// The first `n` candidates of part `part` of `parts` from `from`, with their cursors.
fn take(src: &WdsSource, part: usize, parts: usize, from: StreamCursor, n: usize) -> Vec<(Pair, StreamCursor)> {
    src.candidates(SEED, part, parts, from).unwrap().take(n).map(|(c, k)| (pair(&c), k)).collect()
}

/// The candidates of epoch `epoch` of a part, read from the start.
fn epoch(src: &WdsSource, part: usize, parts: usize, epoch: u64) -> Vec<Pair> {
    let all = src.candidates(SEED, part, parts, StreamCursor::default()).unwrap();
    all.skip_while(|(c, _)| c.epoch < epoch).take_while(|(c, _)| c.epoch == epoch).map(|(c, _)| pair(&c)).collect()
}

fn ids(pairs: &[Pair]) -> Vec<String> {
    pairs.iter().map(|p| p.id.clone()).collect()
}

#[test]
fn caption_fields_parse() {
    assert_eq!("txt".parse::<CaptionField>(), Ok(CaptionField::Txt));
    assert_eq!("json:caption".parse::<CaptionField>(), Ok(CaptionField::Json("caption".into())));
    for bad in ["", "json", "json:", "TXT", "text", "csv:caption"] {
        assert!(bad.parse::<CaptionField>().unwrap_err().contains("json:FIELD"), "{bad}");
    }
}

#[test]
fn open_checks_every_shard_and_describes_the_source() {
    let (dir, _, _) = clean(&[2, 3, 1]);
    let pattern = format!("{}/{{00000..00004}}.tar", dir.0.display());
    let e = WdsSource::open(config(&pattern, 10)).unwrap_err().0;
    assert!(e.contains("2 of the 5 shards") && e.contains("00003.tar"), "{e}");
    std::fs::create_dir(dir.0.join("00003.tar")).unwrap();
    let e = WdsSource::open(config(&pattern, 10)).unwrap_err().0;
    assert!(e.contains("2 of the 5") && e.contains("00003.tar: not a regular file"), "{e}");
    let e = WdsSource::open(config(&format!("{}/{{0..2.tar", dir.0.display()), 10)).unwrap_err().0;
    assert!(e.contains("without its '}'"), "{e}");
    let e = WdsSource::open(WdsConfig { image_size: 0, ..config(&pattern, 1) }).unwrap_err().0;
    assert!(e.contains("image size 0"), "{e}");

    let pattern = format!("{}/{{00000..00002}}.tar", dir.0.display());
    let src = source(&pattern, 0);
    assert_eq!(src.shards().iter().map(|p| name(p)).collect::<Vec<_>>(), ["00000.tar", "00001.tar", "00002.tar"]);
    let d = src.describe();
    assert!(d.contains("3 shards") && d.contains("epoch length unknown (set --train-num-samples)"), "{d}");
    assert!(d.contains("shuffle buffer 1"), "{d}");
    let src = WdsSource::open(WdsConfig { train_num_samples: Some(6), ..config(&pattern, 4) }).unwrap();
    assert!(src.describe().contains("6 samples per epoch"), "{}", src.describe());
    assert_eq!((src.epoch_len(), src.pairs_at_most(), src.image_size()), (Some(6), None, 8));
}

#[test]
fn an_epoch_yields_every_pair_once_and_the_next_epoch_another_order() {
    let data = messy();
    for w in [1, 4, 1000] {
        let src = source(&data.pattern, w);
        let (e0, e1) = (epoch(&src, 0, 1, 0), epoch(&src, 0, 1, 1));
        let mut got = e0.clone();
        got.sort_by(|a, b| a.id.cmp(&b.id));
        let mut want = data.pairs.clone();
        want.sort_by(|a, b| a.id.cmp(&b.id));
        assert_eq!(got, want, "W = {w}");
        assert_eq!(e1.len(), e0.len());
        assert_ne!(ids(&e0), ids(&e1), "W = {w}: epochs 0 and 1 in the same order");
    }
    // Windows shuffle within themselves: with W = 1 consecutive pairs of a shard stay in file order.
    let src = source(&data.pattern, 1);
    let e0 = epoch(&src, 0, 1, 0);
    let first = e0.iter().position(|p| p.id.starts_with("00002.tar")).unwrap();
    assert_eq!(ids(&e0[first..first + 11]), ids(&data.pairs[13..24]));
}

#[test]
fn parts_split_the_shards() {
    let data = messy();
    let src = source(&data.pattern, 3);
    for e in 0..2 {
        let a: HashSet<String> = ids(&epoch(&src, 0, 2, e)).into_iter().collect();
        let b: HashSet<String> = ids(&epoch(&src, 1, 2, e)).into_iter().collect();
        assert!(a.is_disjoint(&b) && !a.is_empty() && !b.is_empty());
        let union: BTreeSet<String> = a.union(&b).cloned().collect();
        assert_eq!(union, ids(&data.pairs).into_iter().collect());
    }
    let e = src.candidates(SEED, 0, 6, StreamCursor::default()).err().unwrap().0;
    assert!(e.contains("5 shards for 6 parts"), "{e}");
    assert!(src.candidates(SEED, 2, 2, StreamCursor::default()).is_err());
}

#[test]
fn resuming_from_any_cursor_continues_the_stream_exactly() {
    let data = messy();
    for w in [1, 3, 4, 100] {
        let src = source(&data.pattern, w);
        for (part, parts) in [(0, 1), (1, 2)] {
            let mut all = Vec::new();
            for (c, k) in src.candidates(SEED, part, parts, StreamCursor::default()).unwrap() {
                all.push((pair(&c), k));
                if all.len() > 6 && all[all.len() - 7].1.epoch == 2 {
                    break;
                }
            }
            assert_eq!(take(&src, part, parts, StreamCursor::default(), 5), all[..5], "W {w}, part {part}");
            for i in 0..all.len() - 6 {
                let cursor = all[i].1;
                let next = take(&src, part, parts, cursor, 5);
                assert_eq!(next, all[i + 1..i + 6], "W {w}, part {part}/{parts}, resumed after #{i} at {cursor:?}");
            }
            // Cursor shapes: mid-window, window starts, epoch starts.
            for (i, (_, k)) in all.iter().enumerate().take(all.len() - 6) {
                assert!(k.taken < w as u64, "{k:?}");
                let (_, next) = &all[i + 1];
                if i > 0 && k.epoch != all[i - 1].1.epoch {
                    assert_eq!(*k, StreamCursor { epoch: all[i - 1].1.epoch + 1, ..StreamCursor::default() });
                }
                if k.taken == 0 && k.window == 0 {
                    assert_eq!(*k, StreamCursor { epoch: k.epoch, ..StreamCursor::default() });
                    assert_eq!(next.epoch, k.epoch, "the epoch starts after {k:?}");
                }
                if w == 1 {
                    assert_eq!(k.taken, 0);
                }
            }
        }
    }
}

#[test]
fn window_starts_are_the_headers_of_their_first_member() {
    let (_dir, pattern, _) = clean(&[3, 5, 2]);
    let src = source(&pattern, 2);
    let all = take(&src, 0, 1, StreamCursor::default(), 10);
    let shards = src.part_shards(SEED, 0, 1, 0);
    let mut starts = 0;
    for (i, (_, k)) in all.iter().enumerate().take(9) {
        if k.taken == 0 && k.epoch == 0 {
            // The window's candidates are in order with W = 2 only up to a shuffle: one of the next two
            // is the window's first, and its first member's header is at the offset.
            let bytes = std::fs::read(&shards[k.shard as usize]).unwrap();
            let header = &bytes[k.offset as usize..k.offset as usize + 100];
            let member = String::from_utf8_lossy(header).trim_end_matches('\0').to_string();
            let keys: Vec<&str> = all[i + 1..i + 3].iter().map(|(p, _)| p.id.split('/').nth(1).unwrap()).collect();
            assert!(keys.iter().any(|key| member == format!("{key}.jpg")), "{member} at {k:?}, {keys:?}");
            starts += 1;
        }
    }
    assert_eq!(starts, 4, "{all:?}");
}

#[test]
fn problems_are_counted_once_named_and_never_fatal() {
    let data = messy();
    for w in [1, 5, 100] {
        let src = source(&data.pattern, w);
        let n = data.pairs.len();
        let mut it = src.candidates(SEED, 0, 1, StreamCursor::default()).unwrap();
        let first: Vec<Candidate> = it.by_ref().take(n).map(|(c, _)| c).collect();
        let issues = src.issues();
        assert_eq!(
            (issues.unpaired_members, issues.bad_shards),
            (fixtures::MESSY_UNPAIRED, fixtures::MESSY_BAD_SHARDS)
        );
        assert_eq!((issues.undecodable_images, issues.missing_images, issues.bad_rows), (0, 0, 0));
        let has = |s: &str| issues.examples.iter().any(|e| e.contains(s));
        assert!(has("00000.tar/000000003: no caption (.txt)"), "{:?}", issues.examples);
        assert!(has("00001.tar/000100001: empty caption (.txt)"), "{:?}", issues.examples);
        assert!(has("00002.tar/000200040: no image"), "{:?}", issues.examples);
        let truncated = format!("00003.tar: truncated or unreadable after {} members", fixtures::MESSY_TRUNCATED_AFTER);
        assert!(has(&truncated), "{:?}", issues.examples);
        assert_eq!(issues.examples.len() as u64, issues.total());

        // Decoding: the corrupt image is emitted, then counted when it does not decode.
        let mut decoded = 0;
        for c in &first {
            match src.decode(SEED, c) {
                Some(ex) => {
                    assert!(matches!(ex.pixels, Pixels::Rgb8(_)), "decoded shards give bytes");
                    assert_eq!((ex.pixels.len(), &ex.caption, &ex.id), (3 * 8 * 8, &c.caption, &c.id));
                    assert_eq!(src.decode(SEED, c).unwrap().pixels, ex.pixels, "decoding is deterministic");
                    decoded += 2;
                }
                None => {
                    assert_eq!(c.id, data.corrupt);
                    decoded += 1;
                }
            }
        }
        assert_eq!(src.decoded(), decoded);
        let issues = src.issues();
        assert_eq!(issues.undecodable_images, 1);
        assert!(issues.examples.iter().any(|e| e.starts_with(&format!("{}: not a JPEG", data.corrupt))));

        // The next epoch meets the same problems again: each is counted once.
        let _ = it.by_ref().take(n).count();
        let issues = src.issues();
        assert_eq!(
            (issues.unpaired_members, issues.bad_shards),
            (fixtures::MESSY_UNPAIRED, fixtures::MESSY_BAD_SHARDS)
        );
    }
}

#[test]
fn a_resumed_stream_does_not_record_again_the_problems_before_its_cursor() {
    let data = messy();
    for w in [1, 2, 4, 7] {
        let full = {
            let src = source(&data.pattern, w);
            let _ = take(&src, 0, 1, StreamCursor::default(), data.pairs.len());
            src.issues()
        };
        let before = source(&data.pattern, w);
        let mut it = before.candidates(SEED, 0, 1, StreamCursor::default()).unwrap();
        for i in 0..data.pairs.len() {
            let (_, cursor) = it.next().unwrap();
            let seen = before.issues();
            let after = source(&data.pattern, w);
            if cursor.epoch == 0 {
                let rest = after.candidates(SEED, 0, 1, cursor).unwrap();
                let n = rest.take_while(|(_, k)| k.epoch == 0).count();
                assert_eq!(n, data.pairs.len() - i - 2, "W {w}, #{i}");
            }
            let resumed = after.issues();
            let counts = |d: &DataIssues| (d.unpaired_members, d.bad_shards, d.undecodable_images);
            assert_eq!(
                (seen.unpaired_members + resumed.unpaired_members, seen.bad_shards + resumed.bad_shards),
                (full.unpaired_members, full.bad_shards),
                "W {w}, resumed after #{i} at {cursor:?}: {:?} + {:?} vs {:?}",
                counts(&seen),
                counts(&resumed),
                counts(&full)
            );
            let mut both: Vec<String> = seen.examples.iter().chain(&resumed.examples).map(|e| unplaced(e)).collect();
            let mut want: Vec<String> = full.examples.iter().map(|e| unplaced(e)).collect();
            both.sort();
            want.sort();
            assert_eq!(both, want, "W {w}, #{i}");
        }
    }
}

/// A reason without where in its shard it was met: a stream resumed mid-shard counts the members from
/// its offset (`after 2 members from byte 10752`), the uninterrupted one from the shard's start.
fn unplaced(reason: &str) -> String {
    match (reason.find(" after "), reason.find(" members")) {
        (Some(a), Some(m)) if a < m => {
            let rest = &reason[m..];
            format!("{}{}", &reason[..a], &rest[rest.find(':').unwrap_or(rest.len())..])
        }
        _ => reason.to_owned(),
    }
}

#[test]
fn json_captions_webp_and_png_images() {
    let dir = TempDir::new("json");
    let mut t = Tar::new();
    let webp = fixtures::image(image::ImageFormat::WebP, 1);
    let png = fixtures::image(image::ImageFormat::Png, 2);
    t.file("a/000000000.webp", &webp).file("a/000000000.json", br#"{"caption": " a webp ", "url": "x"}"#);
    t.file("a/000000000.txt", b"the txt caption is not used");
    t.file("a/000000001.PNG", &png).file("a/000000001.json", br#"{"text": "no caption field"}"#);
    t.file("a/000000002.png", &png).file("a/000000002.json", br#"{"caption": 7}"#);
    t.file("a/000000003.png", &png).file("a/000000003.json", b"{not json");
    t.file("a/000000004.png", &png).file("a/000000004.txt", b"txt only");
    t.file("a/000000005.png", &png).file("a/000000005.json", br#"{"caption": "a png"}"#);
    std::fs::write(dir.0.join("s.tar"), t.finish()).unwrap();
    let pattern = format!("{}/s.tar", dir.0.display());
    let src = WdsSource::open(WdsConfig { caption: "json:caption".parse().unwrap(), ..config(&pattern, 1) }).unwrap();
    let got: Vec<Candidate> =
        src.candidates(SEED, 0, 1, StreamCursor::default()).unwrap().take(2).map(|c| c.0).collect();
    assert_eq!(pair(&got[0]), Pair { id: "s.tar/a/000000000".into(), caption: "a webp".into(), image: webp });
    assert_eq!(pair(&got[1]), Pair { id: "s.tar/a/000000005".into(), caption: "a png".into(), image: png.clone() });
    for c in &got {
        assert!(src.decode(SEED, c).is_some(), "{}", c.id);
    }
    let issues = src.issues();
    assert_eq!((issues.unpaired_members, issues.undecodable_images), (4, 0), "{:?}", issues.examples);
    for (key, why) in [
        ("000000001", "no caption (.json has no string field \"caption\")"),
        ("000000002", "no caption (.json has no string field"),
        ("000000003", "caption (.json) is not valid JSON"),
        ("000000004", "no caption (.json)"),
    ] {
        let want = format!("s.tar/a/{key}: {why}");
        assert!(issues.examples.iter().any(|e| e.starts_with(&want)), "{want}: {:?}", issues.examples);
    }
}

#[test]
fn oversized_members_are_skipped_unread_and_vanished_shards_are_bad() {
    let dir = TempDir::new("big");
    let mut b = tar::Builder::new(std::fs::File::create(dir.0.join("00000.tar")).unwrap());
    let big = crate::data::decode::MAX_FILE_BYTES + 1;
    let mut append = |name: &str, size: u64, data: &mut dyn std::io::Read| {
        let mut h = tar::Header::new_gnu();
        h.set_size(size);
        h.set_mode(0o644);
        b.append_data(&mut h, name, data).unwrap();
    };
    append("000000000.jpg", big, &mut std::io::Read::take(std::io::repeat(0), big));
    append("000000000.txt", 7, &mut &b"too big"[..]);
    let png = fixtures::image(image::ImageFormat::Png, 3);
    append("000000001.png", png.len() as u64, &mut &png[..]);
    append("000000001.txt", 2, &mut &b"ok"[..]);
    b.finish().unwrap();
    drop(b);
    let (clean_dir, _, clean_pairs) = clean(&[2]);
    std::fs::copy(clean_dir.0.join("00000.tar"), dir.0.join("00001.tar")).unwrap();
    std::fs::copy(clean_dir.0.join("00000.tar"), dir.0.join("00002.tar")).unwrap();
    let src = source(&format!("{}/{{00000..00002}}.tar", dir.0.display()), 10);
    std::fs::remove_file(dir.0.join("00002.tar")).unwrap();
    // Exactly one epoch (3 pairs), without reading the next.
    let mut got: Vec<String> = take(&src, 0, 1, StreamCursor::default(), 3).into_iter().map(|(p, _)| p.id).collect();
    got.sort();
    let mut want = vec!["00000.tar/000000001".to_owned()];
    want.extend(clean_pairs.iter().map(|p| p.id.replace("00000.tar", "00001.tar")));
    want.sort();
    assert_eq!(got, want);
    let issues = src.issues();
    assert_eq!((issues.undecodable_images, issues.unpaired_members, issues.bad_shards), (1, 0, 1), "{issues:?}");
    assert!(issues.examples.iter().any(|e| e.starts_with("00000.tar/000000000: .jpg member of 67108865 bytes")));
    assert!(issues.examples.iter().any(|e| e.contains("00002.tar: cannot be opened")));
}

#[test]
fn the_end_of_an_epoch_is_known_past_trailing_unpaired_members() {
    let dir = TempDir::new("trailing");
    let mut t = Tar::new();
    let img = fixtures::image(image::ImageFormat::Jpeg, 5);
    t.pair("a", "jpg", &img, "first").file("b.txt", b"no image").pair("c", "jpg", &img, "second");
    t.file("d.jpg", &img);
    std::fs::write(dir.0.join("s.tar"), t.finish()).unwrap();
    let pattern = format!("{}/s.tar", dir.0.display());
    for w in [1, 2, 3] {
        let src = source(&pattern, w);
        let got = take(&src, 0, 1, StreamCursor::default(), 2);
        assert_eq!(got[1].1, StreamCursor { epoch: 1, ..StreamCursor::default() }, "W {w}");
        let issues = src.issues();
        assert_eq!(issues.unpaired_members, 2, "W {w}: {:?}", issues.examples);
        assert!(issues.examples.iter().any(|e| e == "s.tar/d: no caption (.txt)"), "{:?}", issues.examples);
        let first = got[0].1;
        let (resumed, fresh) = (source(&pattern, w), take(&src, 0, 1, first, 1));
        assert_eq!(fresh, got[1..2]);
        assert_eq!(take(&resumed, 0, 1, first, 1), got[1..2]);
        let recorded = resumed.issues().unpaired_members;
        if w == 1 {
            // The second window starts at `b.txt`, the member after `a`'s group; nobody had read it.
            assert_eq!((first.window, first.taken, recorded), (1, 0, 2));
            let bytes = std::fs::read(dir.0.join("s.tar")).unwrap();
            assert!(bytes[first.offset as usize..].starts_with(b"b.txt\0"), "{first:?}");
        } else {
            assert_eq!((first.window, first.taken, recorded), (0, 1, 0), "W {w}: the window was read before");
        }
    }
}

#[test]
fn a_part_without_any_pair_ends_its_stream() {
    let dir = TempDir::new("empty");
    let mut t = Tar::new();
    t.file("000000000.txt", b"no image here").file("000000001.txt", b"nor here");
    std::fs::write(dir.0.join("00000.tar"), t.finish()).unwrap();
    let src = source(&format!("{}/00000.tar", dir.0.display()), 4);
    assert_eq!(src.candidates(SEED, 0, 1, StreamCursor::default()).unwrap().count(), 0);
    assert_eq!(src.issues().unpaired_members, 2);
}

#[test]
fn eval_sets_take_the_first_readable_pairs_in_file_order() {
    let data = messy();
    let src = source(&data.pattern, 7);
    let set = src.eval_set(5, "wds-eval");
    let want: Vec<&Pair> = data.pairs.iter().filter(|p| p.id != data.corrupt).take(5).collect();
    assert_eq!(set.captions, want.iter().map(|p| p.caption.clone()).collect::<Vec<_>>());
    assert_eq!((set.name.as_str(), set.size, set.len(), set.pixels.len()), ("wds-eval", 8, 5, 5 * 3 * 8 * 8));
    assert!(set.tasks.is_empty());
    assert_eq!((set.skipped.undecodable_images, set.skipped.unpaired_members), (1, 1), "{:?}", set.skipped);
    let expected = {
        let img = crate::data::decode::decode_rgb8(&want[0].image).unwrap();
        transform::normalize_rgb8(&transform::eval_rgb8(&img, 8), 8)
    };
    assert_eq!(set.pixels_of(0, 1), &expected[..]);
    let all = src.eval_set(1000, "all");
    assert_eq!(all.len(), data.pairs.len() - 1);
    assert_eq!((all.skipped.unpaired_members, all.skipped.bad_shards), (fixtures::MESSY_UNPAIRED, 1));
    assert_eq!(src.issues(), DataIssues::default(), "evaluation sets keep their own issues");
    assert_eq!(src.eval_set(0, "none").len(), 0);
}
