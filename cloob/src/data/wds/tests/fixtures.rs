//! Shards written for the tests, in img2dataset's layout (`00000.tar` holding `000000000.jpg`,
//! `000000000.json`, `000000000.txt`, …), with the pairs a reader must find in them.

use image::{ImageFormat, RgbImage};
use std::io::Cursor;
use std::path::{Path, PathBuf};

/// A directory removed with its content when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        static COUNT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = COUNT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("cloob-wds-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A small image (20×16) whose colours depend on `seed`, encoded as `format`.
pub fn image(format: ImageFormat, seed: u32) -> Vec<u8> {
    let img = RgbImage::from_fn(20, 16, |x, y| {
        image::Rgb([(seed * 37 + x * 11) as u8, (seed * 91 + y * 13) as u8, (seed * 53 + x * y) as u8])
    });
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, format).unwrap();
    out.into_inner()
}

/// A tar being written in memory.
pub struct Tar(tar::Builder<Vec<u8>>);

impl Tar {
    pub fn new() -> Self {
        Tar(tar::Builder::new(Vec::new()))
    }
    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.0.get_ref().len()
    }
    /// A regular member (a GNU long-name header first when the name needs it).
    pub fn file(&mut self, name: &str, data: &[u8]) -> &mut Self {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        self.0.append_data(&mut h, name, data).unwrap();
        self
    }
    /// A directory member.
    pub fn dir(&mut self, name: &str) -> &mut Self {
        let mut h = tar::Header::new_gnu();
        h.set_size(0);
        h.set_mode(0o755);
        h.set_entry_type(tar::EntryType::Directory);
        self.0.append_data(&mut h, name, std::io::empty()).unwrap();
        self
    }
    /// A pair as img2dataset writes it: image, json, txt.
    pub fn pair(&mut self, key: &str, ext: &str, image: &[u8], caption: &str) -> &mut Self {
        self.file(&format!("{key}.{ext}"), image);
        self.file(&format!("{key}.json"), format!("{{\"caption\": {caption:?}, \"key\": {key:?}}}").as_bytes());
        self.file(&format!("{key}.txt"), caption.as_bytes())
    }
    /// The finished archive.
    pub fn finish(self) -> Vec<u8> {
        self.0.into_inner().unwrap()
    }
}

/// A pair a reader must find: id, caption, encoded image.
#[derive(Clone, Debug, PartialEq)]
pub struct Pair {
    pub id: String,
    pub caption: String,
    pub image: Vec<u8>,
}

/// Shards with every kind of problem, and the candidates they hold.
pub struct Messy {
    pub _dir: TempDir,
    pub pattern: String,
    /// Every candidate, in shard-file order (the corrupt image included).
    pub pairs: Vec<Pair>,
    /// The id of the candidate whose image is not an image.
    pub corrupt: String,
}

/// Problems per epoch of [`messy`]: unpaired groups, bad shards.
pub const MESSY_UNPAIRED: u64 = 3;
pub const MESSY_BAD_SHARDS: u64 = 1;
/// Members of `00003.tar` read before the one it ends in.
pub const MESSY_TRUNCATED_AFTER: u64 = 9;

/// Five shards of uneven sizes (11, 2, 11, 3 and 2 candidates) with: a directory member, an image
/// without caption, a caption without image, an empty caption, a group of an unknown kind only, a hidden
/// file, a key long enough for a GNU long-name header, a corrupt image, PNG and WebP images, a sample
/// with both a JPEG and a PNG (the JPEG is used), and a shard cut inside a member.
pub fn messy() -> Messy {
    let dir = TempDir::new("messy");
    let mut pairs = Vec::new();
    let mut seed = 0u32;
    let mut add = |tar: &mut Tar, shard: usize, key: &str, format: ImageFormat, pairs: &mut Vec<Pair>| {
        seed += 1;
        let (ext, img) = (format.extensions_str()[0], image(format, seed));
        let caption = format!("a photo of sample {seed} ({key})");
        tar.pair(key, ext, &img, &caption);
        pairs.push(Pair { id: format!("{shard:05}.tar/{key}"), caption, image: img });
    };
    let key = |shard: usize, i: usize| format!("{shard:04}{i:05}");
    let write = |name: &str, bytes: &[u8]| std::fs::write(dir.0.join(name), bytes).unwrap();

    let mut t = Tar::new();
    t.dir("extra/");
    add(&mut t, 0, &key(0, 0), ImageFormat::Jpeg, &mut pairs);
    add(&mut t, 0, &key(0, 1), ImageFormat::Jpeg, &mut pairs);
    let corrupt = key(0, 2);
    t.file(&format!("{corrupt}.jpg"), b"these bytes are not an image").file(&format!("{corrupt}.txt"), b"broken");
    pairs.push(Pair {
        id: format!("00000.tar/{corrupt}"),
        caption: "broken".into(),
        image: b"these bytes are not an image".to_vec(),
    });
    t.file(&format!("{}.jpg", key(0, 3)), &image(ImageFormat::Jpeg, 999)).file(&format!("{}.json", key(0, 3)), b"{}");
    add(&mut t, 0, &key(0, 4), ImageFormat::Png, &mut pairs);
    add(&mut t, 0, &format!("deep/{}", "x".repeat(120)), ImageFormat::Jpeg, &mut pairs);
    add(&mut t, 0, &key(0, 5), ImageFormat::Jpeg, &mut pairs);
    t.file(&format!("{}.cls", key(0, 6)), b"3");
    add(&mut t, 0, &key(0, 7), ImageFormat::WebP, &mut pairs);
    for i in 8..12 {
        add(&mut t, 0, &key(0, i), ImageFormat::Jpeg, &mut pairs);
    }
    write("00000.tar", &t.finish());

    let mut t = Tar::new();
    add(&mut t, 1, &key(1, 0), ImageFormat::Jpeg, &mut pairs);
    t.file(&format!("{}.jpg", key(1, 1)), &image(ImageFormat::Jpeg, 998)).file(&format!("{}.txt", key(1, 1)), b" \n ");
    add(&mut t, 1, &key(1, 2), ImageFormat::Png, &mut pairs);
    write("00001.tar", &t.finish());

    let mut t = Tar::new();
    for i in 0..11 {
        if i == 4 {
            t.file(&format!("{}.txt", key(2, 40)), b"a caption without its image");
        }
        if i == 6 {
            t.file(&format!("._{}.jpg", key(2, 6)), b"resource fork");
        }
        if i == 8 {
            // Both a PNG and a JPEG: the JPEG is the image.
            t.file(&format!("{}.png", key(2, 8)), &image(ImageFormat::Png, 997));
        }
        add(&mut t, 2, &key(2, i), ImageFormat::Jpeg, &mut pairs);
    }
    write("00002.tar", &t.finish());

    let mut t = Tar::new();
    for i in 0..3 {
        add(&mut t, 3, &key(3, i), ImageFormat::Jpeg, &mut pairs);
    }
    let cut = t.len() + 512 + 40;
    t.pair(&key(3, 3), "jpg", &image(ImageFormat::Jpeg, 996), "lost").pair(&key(3, 4), "jpg", &[1; 10], "lost");
    write("00003.tar", &t.finish()[..cut]);

    let mut t = Tar::new();
    add(&mut t, 4, &key(4, 0), ImageFormat::Jpeg, &mut pairs);
    add(&mut t, 4, &key(4, 1), ImageFormat::WebP, &mut pairs);
    write("00004.tar", &t.finish());

    let pattern = format!("{}/{{00000..00004}}.tar", dir.0.display());
    Messy { _dir: dir, pattern, pairs, corrupt: format!("00000.tar/{corrupt}") }
}

/// `n` clean shards of `sizes[i]` pairs each (JPEG), and their pairs in shard-file order.
pub fn clean(sizes: &[usize]) -> (TempDir, String, Vec<Pair>) {
    let dir = TempDir::new("clean");
    let mut pairs = Vec::new();
    for (s, &n) in sizes.iter().enumerate() {
        let mut t = Tar::new();
        for i in 0..n {
            let (key, seed) = (format!("{s:04}{i:05}"), (s * 100 + i) as u32);
            let (img, caption) = (image(ImageFormat::Jpeg, seed), format!("clean sample {s} {i}"));
            t.pair(&key, "jpg", &img, &caption);
            pairs.push(Pair { id: format!("{s:05}.tar/{key}"), caption, image: img });
        }
        std::fs::write(dir.0.join(format!("{s:05}.tar")), t.finish()).unwrap();
    }
    let pattern = format!("{}/{{00000..{:05}}}.tar", dir.0.display(), sizes.len() - 1);
    (dir, pattern, pairs)
}

/// The file name of a path.
pub fn name(path: &Path) -> String {
    path.file_name().unwrap().to_string_lossy().into_owned()
}
