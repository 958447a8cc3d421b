//! Decompressing and parsing verified `Packages` indexes, fast.
//!
//! bookworm main amd64 is 8.8 MB of xz that inflates to 50 MB and 63k
//! stanzas. Decompression (multi-threaded over xz blocks) happens once per
//! verified index; the result is cached, and parsing splits the text into
//! stanza-aligned slices that rayon parses in parallel without copying.

use std::io::Read;

use crate::core::package::{BinaryPackage, IndexText, PackagesError, parse_index_range};

/// Target size of the text chunks handed to the parser threads.
const CHUNK: usize = 4 << 20;

/// Why an index could not be turned into packages.
#[derive(Debug)]
pub(crate) enum DecodeError {
    /// Decompression failed or the text is not UTF-8.
    Decompress(String),
    /// A stanza is malformed.
    Packages(PackagesError),
}

/// Parses an already decompressed index in parallel, straight from `data`
/// (no copy): stanza-aligned slices of about [`CHUNK`] bytes go to the rayon pool.
pub(crate) fn parse_plain(
    text: &IndexText,
    index: &str,
    source: usize,
) -> Result<Vec<BinaryPackage>, DecodeError> {
    parse_plain_with_chunk(text, index, source, CHUNK)
}

/// [`parse_plain`] with an explicit chunk size (small in tests).
fn parse_plain_with_chunk(
    text: &IndexText,
    index: &str,
    source: usize,
    chunk: usize,
) -> Result<Vec<BinaryPackage>, DecodeError> {
    use rayon::prelude::*;
    let data = (**text).as_ref();
    let mut bounds = Vec::new();
    let mut start = 0;
    while start < data.len() {
        let probe = (start + chunk).min(data.len());
        let end = match memchr::memmem::find(&data[probe..], b"\n\n") {
            Some(i) if probe < data.len() => probe + i + 2,
            _ => data.len(),
        };
        bounds.push((start, end));
        start = end;
    }
    let mut first_lines = Vec::with_capacity(bounds.len());
    let mut lines = 0;
    for &(a, b) in &bounds {
        first_lines.push(lines);
        lines += memchr::memchr_iter(b'\n', &data[a..b]).count();
    }
    let parsed: Vec<Result<Vec<BinaryPackage>, DecodeError>> = bounds
        .par_iter()
        .zip(first_lines.par_iter())
        .map(|(&(a, b), &line)| {
            parse_index_range(text, a, b, line, index, source).map_err(DecodeError::Packages)
        })
        .collect();
    let mut out = Vec::new();
    for chunk in parsed {
        out.extend(chunk?);
    }
    Ok(out)
}

/// Decompresses a whole index according to the suffix of `path`.
pub(crate) fn decompress(path: &str, data: &[u8]) -> Result<Vec<u8>, DecodeError> {
    let mut out = Vec::with_capacity(data.len() * 6);
    let result = if path.ends_with(".xz") {
        liblzma::read::XzDecoder::new_stream(data, xz_stream()?).read_to_end(&mut out)
    } else if path.ends_with(".gz") {
        flate2::read::GzDecoder::new(data).read_to_end(&mut out)
    } else {
        out.extend_from_slice(data);
        Ok(out.len())
    };
    result.map_err(|e| DecodeError::Decompress(e.to_string()))?;
    Ok(out)
}

/// Decompresses a whole index according to the suffix of `path` into
/// `file` (streamed: xz blocks in parallel, at their offsets), refusing more
/// than `limit` bytes; returns the size written.
pub(crate) fn decompress_into(
    path: &str,
    data: &[u8],
    file: &std::fs::File,
    limit: u64,
) -> Result<u64, String> {
    use super::xz::{copy_at, decode_blocks};
    let result = if path.ends_with(".xz") {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
        match decode_blocks(data, file, threads, limit) {
            Ok(Some(n)) => Ok(n),
            Ok(None) => {
                let stream = xz_stream().map_err(|e| match e {
                    DecodeError::Decompress(r) => r,
                    DecodeError::Packages(e) => e.to_string(),
                })?;
                copy_at(
                    liblzma::read::XzDecoder::new_stream(data, stream),
                    file,
                    0,
                    limit,
                )
            }
            Err(e) => Err(e),
        }
    } else if path.ends_with(".gz") {
        copy_at(flate2::read::GzDecoder::new(data), file, 0, limit)
    } else {
        copy_at(data, file, 0, limit)
    };
    result.map_err(|e| e.to_string())
}

/// A multi-threaded xz decoder: Debian's `Packages.xz` has independent
/// blocks (two for bookworm main amd64) that decode in parallel.
fn xz_stream() -> Result<liblzma::stream::Stream, DecodeError> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
    liblzma::stream::MtStreamBuilder::new()
        .threads(threads as u32)
        // Only a sanity bound: the input is already verified against the Release.
        .memlimit_stop(u64::MAX)
        .decoder()
        .map_err(|e| DecodeError::Decompress(format!("cannot start xz decoder: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use testkit::{gz, packages_text, xz};

    fn many(n: usize) -> String {
        let names: Vec<String> = (0..n).map(|i| format!("pkg{i}")).collect();
        let pkgs: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "1.0-1")).collect();
        packages_text("amd64", &pkgs)
    }

    #[test]
    fn decodes_all_forms_in_order_across_chunks() {
        // Many small chunks, to exercise the cutting and ordering.
        let text = many(8_000);
        assert!(text.len() > 50 * 16 * 1024);
        for (path, data) in [
            ("P.xz", xz(text.as_bytes())),
            ("P.gz", gz(text.as_bytes())),
            ("P", text.clone().into_bytes()),
        ] {
            let plain: IndexText = std::sync::Arc::new(decompress(path, &data).unwrap());
            let p = parse_plain_with_chunk(&plain, "main/P", 3, 16 * 1024).unwrap();
            assert_eq!(p.len(), 8_000, "{path}");
            assert!(
                p.iter()
                    .enumerate()
                    .all(|(i, p)| *p.name == *format!("pkg{i}"))
            );
            assert!(p.iter().all(|p| p.source == 3));
        }
    }

    #[test]
    fn errors_carry_file_line_numbers() {
        let mut text = many(5_000);
        let lines_before = text.lines().count();
        text.push_str("Package: broken\nVersion: 1\n\n");
        let shared: IndexText = std::sync::Arc::new(text.clone());
        let e = parse_plain_with_chunk(&shared, "main/P", 0, 16 * 1024).unwrap_err();
        match e {
            DecodeError::Packages(e) => {
                assert_eq!(e.line, lines_before + 1);
                assert_eq!(e.package, "broken");
            }
            other => panic!("{other:?}"),
        }
        let e = decompress("P.xz", b"not xz").unwrap_err();
        assert!(matches!(e, DecodeError::Decompress(_)), "{e:?}");
    }

    /// Times decoding a real index: `IMGBUILD_TEST_PACKAGES=/tmp/Packages.xz
    /// cargo test --release decode_speed -- --ignored --nocapture`.
    #[test]
    #[ignore = "needs a downloaded Packages.xz"]
    fn decode_speed() {
        let path = std::env::var("IMGBUILD_TEST_PACKAGES").expect("set IMGBUILD_TEST_PACKAGES");
        let data = std::fs::read(&path).unwrap();
        for _ in 0..3 {
            let t = std::time::Instant::now();
            let plain: IndexText = std::sync::Arc::new(decompress(&path, &data).unwrap());
            let p = parse_plain(&plain, "P", 0).unwrap();
            eprintln!("{} packages in {:?}", p.len(), t.elapsed());
        }
        let t = std::time::Instant::now();
        let mut text = Vec::new();
        liblzma::read::XzDecoder::new(&data[..])
            .read_to_end(&mut text)
            .unwrap();
        eprintln!("xz alone, one thread: {:?}", t.elapsed());
        let t = std::time::Instant::now();
        let mut text = Vec::new();
        liblzma::read::XzDecoder::new_stream(&data[..], xz_stream().unwrap())
            .read_to_end(&mut text)
            .unwrap();
        eprintln!("xz alone, multi-threaded: {:?}", t.elapsed());
        let t = std::time::Instant::now();
        let p = crate::core::package::parse_packages(std::str::from_utf8(&text).unwrap(), "P", 0)
            .unwrap();
        eprintln!("parse alone, one thread: {} in {:?}", p.len(), t.elapsed());
        let t = std::time::Instant::now();
        let h = testkit::sha256_hex(&data);
        eprintln!("sha256 of the .xz: {:?} {h}", t.elapsed());
    }
}
