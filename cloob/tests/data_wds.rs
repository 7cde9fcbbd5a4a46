//! WebDataset shards as img2dataset writes them, through `cloob-pretrain` as a user runs it: training,
//! resuming in a later epoch (the uninterrupted run's losses bit for bit), skipped members reported, and
//! the same pairs as a CSV of the same data in every epoch. Shards are written by the test with the `tar`
//! crate in img2dataset's layout (`00000.tar` holding `000000000.jpg`, `.txt`, `.json`, …).

use cloob::data::csv::{CsvConfig, CsvSource};
use cloob::data::wds::{CaptionField, WdsConfig, WdsSource};
use cloob::data::{epoch_examples, StreamCursor, StreamedSource};
use image::{Rgb, RgbImage};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("cloob-wds-{name}-{}", std::process::id()));
    std::fs::remove_dir_all(&d).ok();
    std::fs::create_dir_all(d.join("images")).unwrap();
    std::fs::create_dir_all(d.join("shards")).unwrap();
    d
}

fn jpeg(i: usize) -> Vec<u8> {
    let img = RgbImage::from_fn(36 + (i as u32 % 7) * 3, 32, |x, y| {
        Rgb([(x * 6 + i as u32 * 13) as u8, (y * 7) as u8, [30, 220, 120, 180][i % 4]])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Jpeg).unwrap();
    out.into_inner()
}

fn caption(i: usize) -> String {
    format!("{} object number {i}", ["a red", "a green", "a blue", "a grey"][i % 4])
}

fn append(b: &mut tar::Builder<std::fs::File>, name: &str, bytes: &[u8]) {
    let mut h = tar::Header::new_gnu();
    h.set_size(bytes.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    b.append_data(&mut h, name, bytes).unwrap();
}

/// `n` pairs in shards of `per` samples (img2dataset's names and member order), the same pairs as JPEG
/// files and an open_clip CSV; `broken` adds to shard 0 an image without caption, a caption without image
/// and a sample whose "JPEG" is text.
fn corpus(dir: &Path, n: usize, per: usize, broken: bool) -> (String, PathBuf) {
    let mut csv = String::from("filepath\ttitle\n");
    let shards = n.div_ceil(per);
    for s in 0..shards {
        let mut b = tar::Builder::new(std::fs::File::create(dir.join(format!("shards/{s:05}.tar"))).unwrap());
        for i in s * per..((s + 1) * per).min(n) {
            let key = format!("{i:09}");
            let img = jpeg(i);
            append(&mut b, &format!("{key}.jpg"), &img);
            append(&mut b, &format!("{key}.txt"), caption(i).as_bytes());
            append(
                &mut b,
                &format!("{key}.json"),
                format!("{{\"key\": \"{key}\", \"caption\": \"{}\"}}", caption(i)).as_bytes(),
            );
            std::fs::write(dir.join(format!("images/{key}.jpg")), &img).unwrap();
            csv += &format!("images/{key}.jpg\t{}\n", caption(i));
        }
        if broken && s == 0 {
            append(&mut b, "900000001.jpg", &jpeg(1));
            append(&mut b, "900000002.txt", b"a caption without its image");
            append(&mut b, "900000003.jpg", b"this is not a jpeg");
            append(&mut b, "900000003.txt", b"a broken image");
        }
        b.finish().unwrap();
    }
    std::fs::write(dir.join("train.csv"), csv).unwrap();
    (format!("{}/shards/{{00000..{:05}}}.tar", dir.display(), shards - 1), dir.join("train.csv"))
}

fn pretrain(cwd: &Path, args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_cloob-pretrain"))
        .current_dir(cwd)
        .args(["--batch-size", "4", "--eval-size", "2", "--save-frequency", "0", "--zeroshot-frequency", "0"])
        .args(["--quiet", "--logs", "logs", "--shuffle-buffer", "5"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{:?}\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn losses(dir: &Path, name: &str) -> Vec<u64> {
    std::fs::read_to_string(dir.join("logs").join(name).join("metrics.jsonl"))
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()?["loss"].as_f64())
        .map(f64::to_bits)
        .collect()
}

#[test]
fn cloob_pretrain_trains_on_shards_resumes_in_a_later_epoch_and_reports_skipped_members() {
    let d = scratch("run");
    let (pattern, _) = corpus(&d, 14, 5, true);
    let data = format!("wds:{pattern}");
    // 14 good pairs and a corrupt one, batch 4: the 8 steps before the cut use 32 pairs, and pass the
    // corrupt sample twice: candidates 0..34, the last in epoch 2.
    let args = ["--data", &data, "--steps", "10", "--train-num-samples", "14"];
    let full = pretrain(&d, &[&args[..], &["--name", "full", "--workers", "2"]].concat());
    let out = String::from_utf8_lossy(&full.stdout);
    assert!(out.contains("2 unpaired members") && out.contains("1 undecodable images"), "{out}");
    assert!(out.contains("10 steps"), "{out}");
    pretrain(&d, &[&args[..], &["--name", "cut", "--stop-after", "8"]].concat());
    let ckpt: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("logs/cut/checkpoints/step_0000008.json")).unwrap())
            .unwrap();
    assert_eq!(ckpt["epoch"], 2, "the cut is in a later epoch");
    assert_eq!(ckpt["data_cursors"].as_array().unwrap().len(), 1, "{ckpt}");
    pretrain(&d, &[&args[..], &["--name", "cut", "--resume", "latest", "--workers", "1"]].concat());
    assert_eq!(losses(&d, "cut"), losses(&d, "full"));
    // --epochs on shards takes its length from --train-num-samples: 2 epochs of 14 at batch 4 = 7 steps.
    let e = pretrain(&d, &["--data", &data, "--epochs", "2", "--train-num-samples", "14", "--name", "ep"]);
    assert!(String::from_utf8_lossy(&e.stdout).contains("7 steps"), "{}", String::from_utf8_lossy(&e.stdout));
    std::fs::remove_dir_all(&d).ok();
}

#[test]
fn shards_and_a_csv_of_the_same_pairs_give_the_same_pairs_every_epoch() {
    let d = scratch("same");
    let (pattern, csv) = corpus(&d, 23, 6, false);
    let csv = CsvSource::open(CsvConfig::new(csv, 16)).unwrap();
    let wds = WdsSource::open(WdsConfig {
        pattern,
        image_size: 16,
        caption: CaptionField::Txt,
        shuffle_buffer: 4,
        train_num_samples: Some(23),
    })
    .unwrap();
    // (key, caption) → the image's bytes.
    let key = |id: &str| id.rsplit('/').next().unwrap().trim_end_matches(".jpg").to_string();
    let mut stream = wds.candidates(9, 0, 1, StreamCursor::default()).unwrap();
    for epoch in 0..2 {
        let from_csv: BTreeMap<(String, String), Vec<u8>> = epoch_examples(&csv, 9, epoch)
            .into_iter()
            .map(|e| {
                let bytes = std::fs::read(d.join(&e.id)).unwrap();
                ((key(&e.id), e.caption), bytes)
            })
            .collect();
        let from_wds: BTreeMap<(String, String), Vec<u8>> = stream
            .by_ref()
            .take(23)
            .map(|(c, _)| {
                assert_eq!(c.epoch, epoch);
                ((key(&c.id), c.caption), c.image)
            })
            .collect();
        assert_eq!(from_csv.len(), 23, "each pair once");
        assert_eq!(from_csv, from_wds, "epoch {epoch}");
    }
    std::fs::remove_dir_all(&d).ok();
}
