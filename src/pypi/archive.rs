//! Reading metadata out of distribution files, for indexes without PEP 658
//! `.metadata` files and for sdists.

use std::io::{Cursor, Read};

use super::error::{Context, Result, invalid};

/// The core metadata of a wheel (`*.dist-info/METADATA`) or an sdist
/// (`PKG-INFO`, completed from `*.egg-info/requires.txt` when it lists no
/// `Requires-Dist`, as setuptools sdists of metadata version < 2.2 do).
pub fn metadata_from_dist(filename: &str, data: &[u8]) -> Result<String> {
    if filename.ends_with(".whl") {
        let mut zip = zip::ZipArchive::new(Cursor::new(data))
            .with_context(|| format!("{filename}: not a zip"))?;
        let name = (0..zip.len())
            .filter_map(|i| {
                zip.name_for_index(i)
                    .and_then(|n| n.ok())
                    .map(|n| n.to_string())
            })
            .find(|n| {
                let mut parts = n.split('/');
                matches!((parts.next(), parts.next(), parts.next()),
                    (Some(d), Some("METADATA"), None) if d.ends_with(".dist-info"))
            })
            .with_context(|| format!("{filename}: no .dist-info/METADATA"))?;
        let f = zip
            .by_name(&name)
            .with_context(|| format!("{filename}: reading {name}"))?;
        let text = read_all(f).with_context(|| format!("{filename}: reading {name}"))?;
        return Ok(String::from_utf8_lossy(&text).into_owned());
    }
    if filename.ends_with(".tar.gz") {
        let gz = flate2::read::GzDecoder::new(Cursor::new(data));
        let mut tar = tar::Archive::new(gz);
        let mut pkg_info = None;
        let mut requires = None;
        let bad = || format!("{filename}: reading the archive");
        for entry in tar.entries().with_context(bad)? {
            let entry = entry.with_context(bad)?;
            let path = entry
                .path()
                .with_context(bad)?
                .to_string_lossy()
                .into_owned();
            let parts: Vec<&str> = path.split('/').collect();
            match parts.as_slice() {
                [_, "PKG-INFO"] => pkg_info = Some(read_all(entry).with_context(bad)?),
                [_, d, "requires.txt"] | [_, _, d, "requires.txt"] if d.ends_with(".egg-info") => {
                    requires = Some(read_all(entry).with_context(bad)?)
                }
                _ => {}
            }
        }
        let Some(info) = pkg_info else {
            invalid!("{filename}: no PKG-INFO");
        };
        let mut text = String::from_utf8_lossy(&info).into_owned();
        let has_requires = super::metadata::headers(&text)
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("requires-dist"));
        if !has_requires && let Some(req) = requires {
            let header_end = text.find("\n\n").map_or(text.len(), |i| i + 1);
            let extra: String = requires_txt(&String::from_utf8_lossy(&req))
                .into_iter()
                .map(|r| format!("Requires-Dist: {r}\n"))
                .collect();
            text.insert_str(header_end, &extra);
        }
        return Ok(text);
    }
    invalid!("{filename}: unsupported distribution format (wheels and .tar.gz sdists only)")
}

/// setuptools' `requires.txt`: plain lines, then `[extra]`, `[extra:marker]`
/// or `[:marker]` sections.
fn requires_txt(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut marker: Option<String> = None;
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if let Some(section) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            let (extra, m) = section.split_once(':').unwrap_or((section, ""));
            marker = match (extra.is_empty(), m.is_empty()) {
                (true, true) => None,
                (true, false) => Some(m.to_string()),
                (false, true) => Some(format!("extra == \"{extra}\"")),
                (false, false) => Some(format!("({m}) and extra == \"{extra}\"")),
            };
            continue;
        }
        match &marker {
            Some(m) => out.push(format!("{line}; {m}")),
            None => out.push(line.to_string()),
        }
    }
    out
}

/// Reads all of `r` (small helper for the archive readers).
fn read_all(mut r: impl Read) -> std::io::Result<Vec<u8>> {
    let mut v = Vec::new();
    r.read_to_end(&mut v)?;
    Ok(v)
}

#[cfg(test)]
mod tests {
    #[test]
    fn requires_txt_sections() {
        let r = super::requires_txt("six\n\n[test]\npytest\n[:python_version < \"3\"]\nmock\n");
        assert_eq!(
            r,
            [
                "six",
                "pytest; extra == \"test\"",
                "mock; python_version < \"3\""
            ]
        );
    }
}
