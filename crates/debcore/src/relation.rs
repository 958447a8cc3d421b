//! Debian relation fields: `a (>= 1.0) | b:any, c`.
//!
//! Parsed into [`Dependency`] groups of alternatives ([`Relation`]s). The same
//! syntax is used for Depends, Pre-Depends, Recommends, Conflicts, Breaks,
//! Provides (only `=` allowed there) and the requirements written in recipes.

use std::fmt;

use crate::version::DebVersion;

/// Version comparison operators of Debian relations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Op {
    /// `<<`
    Lt,
    /// `<=` (and the obsolete `<`)
    Le,
    /// `=`
    Eq,
    /// `>=` (and the obsolete `>`)
    Ge,
    /// `>>`
    Gt,
}

impl Op {
    /// Whether `candidate OP bound` holds.
    pub fn holds(self, candidate: &DebVersion, bound: &DebVersion) -> bool {
        let o = candidate.cmp(bound);
        match self {
            Op::Lt => o.is_lt(),
            Op::Le => o.is_le(),
            Op::Eq => o.is_eq(),
            Op::Ge => o.is_ge(),
            Op::Gt => o.is_gt(),
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Op::Lt => "<<",
            Op::Le => "<=",
            Op::Eq => "=",
            Op::Ge => ">=",
            Op::Gt => ">>",
        }
    }
}

/// A version constraint `(OP VERSION)`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Constraint {
    /// The operator.
    pub op: Op,
    /// The version on the right-hand side.
    pub version: DebVersion,
}

impl Constraint {
    /// Whether `v` satisfies the constraint.
    pub fn matches(&self, v: &DebVersion) -> bool {
        self.op.holds(v, &self.version)
    }
}

/// The architecture qualifier of a relation (`foo:any`, `foo:amd64`, `foo`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ArchQual {
    /// No qualifier: the depending package's own architecture.
    Implicit,
    /// `:any` — any architecture, if the target is `Multi-Arch: allowed`.
    Any,
    /// `:native`.
    Native,
    /// An explicit architecture such as `:i386`.
    Named(String),
}

/// One alternative: `name[:arch] [(op version)]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Relation {
    /// Package (or virtual package) name.
    pub name: String,
    /// Architecture qualifier.
    pub arch: ArchQual,
    /// Optional version constraint.
    pub constraint: Option<Constraint>,
}

/// A group of alternatives (`a | b | c`); satisfied by any one of them.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Dependency {
    /// The alternatives in the order written (apt prefers the leftmost).
    pub alternatives: Vec<Relation>,
}

/// A malformed relation string.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid relation `{text}`: {reason}")]
pub struct RelationError {
    /// The text that failed to parse.
    pub text: String,
    /// What is wrong.
    pub reason: String,
}

fn valid_name(n: &str) -> bool {
    // Policy: lowercase letters, digits, + - . ; at least two chars. Be lenient
    // on case and length for third-party repositories, strict on the charset.
    !n.is_empty()
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-._".contains(&b))
        && n.as_bytes()[0].is_ascii_alphanumeric()
}

/// CPU names of dpkg's cputable and ABI variants (`dpkg-architecture -L`,
/// last component).
const ARCH_CPUS: &[&str] = &[
    "alpha",
    "amd64",
    "arc",
    "arm",
    "arm64",
    "arm64ilp32",
    "armeb",
    "armel",
    "armhf",
    "avr32",
    "hppa",
    "i386",
    "ia64",
    "loong64",
    "m32r",
    "m68k",
    "mips",
    "mips64",
    "mips64el",
    "mips64r6",
    "mips64r6el",
    "mipsel",
    "mipsn32",
    "mipsn32el",
    "mipsn32r6",
    "mipsn32r6el",
    "mipsr6",
    "mipsr6el",
    "nios2",
    "or1k",
    "powerpc",
    "powerpcel",
    "powerpcspe",
    "ppc64",
    "ppc64el",
    "riscv64",
    "s390",
    "s390x",
    "sh3",
    "sh3eb",
    "sh4",
    "sh4eb",
    "sparc",
    "sparc64",
    "tilegx",
    "x32",
];

/// The OS/ABI prefixes of non-Linux-glibc Debian architectures
/// (`hurd-i386`, `musl-linux-amd64`).
const ARCH_PREFIXES: &[&str] = &[
    "aix",
    "darwin",
    "dragonflybsd",
    "freebsd",
    "hurd",
    "kfreebsd",
    "knetbsd",
    "kopensolaris",
    "mint",
    "musl-linux",
    "netbsd",
    "openbsd",
    "solaris",
    "uclibc-linux",
    "uclinux",
];

/// Whether `a` is a Debian architecture name as dpkg knows them
/// (`[PREFIX-]CPU`): what an explicit `:arch` qualifier may name.
pub fn is_debian_arch(a: &str) -> bool {
    let (prefix, cpu) = a.rsplit_once('-').unwrap_or(("", a));
    ARCH_CPUS.contains(&cpu) && (prefix.is_empty() || ARCH_PREFIXES.contains(&prefix))
}

/// Byte index of the first of `chars` that is not inside `( )`.
fn first_outside_parens(s: &str, chars: &[char]) -> Option<usize> {
    let mut depth = 0i32;
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            c if depth == 0 && chars.contains(&c) => return Some(i),
            _ => {}
        }
    }
    None
}

impl Relation {
    /// Parses one alternative.
    pub fn parse(text: &str) -> Result<Relation, RelationError> {
        let err = |reason: &str| RelationError {
            text: text.trim().to_string(),
            reason: reason.to_string(),
        };
        let mut rest = text.trim();
        // Drop architecture restrictions `[...]` and build profiles `<...>`:
        // they matter only for source packages.
        if let Some(i) = first_outside_parens(rest, &['[', '<']) {
            rest = rest[..i].trim_end();
        }
        let (head, constraint) = match rest.find('(') {
            Some(i) => {
                let close = rest.rfind(')').ok_or_else(|| err("missing `)`"))?;
                if close < i || !rest[close + 1..].trim().is_empty() {
                    return Err(err("text after `)`"));
                }
                let inner = rest[i + 1..close].trim();
                let split = inner
                    .find(|c: char| !"<>=".contains(c))
                    .ok_or_else(|| err("missing version"))?;
                let op = match &inner[..split] {
                    "<<" => Op::Lt,
                    "<=" | "<" => Op::Le,
                    "=" => Op::Eq,
                    ">=" | ">" => Op::Ge,
                    ">>" => Op::Gt,
                    "" => return Err(err("missing operator (one of << <= = >= >>)")),
                    _ => return Err(err("unknown operator (use one of << <= = >= >>)")),
                };
                let version =
                    DebVersion::parse(inner[split..].trim()).map_err(|e| err(e.reason))?;
                (rest[..i].trim(), Some(Constraint { op, version }))
            }
            None => {
                if rest.contains(')') {
                    return Err(err("unbalanced `)`"));
                }
                (rest, None)
            }
        };
        let (name, arch) = match head.split_once(':') {
            Some((n, "any")) => (n, ArchQual::Any),
            Some((n, "native")) => (n, ArchQual::Native),
            Some((n, a)) if is_debian_arch(a) => (n, ArchQual::Named(a.to_string())),
            Some((_, a)) => {
                return Err(err(&format!(
                    "bad architecture qualifier `:{a}` (use `:any`, `:native` or a Debian architecture name such as `:amd64`)"
                )));
            }
            None => (head, ArchQual::Implicit),
        };
        if name.is_empty() {
            return Err(err("missing package name"));
        }
        if !valid_name(name) {
            return Err(err("invalid package name"));
        }
        Ok(Relation {
            name: name.to_string(),
            arch,
            constraint,
        })
    }
}

impl Dependency {
    /// Parses one `a | b` group.
    pub fn parse(text: &str) -> Result<Dependency, RelationError> {
        let parts: Vec<&str> = text.split('|').collect();
        // `app |` or `| app`: say so, rather than quote an empty relation.
        if parts.len() > 1 && parts.iter().any(|p| p.trim().is_empty()) {
            return Err(RelationError {
                text: text.trim().to_string(),
                reason: "empty alternative around `|`".into(),
            });
        }
        let alternatives = parts
            .into_iter()
            .map(Relation::parse)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Dependency { alternatives })
    }
}

/// Parses a whole relation field (comma-separated groups). Empty groups
/// (trailing commas) are ignored as dpkg does.
pub fn parse_field(text: &str) -> Result<Vec<Dependency>, RelationError> {
    text.split(',')
        .filter(|g| !g.trim().is_empty())
        .map(Dependency::parse)
        .collect()
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Constraint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "({} {})", self.op, self.version)
    }
}

impl fmt::Display for Relation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        match &self.arch {
            ArchQual::Implicit => {}
            ArchQual::Any => f.write_str(":any")?,
            ArchQual::Native => f.write_str(":native")?,
            ArchQual::Named(a) => write!(f, ":{a}")?,
        }
        if let Some(c) = &self.constraint {
            write!(f, " {c}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Dependency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.alternatives.iter().enumerate() {
            if i > 0 {
                f.write_str(" | ")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_field() {
        let deps =
            parse_field("libc6 (>= 2.34), debconf (>= 0.5) | debconf-2.0, python3:any (<< 3.12),")
                .unwrap();
        assert_eq!(deps.len(), 3);
        assert_eq!(deps[1].alternatives.len(), 2);
        assert_eq!(deps[1].alternatives[1].name, "debconf-2.0");
        assert_eq!(deps[2].alternatives[0].arch, ArchQual::Any);
        let c = deps[2].alternatives[0].constraint.as_ref().unwrap();
        assert_eq!(c.op, Op::Lt);
        assert_eq!(c.version.as_str(), "3.12");
        assert_eq!(deps[0].to_string(), "libc6 (>= 2.34)");
    }

    #[test]
    fn arch_qualifiers_are_debian_names() {
        for ok in [
            "foo:amd64",
            "foo:i386",
            "foo:hurd-i386",
            "foo:musl-linux-arm64",
            "foo:any",
        ] {
            assert!(Dependency::parse(ok).is_ok(), "{ok}");
        }
        let e = Dependency::parse("foo:badarch").unwrap_err().to_string();
        assert!(e.contains("`:badarch`") && e.contains("foo:badarch"), "{e}");
    }

    #[test]
    fn empty_alternatives_are_named() {
        for bad in ["app |", "| app", "a || b"] {
            let e = Dependency::parse(bad).unwrap_err();
            assert_eq!(e.text, bad.trim());
            assert!(e.reason.contains("empty alternative"), "{bad}: {e}");
        }
    }

    #[test]
    fn tolerates_spacing_and_old_operators() {
        let d = Dependency::parse("foo(>=1.0)").unwrap();
        assert_eq!(d.to_string(), "foo (>= 1.0)");
        let d = Dependency::parse("foo (> 1.0)").unwrap();
        assert_eq!(d.alternatives[0].constraint.as_ref().unwrap().op, Op::Ge);
        let d = Dependency::parse("foo [amd64] <!nocheck>").unwrap();
        assert_eq!(d.to_string(), "foo");
    }

    #[test]
    fn rejects_bad_input() {
        for bad in [
            "",
            "foo (>= )",
            "foo (~ 1)",
            "foo (>= 1",
            "fo o",
            "foo (>= 1) bar",
            "foo:",
            "foo:badarch",
            "foo:linux-any",
            "foo:bogus-amd64",
        ] {
            assert!(
                Dependency::parse(bad).is_err(),
                "{bad:?} should be rejected"
            );
        }
    }
}
