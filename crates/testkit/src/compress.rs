//! Deterministic compression of fixture files.

use std::io::Write;

/// xz-compresses `data` (preset 6, as Debian's archive tools do).
pub fn xz(data: &[u8]) -> Vec<u8> {
    let mut enc = liblzma::write::XzEncoder::new(Vec::new(), 6);
    enc.write_all(data).expect("xz in memory");
    enc.finish().expect("xz in memory")
}

/// gzip-compresses (header mtime 0, so deterministic).
pub fn gz(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(9));
    enc.write_all(data).expect("gzip in memory");
    enc.finish().expect("gzip in memory")
}

/// xz-compresses `data` in blocks of `block` bytes (preset 1), as xz and
/// dpkg-deb write with threads: a multi-block stream.
pub fn xz_blocks(data: &[u8], block: u64) -> Vec<u8> {
    use std::io::Read;
    let stream = liblzma::stream::MtStreamBuilder::new()
        .threads(2)
        .block_size(block)
        .preset(1)
        .encoder()
        .expect("xz encoder");
    let mut out = Vec::new();
    liblzma::read::XzEncoder::new_stream(data, stream)
        .read_to_end(&mut out)
        .expect("xz in memory");
    out
}
