//! The Oxford 17 Category Flower Dataset (Nilsback & Zisserman 2006): 1,360 photographs, 80 in
//! each of 17 classes, JPEG, the shorter side about 500 pixels.
//!
//! Two layouts are read:
//! - class folders `00` .. `16`, each holding that class's jpgs, with an optional `classes.txt`
//!   (`00 daffodil` a line), as in `../shared/data/oxflower17`;
//! - the official archive's flat layout: `jpg/image_0001.jpg` .. `image_1360.jpg` (or the jpgs
//!   directly in the folder), where the class of `image_N` is `(N - 1) / 80`.
//!
//! The images are decoded with the `image` crate (decode limits set), converted to RGB and
//! resized to the model's square input with a Catmull-Rom filter whose support widens with the
//! scale (so downscaling is antialiased). The seed squashes each photo to 224x224 without
//! keeping its aspect ratio; so does this loader. The decoded, resized set is cached in one
//! file keyed by the sources' SHA-256 and the size (see [`cache_dir`]), so a second run skips
//! decoding.
//!
//! **Split** ([`split`]): stratified and seeded. For each class, its images (in file order) are
//! shuffled by [`SplitMix64`] seeded with `seed ^ class`; the first go to the test set, the next
//! to the validation set, the rest to training. The default split uses [`SPLIT_SEED`] = 17. Per-class counts are the totals' proportional
//! shares, rounded down, with the remainders given to classes in a seeded order. The default is
//! the seed's protocol: 1,360 = 1,000 train + 360 test (21 or 22 per class), no validation set.

use std::io::Read;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use super::{DataError, ImageSet, download};
use crate::rng::SplitMix64;

/// Classes.
pub const CLASSES: usize = 17;
/// Images per class in the release.
pub const PER_CLASS: usize = 80;
/// Images in the release.
pub const IMAGES: usize = CLASSES * PER_CLASS;
/// Test images of the seed's protocol.
pub const DEFAULT_TEST: usize = 360;
/// The seed of the default split (documented so that anyone can rebuild it).
pub const SPLIT_SEED: u64 = 17;
/// Default side of the square input (the seed's, AlexNet's and VGG's 224).
pub const DEFAULT_SIZE: usize = 224;
/// The official archive.
pub const ARCHIVE: &str = "17flowers.tgz";
/// Where it is published.
pub const MIRRORS: &[&str] = &["https://www.robots.ox.ac.uk/~vgg/data/flowers/17/"];
/// Class names in label order (the dataset page's order of the 80-image runs).
pub const CLASS_NAMES: [&str; CLASSES] = [
    "daffodil",
    "snowdrop",
    "lily_valley",
    "bluebell",
    "crocus",
    "iris",
    "tigerlily",
    "tulip",
    "fritillary",
    "sunflower",
    "daisy",
    "colts_foot",
    "dandelion",
    "cowslip",
    "buttercup",
    "windflower",
    "pansy",
];

/// SHA-256 of `image_0001.jpg` .. `image_1360.jpg` of the official release, one a line.
const SHA256: &str = include_str!("oxflower17.sha256");

/// The published SHA-256 of `image_<n>.jpg` (1-based).
pub fn expected_sha256(n: usize) -> Option<&'static str> {
    n.checked_sub(1).and_then(|i| SHA256.lines().nth(i))
}

/// The largest picture the decoder accepts (each side) and the most memory one decode may take.
const MAX_SIDE: u32 = 16_384;
const MAX_DECODE_BYTES: u64 = 512 << 20;

/// One source image: where it is and its label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// The file.
    pub path: PathBuf,
    /// Its class.
    pub label: u8,
}

/// `image_0421.jpg` -> 421.
fn image_number(name: &str) -> Option<usize> {
    let n = name.strip_prefix("image_")?.strip_suffix(".jpg")?;
    (n.len() == 4 && n.bytes().all(|b| b.is_ascii_digit()))
        .then(|| n.parse().ok())
        .flatten()
}

/// The flat folder of the official layout inside `dir`, if any: `dir/jpg` or `dir` itself.
fn flat_dir(dir: &Path) -> Option<PathBuf> {
    [dir.join("jpg"), dir.to_path_buf()]
        .into_iter()
        .find(|d| d.join("image_0001.jpg").is_file())
}

/// Whether `dir` holds the flowers in either layout.
pub fn present(dir: &Path) -> bool {
    dir.join("00").is_dir() || flat_dir(dir).is_some()
}

/// Lists the images of the copy in `dir` with their labels, checking the layout: every class
/// folder present and non-empty (class-folder layout), or all 1,360 numbered files (flat).
pub fn sources(dir: &Path) -> Result<Vec<Source>, DataError> {
    if dir.join("00").is_dir() {
        let mut out = Vec::new();
        for c in 0..CLASSES {
            let folder = dir.join(format!("{c:02}"));
            if !folder.is_dir() {
                return Err(DataError::bad(
                    &folder,
                    format!(
                        "class folder missing (the class-folder layout needs 00 .. {:02})",
                        CLASSES - 1
                    ),
                ));
            }
            let mut files: Vec<PathBuf> = std::fs::read_dir(&folder)
                .map_err(|e| DataError::io(&folder, e))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.extension().and_then(|x| x.to_str()).is_some_and(|x| {
                        x.eq_ignore_ascii_case("jpg") || x.eq_ignore_ascii_case("jpeg")
                    })
                })
                .collect();
            if files.is_empty() {
                return Err(DataError::bad(&folder, "class folder holds no .jpg file"));
            }
            files.sort();
            out.extend(files.into_iter().map(|path| Source {
                path,
                label: c as u8,
            }));
        }
        return Ok(out);
    }
    let flat = flat_dir(dir).ok_or_else(|| {
        DataError::Missing(format!(
            "{}: no Oxford-17 flowers (class folders 00..16, or jpg/image_0001.jpg ..)",
            dir.display()
        ))
    })?;
    (1..=IMAGES)
        .map(|n| {
            let path = flat.join(format!("image_{n:04}.jpg"));
            if path.is_file() {
                Ok(Source {
                    path,
                    label: ((n - 1) / PER_CLASS) as u8,
                })
            } else {
                Err(DataError::bad(
                    &path,
                    format!("missing: the flat layout needs image_0001.jpg .. image_{IMAGES}.jpg"),
                ))
            }
        })
        .collect()
}

/// Reads `classes.txt` if present (`NN name` a line), else the official names.
pub fn class_names(dir: &Path) -> Result<Vec<String>, DataError> {
    let path = dir.join("classes.txt");
    if !path.is_file() {
        return Ok(CLASS_NAMES.iter().map(|s| s.to_string()).collect());
    }
    let text = std::fs::read_to_string(&path).map_err(|e| DataError::io(&path, e))?;
    let mut names = vec![String::new(); CLASSES];
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let mut parts = line.split_whitespace();
        let (Some(id), Some(name), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(DataError::bad(
                &path,
                format!("line {}: expected `NN name`, got {line:?}", i + 1),
            ));
        };
        match id.parse::<usize>() {
            Ok(c) if c < CLASSES => names[c] = name.to_string(),
            _ => {
                return Err(DataError::bad(
                    &path,
                    format!("line {}: {id:?} is not a class 00-16", i + 1),
                ));
            }
        }
    }
    if let Some(c) = names.iter().position(String::is_empty) {
        return Err(DataError::bad(&path, format!("no name for class {c:02}")));
    }
    Ok(names)
}

/// Decodes one JPEG (held in memory) to RGB and resizes it to `size` x `size`: CHW `u8`.
pub fn decode_resize(path: &Path, bytes: &[u8], size: usize) -> Result<Vec<u8>, DataError> {
    decode_resize_within(path, bytes, size, MAX_SIDE, MAX_DECODE_BYTES)
}

/// [`decode_resize`] with other decode limits (the fuzz target's smaller ones: the same code,
/// without spending seconds on each mutated header that declares a huge picture).
pub fn decode_resize_within(
    path: &Path,
    bytes: &[u8],
    size: usize,
    max_side: u32,
    max_bytes: u64,
) -> Result<Vec<u8>, DataError> {
    if !bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        let what = if bytes.is_empty() {
            "empty file".to_string()
        } else {
            format!(
                "not a JPEG (starts with {:02x?})",
                &bytes[..bytes.len().min(4)]
            )
        };
        return Err(DataError::bad(path, what));
    }
    let mut reader =
        image::ImageReader::with_format(std::io::Cursor::new(bytes), image::ImageFormat::Jpeg);
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(max_side);
    limits.max_image_height = Some(max_side);
    limits.max_alloc = Some(max_bytes);
    reader.limits(limits);
    let img = reader
        .decode()
        .map_err(|e| DataError::bad(path, format!("cannot decode the JPEG: {e}")))?
        .to_rgb8();
    let s = size as u32;
    let resized = image::imageops::resize(&img, s, s, image::imageops::FilterType::CatmullRom);
    // HWC -> CHW
    let plane = size * size;
    let mut chw = vec![0u8; 3 * plane];
    for (i, px) in resized.pixels().enumerate() {
        chw[i] = px[0];
        chw[plane + i] = px[1];
        chw[2 * plane + i] = px[2];
    }
    Ok(chw)
}

/// Where decoded sets are cached: `$HOST_TRAIN_CACHE_DIR`, else `$XDG_CACHE_HOME/host-train`,
/// else `~/.cache/host-train`, else `./data/.cache`.
pub fn cache_dir() -> PathBuf {
    let var = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    var(CACHE_ENV)
        .or_else(|| var("XDG_CACHE_HOME").map(|d| d.join("host-train")))
        .or_else(|| var("HOME").map(|d| d.join(".cache").join("host-train")))
        .unwrap_or_else(|| PathBuf::from("data").join(".cache"))
}

/// The environment variable naming the cache folder.
pub const CACHE_ENV: &str = "HOST_TRAIN_CACHE_DIR";

const CACHE_MAGIC: &[u8; 8] = b"HTFLWR01";

/// The whole set, decoded and resized, in file order (not split).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    /// All images, CHW each, `3 * size * size` bytes each.
    pub set: ImageSet,
    /// Whether it came from the cache.
    pub cached: bool,
    /// The cache file.
    pub cache_file: PathBuf,
}

/// SHA-256 over the sources' names (relative to `dir`), labels and content hashes, and the
/// size: the cache key.
fn cache_key(dir: &Path, sources: &[Source], hashes: &[String], size: usize) -> String {
    let mut manifest = format!("oxflower17 v1 size {size} catmull-rom squash\n");
    for (s, h) in sources.iter().zip(hashes) {
        let rel = s.path.strip_prefix(dir).unwrap_or(&s.path);
        manifest.push_str(&format!("{} {} {h}\n", s.label, rel.display()));
    }
    download::sha256_hex(manifest.as_bytes())
}

/// Decodes every image of the copy in `dir` at `size` x `size`, or reads the cached result from
/// `cache` (a folder; `None`: [`cache_dir`]). A cache that is missing, stale or corrupt is
/// rebuilt; failing to write it is a warning, not an error.
pub fn decode_all(dir: &Path, size: usize, cache: Option<&Path>) -> Result<Decoded, DataError> {
    if !(8..=1024).contains(&size) {
        return Err(DataError::Missing(format!(
            "image size {size} is out of range (8 .. 1024)"
        )));
    }
    let sources = sources(dir)?;
    let bytes: Vec<Vec<u8>> = sources
        .par_iter()
        .map(|s| std::fs::read(&s.path).map_err(|e| DataError::io(&s.path, e)))
        .collect::<Result<_, _>>()?;
    let hashes: Vec<String> = bytes.par_iter().map(|b| download::sha256_hex(b)).collect();
    let key = cache_key(dir, &sources, &hashes, size);
    let cache_root = cache.map(Path::to_path_buf).unwrap_or_else(cache_dir);
    let cache_file = cache_root.join(format!("oxflower17-{size}px-{}.bin", &key[..16]));
    let labels: Vec<u8> = sources.iter().map(|s| s.label).collect();
    if let Some(set) = read_cache(&cache_file, &key, size, &labels) {
        return Ok(Decoded {
            set,
            cached: true,
            cache_file,
        });
    }
    let bar = indicatif::ProgressBar::new(sources.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "decoding flowers [{bar:30}] {pos}/{len} {per_sec} eta {eta}",
        )
        .expect("static template")
        .progress_chars("=> "),
    );
    let images: Vec<Vec<u8>> = sources
        .par_iter()
        .zip(&bytes)
        .map(|(s, b)| {
            let r = decode_resize(&s.path, b, size);
            bar.inc(1);
            r
        })
        .collect::<Result<_, _>>()?;
    bar.finish_and_clear();
    let set = ImageSet {
        images: images.concat(),
        labels,
        shape: [3, size, size],
        num_classes: CLASSES,
    };
    if let Err(e) = write_cache(&cache_file, &key, &set) {
        eprintln!(
            "warning: cannot cache the decoded flowers in {}: {e}",
            cache_file.display()
        );
    }
    Ok(Decoded {
        set,
        cached: false,
        cache_file,
    })
}

fn write_cache(path: &Path, key: &str, set: &ImageSet) -> std::io::Result<()> {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d)?;
    }
    let mut body = Vec::with_capacity(64 + set.labels.len() + set.images.len());
    body.extend_from_slice(CACHE_MAGIC);
    body.extend_from_slice(key.as_bytes());
    body.extend_from_slice(&(set.shape[1] as u32).to_le_bytes());
    body.extend_from_slice(&(set.len() as u32).to_le_bytes());
    body.extend_from_slice(&set.labels);
    body.extend_from_slice(&set.images);
    let crc = crc32fast::hash(&body);
    body.extend_from_slice(&crc.to_le_bytes());
    crate::checkpoint::write_atomic(path, &body).map_err(std::io::Error::other)
}

/// The cached set, if the file exists, matches the key, size and labels, and its CRC holds.
fn read_cache(path: &Path, key: &str, size: usize, labels: &[u8]) -> Option<ImageSet> {
    let mut f = std::fs::File::open(path).ok()?;
    let mut body = Vec::new();
    f.read_to_end(&mut body).ok()?;
    let n = labels.len();
    let header = CACHE_MAGIC.len() + key.len() + 8;
    let pixels = n * 3 * size * size;
    if body.len() != header + n + pixels + 4 {
        return None;
    }
    let (content, crc) = body.split_at(body.len() - 4);
    if crc32fast::hash(content).to_le_bytes() != crc {
        return None;
    }
    let ok = &content[..8] == CACHE_MAGIC
        && &content[8..8 + key.len()] == key.as_bytes()
        && content[header - 8..header - 4] == (size as u32).to_le_bytes()
        && content[header - 4..header] == (n as u32).to_le_bytes()
        && &content[header..header + n] == labels;
    ok.then(|| ImageSet {
        images: content[header + n..].to_vec(),
        labels: labels.to_vec(),
        shape: [3, size, size],
        num_classes: CLASSES,
    })
}

/// Splits `set` into (train, validation, test), stratified by class and seeded (see the module
/// docs). `test + val` must leave every class at least one training image.
pub fn split(
    set: &ImageSet,
    test: usize,
    val: usize,
    seed: u64,
) -> Result<(ImageSet, ImageSet, ImageSet), DataError> {
    let k = set.num_classes;
    let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); k];
    for (i, &l) in set.labels.iter().enumerate() {
        by_class[l as usize].push(i);
    }
    let n = set.len();
    if test + val >= n {
        return Err(DataError::Missing(format!(
            "a split of {test} test + {val} validation images leaves nothing to train on ({n} images)"
        )));
    }
    let shares = |total: usize, salt: u64| -> Vec<usize> {
        let mut s: Vec<usize> = by_class.iter().map(|c| c.len() * total / n).collect();
        let mut order: Vec<usize> = (0..k).collect();
        let mut rng = SplitMix64::new(seed ^ salt);
        for i in (1..k).rev() {
            order.swap(i, rng.below(i + 1));
        }
        let mut left = total - s.iter().sum::<usize>();
        for &c in order.iter().cycle().take(k * 2) {
            if left == 0 {
                break;
            }
            if s[c] < by_class[c].len() {
                s[c] += 1;
                left -= 1;
            }
        }
        s
    };
    let t = shares(test, 0x7E57);
    let v = shares(val, 0x0A11);
    let (mut tr, mut va, mut te) = (Vec::new(), Vec::new(), Vec::new());
    for (c, idx) in by_class.iter_mut().enumerate() {
        if t[c] + v[c] >= idx.len() {
            return Err(DataError::Missing(format!(
                "class {c} has {} images: too few for {} test + {} validation + 1 training",
                idx.len(),
                t[c],
                v[c]
            )));
        }
        let mut rng = SplitMix64::new(seed ^ c as u64);
        for i in (1..idx.len()).rev() {
            idx.swap(i, rng.below(i + 1));
        }
        te.extend_from_slice(&idx[..t[c]]);
        va.extend_from_slice(&idx[t[c]..t[c] + v[c]]);
        tr.extend_from_slice(&idx[t[c] + v[c]..]);
    }
    for part in [&mut tr, &mut va, &mut te] {
        part.sort_unstable();
    }
    Ok((set.subset(&tr), set.subset(&va), set.subset(&te)))
}

/// Downloads the official archive into `dir/jpg`, checking every image against its published
/// SHA-256 before it is written.
pub fn fetch(dir: &Path, mirrors: &[String]) -> Result<(), String> {
    let mut errors = Vec::new();
    for base in mirrors {
        let url = format!("{base}{ARCHIVE}");
        match download::get(&url, ARCHIVE, 256 << 20) {
            Err(e) => errors.push(format!("{url}: {e}")),
            Ok(body) => match unpack(&body, dir) {
                Ok(()) => return Ok(()),
                Err(e) => errors.push(format!("{url}: {e}")),
            },
        }
    }
    Err(format!(
        "could not download {ARCHIVE}:\n  {}",
        errors.join("\n  ")
    ))
}

/// Extracts `jpg/image_NNNN.jpg` from a `17flowers.tgz` held in memory into `dir/jpg`, each
/// checked against its SHA-256; the archive must hold all 1,360.
pub fn unpack(archive: &[u8], dir: &Path) -> Result<(), String> {
    let out = dir.join("jpg");
    std::fs::create_dir_all(&out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    let mut seen = vec![false; IMAGES];
    download::tar_gz_entries(
        archive,
        ARCHIVE,
        |path| {
            path.file_name()
                .and_then(|n| n.to_str())
                .and_then(image_number)
                .filter(|n| (1..=IMAGES).contains(n))
        },
        |n, bytes| {
            let got = download::sha256_hex(&bytes);
            let want = expected_sha256(n).unwrap_or_default();
            if got != want {
                return Err(format!(
                    "{ARCHIVE}: image_{n:04}.jpg: checksum mismatch: sha256 {got}, expected {want}"
                ));
            }
            let dest = out.join(format!("image_{n:04}.jpg"));
            crate::checkpoint::write_atomic(&dest, &bytes)
                .map_err(|e| format!("cannot write {}: {e}", dest.display()))?;
            seen[n - 1] = true;
            Ok(())
        },
    )?;
    match seen.iter().position(|s| !s) {
        Some(i) => Err(format!("{ARCHIVE}: image_{:04}.jpg is missing", i + 1)),
        None => Ok(()),
    }
}

/// One line for `host-train datasets`: how many images verify against the published SHA-256.
pub fn verify(dir: &Path) -> Vec<(String, Result<String, String>)> {
    let sources = match sources(dir) {
        Ok(s) => s,
        Err(e) => return vec![("layout".into(), Err(e.to_string()))],
    };
    let bad: Vec<String> = sources
        .par_iter()
        .filter_map(|s| {
            let name = s.path.file_name()?.to_str()?.to_string();
            let got = std::fs::read(&s.path)
                .map(|b| download::sha256_hex(&b))
                .unwrap_or_default();
            let ok = image_number(&name)
                .and_then(expected_sha256)
                .is_some_and(|w| w == got)
                && image_number(&name).is_some_and(|n| (n - 1) / PER_CLASS == s.label as usize);
            (!ok).then_some(name)
        })
        .collect();
    let names = class_names(dir);
    let mut out = vec![(
        format!("{} images", sources.len()),
        if bad.is_empty() && sources.len() == IMAGES {
            Ok("all match the release's SHA-256 and class".to_string())
        } else if bad.is_empty() {
            Err(format!(
                "{} of the release's {IMAGES} images",
                sources.len()
            ))
        } else {
            Err(format!(
                "{} differ from the release or sit in another class: {}{}",
                bad.len(),
                bad[..bad.len().min(5)].join(", "),
                if bad.len() > 5 { ", .." } else { "" }
            ))
        },
    )];
    out.push((
        "classes.txt".into(),
        names.map(|n| n.join(" ")).map_err(|e| e.to_string()),
    ));
    out
}

/// Writes the copy in `dir`, decoded and resized to `size` x `size`, as a class-folder copy in
/// `out` (`00` .. `16` holding JPEGs of the same names at `quality`, and `classes.txt`): a
/// small copy of the flowers to carry where the originals are not (scripts/gpu-check.sh). The
/// same names keep the same seeded split. Returns the images and the bytes written.
pub fn write_resized_copy(
    dir: &Path,
    size: usize,
    out: &Path,
    quality: u8,
) -> anyhow::Result<(usize, u64)> {
    use anyhow::Context;
    let sources = sources(dir)?;
    let names = class_names(dir)?;
    let all = decode_all(dir, size, None)?;
    let plane = size * size;
    let mut total = 0u64;
    for c in 0..CLASSES {
        let folder = out.join(format!("{c:02}"));
        std::fs::create_dir_all(&folder)
            .with_context(|| format!("cannot create {}", folder.display()))?;
    }
    for (i, src) in sources.iter().enumerate() {
        let chw = all.set.image(i);
        let mut hwc = vec![0u8; 3 * plane];
        for p in 0..plane {
            for ch in 0..3 {
                hwc[3 * p + ch] = chw[ch * plane + p];
            }
        }
        let mut jpeg = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, quality)
            .encode(
                &hwc,
                size as u32,
                size as u32,
                image::ExtendedColorType::Rgb8,
            )
            .with_context(|| format!("cannot encode {}", src.path.display()))?;
        let name = src
            .path
            .file_name()
            .context("image path has no file name")?;
        let path = out.join(format!("{:02}", src.label)).join(name);
        crate::checkpoint::write_atomic(&path, &jpeg)?;
        total += jpeg.len() as u64;
    }
    let list: String = names
        .iter()
        .enumerate()
        .map(|(c, n)| format!("{c:02} {n}\n"))
        .collect();
    crate::checkpoint::write_atomic(&out.join("classes.txt"), list.as_bytes())?;
    Ok((sources.len(), total))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// A small JPEG of a solid colour.
    fn jpeg(w: u32, h: u32, rgb: [u8; 3]) -> Vec<u8> {
        let img = image::RgbImage::from_pixel(w, h, image::Rgb(rgb));
        let mut out = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 95)
            .encode_image(&img)
            .unwrap();
        out
    }

    fn class_folders(dir: &Path, per_class: usize) {
        for c in 0..CLASSES {
            let f = dir.join(format!("{c:02}"));
            std::fs::create_dir_all(&f).unwrap();
            for i in 0..per_class {
                let shade = (c * 15) as u8;
                std::fs::write(
                    f.join(format!("image_{:04}.jpg", c * 80 + i + 1)),
                    jpeg(40 + i as u32, 30, [shade, 255 - shade, 128]),
                )
                .unwrap();
            }
        }
    }

    #[test]
    fn decodes_resizes_and_caches() {
        let d = tempfile::tempdir().unwrap();
        let cache = tempfile::tempdir().unwrap();
        class_folders(d.path(), 2);
        let a = decode_all(d.path(), 16, Some(cache.path())).unwrap();
        assert!(!a.cached);
        assert_eq!(a.set.len(), 34);
        assert_eq!(a.set.shape, [3, 16, 16]);
        assert_eq!(a.set.labels[..4], [0, 0, 1, 1]);
        // Class 1's red plane is about 15, green about 240 (JPEG rounding aside).
        let img = a.set.image(2);
        assert!((img[0] as i32 - 15).abs() <= 3 && (img[256] as i32 - 240).abs() <= 3);
        let b = decode_all(d.path(), 16, Some(cache.path())).unwrap();
        assert!(b.cached);
        assert_eq!(a.set, b.set);
        // Another size is another cache file; a changed image invalidates the key.
        assert!(!decode_all(d.path(), 12, Some(cache.path())).unwrap().cached);
        std::fs::write(d.path().join("03/image_0241.jpg"), jpeg(9, 9, [0, 0, 0])).unwrap();
        let c = decode_all(d.path(), 16, Some(cache.path())).unwrap();
        assert!(!c.cached);
        assert_ne!(c.set, a.set);
        // A corrupt cache file is rebuilt.
        let mut bytes = std::fs::read(&c.cache_file).unwrap();
        bytes[100] ^= 1;
        std::fs::write(&c.cache_file, bytes).unwrap();
        assert!(!decode_all(d.path(), 16, Some(cache.path())).unwrap().cached);
    }

    #[test]
    fn bad_files_and_folders_are_named() {
        let d = tempfile::tempdir().unwrap();
        let cache = tempfile::tempdir().unwrap();
        class_folders(d.path(), 1);
        std::fs::write(d.path().join("05/image_0401.jpg"), b"GIF89a....").unwrap();
        let e = decode_all(d.path(), 16, Some(cache.path()))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("05/image_0401.jpg") && e.contains("not a JPEG"),
            "{e}"
        );
        std::fs::write(d.path().join("05/image_0401.jpg"), b"").unwrap();
        let e = decode_all(d.path(), 16, Some(cache.path()))
            .unwrap_err()
            .to_string();
        assert!(e.contains("empty file"), "{e}");
        let mut truncated = jpeg(40, 30, [1, 2, 3]);
        truncated.truncate(30);
        std::fs::write(d.path().join("05/image_0401.jpg"), truncated).unwrap();
        let e = decode_all(d.path(), 16, Some(cache.path()))
            .unwrap_err()
            .to_string();
        assert!(e.contains("cannot decode the JPEG"), "{e}");

        std::fs::remove_dir_all(d.path().join("07")).unwrap();
        let e = sources(d.path()).unwrap_err().to_string();
        assert!(
            e.contains("07") && e.contains("class folder missing"),
            "{e}"
        );
        std::fs::create_dir(d.path().join("07")).unwrap();
        let e = sources(d.path()).unwrap_err().to_string();
        assert!(e.contains("07") && e.contains("no .jpg"), "{e}");
    }

    #[test]
    fn hostile_jpegs_and_folders_of_empty_files() {
        // A real JPEG whose frame header claims 65,535 x 65,535: the decode limits refuse it
        // before its 12 GiB of pixels are allocated.
        let mut big = jpeg(16, 16, [9, 9, 9]);
        let sof = big.windows(2).position(|m| m == [0xFF, 0xC0]).unwrap();
        big[sof + 5..sof + 9].copy_from_slice(&[0xFF; 4]);
        let e = decode_resize(Path::new("big.jpg"), &big, 16)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("big.jpg") && e.contains("cannot decode the JPEG") && e.contains("limit"),
            "{e}"
        );
        // A class folder whose every file is empty: the first one is named.
        let d = tempfile::tempdir().unwrap();
        class_folders(d.path(), 1);
        for e in std::fs::read_dir(d.path().join("03")).unwrap() {
            std::fs::write(e.unwrap().path(), b"").unwrap();
        }
        let e = decode_all(d.path(), 16, None).unwrap_err().to_string();
        assert!(e.contains("03/") && e.contains("empty file"), "{e}");
    }

    #[test]
    fn flat_layout_labels_by_number_and_needs_every_file() {
        let d = tempfile::tempdir().unwrap();
        let jpg = d.path().join("jpg");
        std::fs::create_dir(&jpg).unwrap();
        for n in 1..=IMAGES {
            std::fs::write(jpg.join(format!("image_{n:04}.jpg")), b"x").unwrap();
        }
        let s = sources(d.path()).unwrap();
        assert_eq!(s.len(), IMAGES);
        assert_eq!((s[79].label, s[80].label, s[1359].label), (0, 1, 16));
        std::fs::remove_file(jpg.join("image_0700.jpg")).unwrap();
        let e = sources(d.path()).unwrap_err().to_string();
        assert!(e.contains("image_0700.jpg") && e.contains("missing"), "{e}");
    }

    #[test]
    fn seed_split_is_stratified_disjoint_and_seeded() {
        let set = ImageSet {
            images: (0..IMAGES).map(|i| i as u8).collect(),
            labels: (0..IMAGES).map(|i| (i / PER_CLASS) as u8).collect(),
            shape: [1, 1, 1],
            num_classes: CLASSES,
        };
        let (tr, va, te) = split(&set, DEFAULT_TEST, 0, 7).unwrap();
        assert_eq!((tr.len(), va.len(), te.len()), (1000, 0, 360));
        let mut per = [0usize; CLASSES];
        for &l in &te.labels {
            per[l as usize] += 1;
        }
        assert!(per.iter().all(|&p| p == 21 || p == 22), "{per:?}");
        assert_eq!(per.iter().filter(|&&p| p == 22).count(), 3);
        // Same seed, same split; another seed, another.
        assert_eq!(split(&set, DEFAULT_TEST, 0, 7).unwrap().2, te);
        assert_ne!(split(&set, DEFAULT_TEST, 0, 8).unwrap().2, te);
        let (tr, va, te) = split(&set, 170, 170, 7).unwrap();
        assert_eq!((tr.len(), va.len(), te.len()), (1020, 170, 170));
        // Disjoint: the pixel value is the image index mod 256, so compare (label, pixel) pairs.
        let key = |s: &ImageSet| -> Vec<(u8, u8)> {
            s.labels
                .iter()
                .copied()
                .zip(s.images.iter().copied())
                .collect()
        };
        let mut all: Vec<_> = [key(&tr), key(&va), key(&te)].concat();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), IMAGES);
        assert!(split(&set, 1000, 360, 7).is_err());
    }

    #[test]
    fn archive_images_are_checked_before_they_are_written() {
        let tgz = |files: &[(&str, &[u8])]| {
            let mut tar = tar::Builder::new(Vec::new());
            for (name, data) in files {
                let mut h = tar::Header::new_gnu();
                h.set_size(data.len() as u64);
                h.set_mode(0o644);
                h.set_cksum();
                tar.append_data(&mut h, name, *data).unwrap();
            }
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(&tar.into_inner().unwrap()).unwrap();
            e.finish().unwrap()
        };
        let d = tempfile::tempdir().unwrap();
        let e = unpack(
            &tgz(&[("jpg/image_0001.jpg", b"not the release's bytes")]),
            d.path(),
        )
        .unwrap_err();
        assert!(
            e.contains("image_0001.jpg: checksum mismatch")
                && e.contains(expected_sha256(1).unwrap()),
            "{e}"
        );
        assert!(!d.path().join("jpg/image_0001.jpg").exists());
        // Entries that are not release images are skipped; a missing image is named.
        let e = unpack(&tgz(&[("jpg/files.txt", b"x")]), d.path()).unwrap_err();
        assert!(e.contains("image_0001.jpg is missing"), "{e}");
        let e = unpack(b"\x1f\x8b garbage", d.path()).unwrap_err();
        assert!(e.contains("17flowers.tgz"), "{e}");
    }

    #[test]
    fn published_checksums_cover_the_release() {
        assert_eq!(SHA256.lines().count(), IMAGES);
        assert_eq!(
            expected_sha256(1),
            Some("b0210a5e492374329026c86cd6b0646a390b8da78651120810e386bbe7a20840")
        );
        assert_eq!(expected_sha256(0), None);
        assert_eq!(expected_sha256(IMAGES + 1), None);
        assert_eq!(image_number("image_0421.jpg"), Some(421));
        assert_eq!(image_number("image_421.jpg"), None);
    }
}
