//! `[[step]]` tables: which action, which keys go with it, and their values
//! (modes, owners, image paths, unit names) checked with the span to point at.

use std::path::Path;

use sha2::{Digest, Sha256};
use toml::Spanned;

use super::error::{RecipeError, SourceText};
use super::parse::{Loader, Span, dir_of};
use super::raw::RawStep;
use super::{Step, StepAction, UserAccount};

/// The action keys of a `[[step]]`.
const STEP_ACTIONS: [&str; 8] = [
    "copy", "write", "run", "sysctl", "enable", "mask", "user", "group",
];

impl Loader<'_> {
    /// Validates one `[[step]]`; a `copy` source is resolved against the
    /// recipe's directory and hashed.
    pub(super) fn step(
        &self,
        src: &SourceText<'_>,
        recipe_path: &Path,
        s: &Spanned<RawStep>,
    ) -> Result<Step, RecipeError> {
        let header = s.span();
        let origin = src.origin(header.start);
        let s = s.get_ref();
        let set: Vec<(&str, Span)> = [
            ("copy", s.copy.as_ref().map(Spanned::span)),
            ("write", s.write.as_ref().map(Spanned::span)),
            ("run", s.run.as_ref().map(Spanned::span)),
            ("sysctl", s.sysctl.as_ref().map(Spanned::span)),
            ("enable", s.enable.as_ref().map(Spanned::span)),
            ("mask", s.mask.as_ref().map(Spanned::span)),
            ("user", s.user.as_ref().map(Spanned::span)),
            ("group", s.group.as_ref().map(Spanned::span)),
        ]
        .into_iter()
        .filter_map(|(k, span)| span.map(|sp| (k, sp)))
        .collect();
        let key = match set.as_slice() {
            [] => {
                return Err(src.error_hint(
                    header,
                    "step has no action",
                    Some(format!("set exactly one of {}", STEP_ACTIONS.join(", "))),
                ));
            }
            [(k, _)] => *k,
            [(a, _), (b, span), ..] => {
                return Err(src.error_hint(
                    span.clone(),
                    format!("step sets both `{a}` and `{b}`"),
                    Some("write one action per `[[step]]`".into()),
                ));
            }
        };
        // Keys that only go with some actions.
        let extra: [(&str, Option<Span>, &[&str]); 11] = [
            ("to", s.to.as_ref().map(Spanned::span), &["copy"]),
            ("content", s.content.as_ref().map(Spanned::span), &["write"]),
            (
                "mode",
                s.mode.as_ref().map(Spanned::span),
                &["copy", "write"],
            ),
            (
                "owner",
                s.owner.as_ref().map(Spanned::span),
                &["copy", "write"],
            ),
            ("uid", s.uid.as_ref().map(Spanned::span), &["user"]),
            ("gid", s.gid.as_ref().map(Spanned::span), &["group"]),
            ("groups", s.groups.as_ref().map(Spanned::span), &["user"]),
            ("shell", s.shell.as_ref().map(Spanned::span), &["user"]),
            ("home", s.home.as_ref().map(Spanned::span), &["user"]),
            (
                "system",
                s.system.as_ref().map(Spanned::span),
                &["user", "group"],
            ),
            (
                "password-hash",
                s.password_hash.as_ref().map(Spanned::span),
                &["user"],
            ),
        ];
        for (name, span, allowed) in extra {
            if let Some(span) = span
                && !allowed.contains(&key)
            {
                return Err(src.error(span, format!("`{name}` does not apply to a `{key}` step")));
            }
        }
        let mode = match &s.mode {
            None => 0o644,
            Some(m) => u32::from_str_radix(m.get_ref(), 8)
                .ok()
                .filter(|v| *v <= 0o7777 && !m.get_ref().is_empty())
                .ok_or_else(|| {
                    src.error_hint(
                        m.span(),
                        format!("invalid mode `{}`", m.get_ref()),
                        Some("write octal permission bits as a string, e.g. \"0644\"".into()),
                    )
                })?,
        };
        let owner = match &s.owner {
            None => None,
            Some(o) => Some(
                o.get_ref()
                    .split_once(':')
                    .and_then(|(u, g)| Some((u.parse().ok()?, g.parse().ok()?)))
                    .ok_or_else(|| {
                        src.error_hint(
                            o.span(),
                            format!("invalid owner `{}`", o.get_ref()),
                            Some("write numeric `uid:gid`, e.g. \"0:0\"".into()),
                        )
                    })?,
            ),
        };
        let image_path = |p: &Spanned<String>| -> Result<String, RecipeError> {
            let v = p.get_ref();
            let ok = v.starts_with('/')
                && v.len() > 1
                && !v.ends_with('/')
                && !v.contains('\0')
                && v.split('/')
                    .skip(1)
                    .all(|c| !c.is_empty() && c != "." && c != "..");
            if ok {
                Ok(v.clone())
            } else {
                Err(src.error_hint(
                    p.span(),
                    format!("invalid path in the image `{v}`"),
                    Some("give an absolute file path without `.`, `..` or `//`".into()),
                ))
            }
        };
        let units = |list: &Spanned<Vec<Spanned<String>>>| -> Result<Vec<String>, RecipeError> {
            if list.get_ref().is_empty() {
                return Err(src.error(list.span(), format!("`{key}` lists no units")));
            }
            list.get_ref()
                .iter()
                .map(|u| {
                    let v = u.get_ref();
                    let ok = v.contains('.')
                        && !v.starts_with('.')
                        && v.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"-_.@:\\".contains(&b));
                    if ok {
                        Ok(v.clone())
                    } else {
                        Err(src.error_hint(
                            u.span(),
                            format!("invalid unit name `{v}`"),
                            Some("give a unit file name, e.g. `ssh.service`".into()),
                        ))
                    }
                })
                .collect()
        };
        let action = match key {
            "copy" => {
                let from = s.copy.as_ref().expect("copy is set");
                let Some(to) = &s.to else {
                    return Err(src.error_hint(
                        from.span(),
                        "`copy` step has no `to`",
                        Some("add `to = \"/absolute/path/in/the/image\"`".into()),
                    ));
                };
                let to = image_path(to)?;
                let dir = dir_of(recipe_path);
                let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
                let source = dir.join(from.get_ref());
                // Confined to the recipe's directory (no absolute path, `..`
                // or symlink out of it) and bounded: see core::bounded.
                let read = crate::core::bounded::read_beneath(
                    &dir,
                    from.get_ref(),
                    crate::core::bounded::MAX_COPY,
                );
                let bytes = read.map(|(_, bytes)| bytes).map_err(|e| {
                    let what = if e.kind() == std::io::ErrorKind::NotFound {
                        "not found".to_string()
                    } else {
                        format!("cannot be read: {e}")
                    };
                    src.error_hint(
                        from.span(),
                        format!(
                            "`copy` source `{}` {what} ({})",
                            from.get_ref(),
                            self.display(&source)
                        ),
                        Some("`copy` paths are relative to the recipe's directory".into()),
                    )
                })?;
                StepAction::Copy {
                    from: from.get_ref().clone(),
                    source,
                    sha256: hex::encode(Sha256::digest(&bytes)),
                    to,
                    mode,
                    owner,
                }
            }
            "write" => {
                let path = s.write.as_ref().expect("write is set");
                let Some(content) = &s.content else {
                    return Err(src.error_hint(
                        path.span(),
                        "`write` step has no `content`",
                        Some("add `content = \"…\"` (it may be empty)".into()),
                    ));
                };
                StepAction::Write {
                    path: image_path(path)?,
                    content: content.get_ref().clone(),
                    mode,
                    owner,
                }
            }
            "run" => {
                let argv = s.run.as_ref().expect("run is set");
                if argv
                    .get_ref()
                    .first()
                    .is_none_or(|a| a.get_ref().is_empty())
                {
                    return Err(src.error_hint(
                        argv.span(),
                        "`run` needs a program",
                        Some("give the argv, e.g. [\"sh\", \"-c\", \"…\"]".into()),
                    ));
                }
                StepAction::Run {
                    argv: argv.get_ref().iter().map(|a| a.get_ref().clone()).collect(),
                }
            }
            "sysctl" => {
                let table = s.sysctl.as_ref().expect("sysctl is set");
                if table.get_ref().is_empty() {
                    return Err(src.error(table.span(), "`sysctl` sets nothing"));
                }
                let mut settings = std::collections::BTreeMap::new();
                for (k, v) in table.get_ref() {
                    let key_ok = !k.is_empty()
                        && k.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"._-/*".contains(&b));
                    if !key_ok {
                        return Err(src.error(v.span(), format!("invalid sysctl key `{k}`")));
                    }
                    if v.get_ref().contains(['\n', '\r']) {
                        return Err(src.error(
                            v.span(),
                            format!("sysctl `{k}`: the value must be a single line"),
                        ));
                    }
                    settings.insert(k.clone(), v.get_ref().trim().to_string());
                }
                StepAction::Sysctl { settings }
            }
            "enable" => StepAction::Enable {
                units: units(s.enable.as_ref().expect("enable is set"))?,
            },
            "mask" => StepAction::Mask {
                units: units(s.mask.as_ref().expect("mask is set"))?,
            },
            "group" => StepAction::Group {
                name: account_name(src, s.group.as_ref().expect("group is set"))?,
                gid: s.gid.as_ref().map(|g| *g.get_ref()),
                system: s.system.as_ref().is_some_and(|b| *b.get_ref()),
            },
            _ => {
                let groups = match &s.groups {
                    None => Vec::new(),
                    Some(list) => list
                        .get_ref()
                        .iter()
                        .map(|g| account_name(src, g))
                        .collect::<Result<_, _>>()?,
                };
                let password_hash = match &s.password_hash {
                    Some(h) if h.get_ref().contains([':', '\n', '\r']) => {
                        return Err(src.error_hint(
                            h.span(),
                            "invalid `password-hash`",
                            Some("give a crypt(3) hash from `mkpasswd`, or \"\" for none".into()),
                        ));
                    }
                    h => h.as_ref().map(|h| h.get_ref().clone()),
                };
                StepAction::User(UserAccount {
                    name: account_name(src, s.user.as_ref().expect("user is set"))?,
                    uid: s.uid.as_ref().map(|u| *u.get_ref()),
                    groups,
                    shell: s.shell.as_ref().map(&image_path).transpose()?,
                    home: s.home.as_ref().map(&image_path).transpose()?,
                    system: s.system.as_ref().is_some_and(|b| *b.get_ref()),
                    password_hash,
                })
            }
        };
        Ok(Step { action, origin })
    }
}

/// A user or group name as `useradd` accepts it by default (Debian's
/// NAME_REGEX without its extensions): lowercase letters, digits, `_` and
/// `-`, not starting with a digit or `-`, at most 32 bytes.
fn account_name(src: &SourceText<'_>, n: &Spanned<String>) -> Result<String, RecipeError> {
    let v = n.get_ref();
    let ok = (1..=32).contains(&v.len())
        && v.bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b == b'_')
        && v.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_-".contains(&b));
    if ok {
        Ok(v.clone())
    } else {
        Err(src.error_hint(
            n.span(),
            format!("invalid user or group name `{v}`"),
            Some("use lowercase letters, digits, `_` and `-`, starting with a letter".into()),
        ))
    }
}
