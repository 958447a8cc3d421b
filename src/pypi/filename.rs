//! Distribution file names: wheels (`name-ver(-build)?-py-abi-plat.whl`,
//! PEP 427 / 491) and sdists (`name-ver.tar.gz`, `.zip`).

use std::str::FromStr;

use pep440_rs::Version;

use crate::recipe::normalize_name;

/// What a distribution file name says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DistFile {
    /// A wheel and its expanded tag triples (`cp311-cp311-manylinux_2_17_x86_64`).
    Wheel {
        /// Version from the file name.
        version: Version,
        /// Every `python-abi-platform` combination the compressed tag set names.
        tags: Vec<String>,
    },
    /// A source distribution.
    Sdist {
        /// Version from the file name.
        version: Version,
    },
}

impl DistFile {
    /// The version the file name carries.
    pub fn version(&self) -> &Version {
        match self {
            DistFile::Wheel { version, .. } | DistFile::Sdist { version } => version,
        }
    }
}

/// Parses `filename` as a file of project `project` (normalised name);
/// `None` for other kinds (eggs, `.exe`, …) or names that do not match.
pub fn parse(project: &str, filename: &str) -> Option<DistFile> {
    if let Some(stem) = filename.strip_suffix(".whl") {
        let parts: Vec<&str> = stem.split('-').collect();
        if !(5..=6).contains(&parts.len()) || normalize_name(parts[0]) != project {
            return None;
        }
        let version = Version::from_str(parts[1]).ok()?;
        let n = parts.len();
        let mut tags = Vec::new();
        for py in parts[n - 3].split('.') {
            for abi in parts[n - 2].split('.') {
                for plat in parts[n - 1].split('.') {
                    tags.push(format!("{py}-{abi}-{plat}"));
                }
            }
        }
        return Some(DistFile::Wheel { version, tags });
    }
    let stem = filename
        .strip_suffix(".tar.gz")
        .or_else(|| filename.strip_suffix(".zip"))?;
    // The name may itself contain `-` (legacy sdists): the version is what
    // follows the dash after which the rest parses as a version.
    for (i, _) in stem.match_indices('-') {
        if normalize_name(&stem[..i]) == project
            && let Ok(version) = Version::from_str(&stem[i + 1..])
        {
            return Some(DistFile::Sdist { version });
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wheels_and_sdists() {
        let w = parse(
            "grpcio",
            "grpcio-1.62.0-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
        )
        .unwrap();
        assert_eq!(w.version().to_string(), "1.62.0");
        let DistFile::Wheel { tags, .. } = w else {
            panic!()
        };
        assert_eq!(
            tags,
            [
                "cp311-cp311-manylinux_2_17_x86_64",
                "cp311-cp311-manylinux2014_x86_64"
            ]
        );
        assert!(matches!(
            parse("tenjin", "Tenjin-1.1.1.tar.gz"),
            Some(DistFile::Sdist { .. })
        ));
        assert!(matches!(
            parse("a-b", "a_b-2.0rc1-1-py2.py3-none-any.whl"),
            Some(DistFile::Wheel { ref tags, .. }) if tags.len() == 2
        ));
        assert!(parse("other", "grpcio-1.0-py3-none-any.whl").is_none());
        assert!(parse("x", "x-1.0.win32.exe").is_none());
    }
}
