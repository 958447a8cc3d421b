//! `publish --attach FILE`: reports about an image (the nightly's drift
//! report) published as referrers of it, each a subject of the provenance.
//! Read whole into memory, so bounded; named by their file name, which the
//! pull side writes them as, so a name the publication already has is
//! refused.

use std::fs;
use std::path::PathBuf;

use super::PublishError;
use super::plan::out_err;

/// Largest file `--attach` takes (reports, not images).
pub const MAX_ATTACHMENT: u64 = 16 << 20;

/// Reads the `--attach` files: each a plain file of at most
/// [`MAX_ATTACHMENT`] bytes whose name is not already published (the pull
/// side writes files by name).
pub fn read(
    paths: &[PathBuf],
    taken: &[(String, String)],
) -> Result<Vec<(String, Vec<u8>)>, PublishError> {
    let mut out: Vec<(String, Vec<u8>)> = Vec::new();
    for p in paths {
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .filter(|n| !n.is_empty() && n != "oci")
            .ok_or_else(|| out_err(p, "an attachment needs a file name"))?;
        let clash = taken.iter().skip(1).any(|(n, _)| *n == name)
            || out.iter().any(|(n, _)| *n == name)
            || name == "provenance.intoto.json";
        if clash {
            return Err(out_err(
                p,
                format!("`{name}` is already a file of this publication; rename the attachment"),
            ));
        }
        let meta = fs::metadata(p).map_err(|e| out_err(p, e.to_string()))?;
        if !meta.is_file() {
            return Err(out_err(p, "an attachment must be a regular file"));
        }
        if meta.len() > MAX_ATTACHMENT {
            return Err(out_err(
                p,
                format!(
                    "{} bytes is more than an attachment may have ({MAX_ATTACHMENT})",
                    meta.len()
                ),
            ));
        }
        let bytes = fs::read(p).map_err(|e| out_err(p, e.to_string()))?;
        out.push((name, bytes));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::publish::media;

    #[test]
    fn attachments_are_plain_bounded_files_with_new_names() {
        let dir = tempfile::tempdir().unwrap();
        let report = dir.path().join("drift.md");
        fs::write(&report, "# Drift\n").unwrap();
        let taken = vec![
            ("reg.test/x".to_string(), "sha256:aa".to_string()),
            ("x.lock".to_string(), "sha256:bb".to_string()),
        ];
        let got = read(std::slice::from_ref(&report), &taken).unwrap();
        assert_eq!(got, vec![("drift.md".to_string(), b"# Drift\n".to_vec())]);
        assert_eq!(media::attachment_layer("drift.md"), "text/markdown");
        assert_eq!(media::attachment_layer("drift.json"), "application/json");
        // The same name twice, or a name the publication already has.
        let twice = read(&[report.clone(), report.clone()], &taken).unwrap_err();
        assert!(twice.to_string().contains("already a file"), "{twice}");
        let lock = dir.path().join("x.lock");
        fs::write(&lock, "x").unwrap();
        let e = read(&[lock], &taken).unwrap_err().to_string();
        assert!(e.contains("x.lock") && e.contains("already a file"), "{e}");
        // Not a regular file, or too big: refused naming the path.
        let e = read(&[dir.path().to_path_buf()], &taken)
            .unwrap_err()
            .to_string();
        assert!(e.contains("regular file"), "{e}");
        let big = dir.path().join("big.json");
        fs::File::create(&big)
            .unwrap()
            .set_len(MAX_ATTACHMENT + 1)
            .unwrap();
        let e = read(&[big], &taken).unwrap_err().to_string();
        assert!(e.contains("big.json") && e.contains("more than"), "{e}");
    }
}
