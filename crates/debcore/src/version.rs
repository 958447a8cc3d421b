//! Debian package versions (`[epoch:]upstream[-revision]`) in dpkg's order.
//!
//! Written by hand because the crates on offer get dpkg's rules wrong in
//! ways that matter for a solver (`1.` vs `1.0`, long digit runs, Eq/Hash
//! disagreeing with Ord). Equality and hashing here are defined through the
//! same comparison as ordering, via a canonical key, so the three agree.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

/// A parsed Debian version. Cheap to clone (the text is shared).
#[derive(Clone)]
pub struct DebVersion {
    text: Arc<str>,
    /// Byte offset where the upstream part starts (after `epoch:`).
    upstream_start: u32,
    /// Byte offset where the revision starts (after the last `-`), or `text.len()` if none.
    revision_start: u32,
    epoch: u64,
}

/// Why a version string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid version `{text}`: {reason}")]
pub struct VersionError {
    /// The offending text.
    pub text: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl DebVersion {
    /// Parses a version with dpkg's syntax rules (lenient where dpkg is lenient).
    pub fn parse(text: &str) -> Result<Self, VersionError> {
        let err = |reason| VersionError {
            text: text.to_string(),
            reason,
        };
        let t = text.trim();
        if t.is_empty() {
            return Err(err("empty version"));
        }
        if t.chars().any(char::is_whitespace) {
            return Err(err("embedded whitespace"));
        }
        let (epoch, upstream_start) = match t.find(':') {
            Some(i) => {
                let e = &t[..i];
                if e.is_empty() || !e.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(err("epoch is not a number"));
                }
                // dpkg stores the epoch in an int and refuses anything larger.
                match e.parse::<u64>() {
                    Ok(n) if n <= i32::MAX as u64 => (n, i + 1),
                    _ => return Err(err("epoch too large")),
                }
            }
            None => (0, 0),
        };
        let revision_start = match t[upstream_start..].rfind('-') {
            Some(i) => upstream_start + i + 1,
            None => t.len(),
        };
        let upstream_end = if revision_start == t.len() && !t[upstream_start..].contains('-') {
            t.len()
        } else {
            revision_start - 1
        };
        if upstream_end < t.len() && revision_start == t.len() {
            return Err(err("empty revision after `-`"));
        }
        let upstream = &t[upstream_start..upstream_end];
        if upstream.is_empty() {
            return Err(err("empty upstream version"));
        }
        if !upstream.as_bytes()[0].is_ascii_digit() {
            // dpkg only warns here; real archives contain none, but be lenient.
        }
        let ok = |b: u8| b.is_ascii_alphanumeric() || b".+~-:".contains(&b);
        if !t[upstream_start..].bytes().all(ok) {
            return Err(err("invalid character"));
        }
        Ok(DebVersion {
            text: Arc::from(t),
            upstream_start: upstream_start as u32,
            revision_start: revision_start as u32,
            epoch,
        })
    }

    /// The version exactly as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The epoch (0 when absent).
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The upstream part.
    pub fn upstream(&self) -> &str {
        let end = if self.has_revision() {
            self.revision_start as usize - 1
        } else {
            self.text.len()
        };
        &self.text[self.upstream_start as usize..end]
    }

    /// The Debian revision (empty when absent, which compares like `0`).
    pub fn revision(&self) -> &str {
        &self.text[self.revision_start as usize..]
    }

    fn has_revision(&self) -> bool {
        (self.revision_start as usize) < self.text.len()
    }
}

/// dpkg's weight of a non-digit character: `~` below end-of-string, letters
/// below everything else.
fn order(c: Option<u8>) -> i32 {
    match c {
        None => 0,
        Some(b'~') => -1,
        Some(c) if c.is_ascii_digit() => 0,
        Some(c) if c.is_ascii_alphabetic() => c as i32,
        Some(c) => c as i32 + 256,
    }
}

/// Compares one version part (upstream or revision) the way dpkg's `verrevcmp` does,
/// without limiting the length of digit runs.
pub fn compare_part(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        // Non-digit prefix.
        while (i < a.len() && !a[i].is_ascii_digit()) || (j < b.len() && !b[j].is_ascii_digit()) {
            let ac = order(a.get(i).copied().filter(|c| !c.is_ascii_digit()));
            let bc = order(b.get(j).copied().filter(|c| !c.is_ascii_digit()));
            if ac != bc {
                return ac.cmp(&bc);
            }
            i += 1;
            j += 1;
        }
        // Digit run: compare numerically, ignoring leading zeros, any length.
        while i < a.len() && a[i] == b'0' {
            i += 1;
        }
        while j < b.len() && b[j] == b'0' {
            j += 1;
        }
        let si = i;
        let sj = j;
        while i < a.len() && a[i].is_ascii_digit() {
            i += 1;
        }
        while j < b.len() && b[j].is_ascii_digit() {
            j += 1;
        }
        let (da, db) = (&a[si..i], &b[sj..j]);
        let c = da.len().cmp(&db.len()).then_with(|| da.cmp(db));
        if c != Ordering::Equal {
            return c;
        }
    }
    Ordering::Equal
}

impl Ord for DebVersion {
    fn cmp(&self, other: &Self) -> Ordering {
        self.epoch
            .cmp(&other.epoch)
            .then_with(|| compare_part(self.upstream(), other.upstream()))
            .then_with(|| compare_part(self.revision(), other.revision()))
    }
}

impl PartialOrd for DebVersion {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for DebVersion {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for DebVersion {}

/// Appends the canonical form of one part: the sequence of (non-digit run,
/// digit run without leading zeros) pairs, with trailing empty pairs dropped.
/// Two parts compare equal exactly when their canonical forms are equal.
fn canonical_part(part: &str, out: &mut Vec<u8>) {
    let b = part.as_bytes();
    let mut i = 0;
    let mut pairs: Vec<(&[u8], &[u8])> = Vec::new();
    while i < b.len() {
        let s = i;
        while i < b.len() && !b[i].is_ascii_digit() {
            i += 1;
        }
        let text = &b[s..i];
        while i < b.len() && b[i] == b'0' {
            i += 1;
        }
        let d = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        pairs.push((text, &b[d..i]));
    }
    while matches!(pairs.last(), Some((t, d)) if t.is_empty() && d.is_empty()) {
        pairs.pop();
    }
    for (t, d) in pairs {
        out.extend_from_slice(t);
        out.push(0);
        out.extend_from_slice(d);
        out.push(1);
    }
}

impl Hash for DebVersion {
    fn hash<H: Hasher>(&self, state: &mut H) {
        let mut key = Vec::with_capacity(self.text.len() + 8);
        key.extend_from_slice(&self.epoch.to_le_bytes());
        canonical_part(self.upstream(), &mut key);
        key.push(2);
        canonical_part(self.revision(), &mut key);
        key.hash(state);
    }
}

impl fmt::Display for DebVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for DebVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DebVersion({})", self.text)
    }
}

impl std::str::FromStr for DebVersion {
    type Err = VersionError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DebVersion::parse(s)
    }
}

impl serde::Serialize for DebVersion {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> serde::Deserialize<'de> for DebVersion {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        DebVersion::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> DebVersion {
        DebVersion::parse(s).unwrap()
    }

    #[test]
    fn documented_orderings() {
        let chain = ["1.0~rc1", "1.0", "1.0a", "1.0+dfsg"];
        for w in chain.windows(2) {
            assert!(v(w[0]) < v(w[1]), "{} < {}", w[0], w[1]);
        }
        assert_eq!(v("1."), v("1.0"));
        assert_eq!(v("1.0"), v("1.0-0"));
        assert_eq!(v("0:1.0"), v("1.0"));
        assert!(v("1:0.1") > v("9.9"));
        assert!(v("1.0~~") < v("1.0~"));
        assert!(v("1.0-1~bpo1") < v("1.0-1"));
        assert!(v("99999999999999999999999999.1") > v("99999999999999999999999998.9"));
    }

    #[test]
    fn revision_after_last_hyphen() {
        let x = v("1:2.3-4-5");
        assert_eq!(x.epoch(), 1);
        assert_eq!(x.upstream(), "2.3-4");
        assert_eq!(x.revision(), "5");
    }

    #[test]
    fn hash_agrees_with_eq() {
        use std::collections::hash_map::DefaultHasher;
        let h = |x: &DebVersion| {
            let mut s = DefaultHasher::new();
            x.hash(&mut s);
            s.finish()
        };
        for (a, b) in [
            ("1.", "1.0"),
            ("1.0", "1.0-0"),
            ("0:1.0", "1.0"),
            ("1.00", "1.0"),
            ("1.0-01", "1.0-1"),
        ] {
            assert_eq!(v(a), v(b));
            assert_eq!(h(&v(a)), h(&v(b)), "{a} vs {b}");
        }
    }

    #[test]
    fn rejects_garbage() {
        assert!(DebVersion::parse("").is_err());
        assert!(DebVersion::parse("a:1").is_err());
        assert!(DebVersion::parse("1 2").is_err());
        assert!(DebVersion::parse("1.0_x").is_err());
    }
}
