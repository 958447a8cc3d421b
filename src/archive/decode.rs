//! Decompressing and parsing verified `Packages` indexes, fast.
//!
//! bookworm main amd64 is 8.8 MB of xz that inflates to 50 MB and 63k
//! stanzas. Decompression is inherently sequential, so it streams into
//! stanza-aligned chunks that rayon parses while the rest is still being
//! decompressed.

use std::io::Read;

use crate::core::package::{BinaryPackage, PackagesError, parse_packages};

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

/// Decompresses `data` according to the suffix of `path` (`.xz`, `.gz`, or
/// none) and parses it as a `Packages` index. `index` names it in errors.
pub(crate) fn decode_packages(
    path: &str,
    data: &[u8],
    index: &str,
    source: usize,
) -> Result<Vec<BinaryPackage>, DecodeError> {
    decode_with_chunk(path, data, index, source, CHUNK)
}

/// [`decode_packages`] with an explicit chunk size (small in tests, to
/// exercise chunking without megabytes of fixtures).
fn decode_with_chunk(
    path: &str,
    data: &[u8],
    index: &str,
    source: usize,
    chunk: usize,
) -> Result<Vec<BinaryPackage>, DecodeError> {
    let reader: Box<dyn Read + '_> = if path.ends_with(".xz") {
        Box::new(liblzma::read::XzDecoder::new_stream(data, xz_stream()?))
    } else if path.ends_with(".gz") {
        Box::new(flate2::read::GzDecoder::new(data))
    } else {
        Box::new(data)
    };
    let chunks = parse_stream(reader, chunk, index, source)?;
    let mut out = Vec::with_capacity(chunks.iter().map(Vec::len).sum());
    for packages in chunks {
        out.extend(packages);
    }
    Ok(out)
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

/// Reads `reader` to the end, splitting at blank lines into ~[`CHUNK`]-byte
/// pieces that the rayon pool parses while reading continues. Returns the
/// packages in file order.
fn parse_stream(
    mut reader: impl Read,
    chunk_size: usize,
    index: &str,
    source: usize,
) -> Result<Vec<Vec<BinaryPackage>>, DecodeError> {
    let (tx, rx) = std::sync::mpsc::channel::<(usize, Result<Vec<BinaryPackage>, DecodeError>)>();
    let mut read_error = None;
    rayon::in_place_scope(|scope| {
        let mut buf: Vec<u8> = Vec::with_capacity(chunk_size * 2);
        let mut lines_before = 0usize;
        let mut seq = 0usize;
        loop {
            let start = buf.len();
            buf.resize(start + chunk_size, 0);
            let n = match read_full(&mut reader, &mut buf[start..]) {
                Ok(n) => n,
                Err(e) => {
                    read_error = Some(e.to_string());
                    return;
                }
            };
            buf.truncate(start + n);
            let eof = n == 0;
            // Cut after the last blank line so that no stanza straddles chunks.
            let cut = if eof {
                buf.len()
            } else {
                match memchr::memmem::rfind(&buf, b"\n\n") {
                    Some(i) => i + 2,
                    None => continue,
                }
            };
            if cut > 0 {
                let rest = buf.split_off(cut);
                let chunk = std::mem::replace(&mut buf, rest);
                let first_line = lines_before;
                lines_before += memchr::memchr_iter(b'\n', &chunk).count();
                let (tx, n) = (tx.clone(), seq);
                seq += 1;
                scope.spawn(move |_| {
                    let _ = tx.send((n, parse_chunk(&chunk, first_line, index, source)));
                });
            }
            if eof {
                return;
            }
        }
    });
    drop(tx);
    if let Some(e) = read_error {
        return Err(DecodeError::Decompress(e));
    }
    let mut parsed: Vec<_> = rx.into_iter().collect();
    parsed.sort_by_key(|(n, _)| *n);
    parsed.into_iter().map(|(_, r)| r).collect()
}

/// Parses one stanza-aligned chunk whose first line is `first_line + 1` of the file.
fn parse_chunk(
    chunk: &[u8],
    first_line: usize,
    index: &str,
    source: usize,
) -> Result<Vec<BinaryPackage>, DecodeError> {
    let text = std::str::from_utf8(chunk)
        .map_err(|e| DecodeError::Decompress(format!("not UTF-8 after line {first_line}: {e}")))?;
    parse_packages(text, index, source).map_err(|mut e| {
        e.line += first_line;
        DecodeError::Packages(e)
    })
}

/// Fills `buf` as far as the reader allows; returns the bytes read (0 at EOF).
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match reader.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::testutil::{gz, packages_text, xz};

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
            let p = decode_with_chunk(path, &data, "main/P", 3, 16 * 1024).unwrap();
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
        let e = decode_with_chunk("P", text.as_bytes(), "main/P", 0, 16 * 1024).unwrap_err();
        match e {
            DecodeError::Packages(e) => {
                assert_eq!(e.line, lines_before + 1);
                assert_eq!(e.package, "broken");
            }
            other => panic!("{other:?}"),
        }
        let e = decode_packages("P.xz", b"not xz", "main/P", 0).unwrap_err();
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
            let p = decode_packages(&path, &data, "P", 0).unwrap();
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
        let p = parse_packages(std::str::from_utf8(&text).unwrap(), "P", 0).unwrap();
        eprintln!("parse alone, one thread: {} in {:?}", p.len(), t.elapsed());
        let t = std::time::Instant::now();
        let h = crate::archive::testutil::sha256_hex(&data);
        eprintln!("sha256 of the .xz: {:?} {h}", t.elapsed());
    }
}
