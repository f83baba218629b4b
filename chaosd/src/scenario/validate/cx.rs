//! What every check shares: positions in a file, the YAML parser's errors put into words, `did
//! you mean` suggestions, and [`Cx`], which substitutes `${NAME}`, parses a value and reports a
//! problem at its position.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use serde_saphyr::{MessageFormatter, Spanned, UserMessageFormatter};

use super::super::error::Problem;
use super::super::model::{Command, Pattern};
use super::super::raw::*;
use super::super::values;
use super::super::vars;

/// One file being checked: the scenario or the inventory.
pub(crate) struct Source {
    /// The path as the user gave it, for messages.
    pub display: PathBuf,
    pub text: String,
    /// Where its relative paths point.
    pub base_dir: PathBuf,
}

/// A problem and the width of its caret.
pub(crate) type Found = (Problem, usize);

/// A position in the current file.
#[derive(Debug, Clone, Copy)]
pub(super) struct Pos {
    pub(super) line: usize,
    pub(super) column: usize,
    pub(super) width: usize,
}

pub(super) const FILE_START: Pos = Pos {
    line: 1,
    column: 1,
    width: 1,
};

pub(super) fn pos<T>(s: &Spanned<T>) -> Pos {
    let loc = s.referenced;
    Pos {
        line: loc.line() as usize,
        column: loc.column() as usize,
        width: loc.span().len() as usize,
    }
}

/// Parses one file's YAML into `T`; a syntax or type error stops at the first.
pub(crate) fn parse_yaml<T: serde::de::DeserializeOwned>(src: &Source) -> Result<T, Found> {
    let options = serde_saphyr::options! { with_snippet: false };
    serde_saphyr::from_str_with_options(&src.text, options).map_err(|err| {
        let (line, column) = err
            .location()
            .map(|l| (l.line() as usize, l.column() as usize))
            .unwrap_or((0, 0));
        let (message, help, width) = yaml_message(err.without_snippet());
        let problem = Problem {
            file: src.display.clone(),
            line,
            column,
            message,
            help,
        };
        (problem, width)
    })
}

fn yaml_message(err: &serde_saphyr::Error) -> (String, Option<String>, usize) {
    use serde_saphyr::Error as E;
    match err {
        E::SerdeUnknownField {
            field, expected, ..
        } => (
            format!("unknown key `{field}`"),
            Some(suggest(field, expected.iter().copied())),
            field.chars().count(),
        ),
        E::Unexpected { expected, .. } => {
            let expected = match *expected {
                "mapping start" => "a mapping (`key: value` lines or `{...}`)",
                "sequence start" => "a list (`- item` lines or `[...]`)",
                "string scalar" => "a single value, not a list or a mapping",
                other => other,
            };
            (format!("expected {expected}"), None, 1)
        }
        E::SerdeInvalidType {
            unexpected,
            expected,
            ..
        } => (format!("expected {expected}, found {unexpected}"), None, 1),
        E::Eof { .. } => ("the file is empty".into(), None, 1),
        E::DuplicateMappingKey { key: Some(key), .. } => (
            format!("key `{key}` is given twice"),
            None,
            key.chars().count(),
        ),
        other => {
            let message = UserMessageFormatter.format_message(other).into_owned();
            let message = match message.find(" at line ") {
                Some(at) => message[..at].to_string(),
                None => message,
            };
            (message, None, 1)
        }
    }
}

/// `did you mean `x`?` when a known word is near, else the list of known words.
fn suggest<'a>(word: &str, known: impl IntoIterator<Item = &'a str>) -> String {
    let known: Vec<&str> = known.into_iter().collect();
    let best = known
        .iter()
        .map(|k| (strsim::damerau_levenshtein(word, k), *k))
        .min();
    match best {
        Some((distance, k)) if distance <= (word.chars().count() / 3).max(1) => {
            format!("did you mean `{k}`?")
        }
        _ => {
            let list: Vec<String> = known.iter().map(|k| format!("`{k}`")).collect();
            format!("expected one of {}", list.join(", "))
        }
    }
}

pub(super) fn near<'a>(word: &str, known: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let help = suggest(word, known);
    help.starts_with("did you mean").then_some(help)
}

/// Makes `path` absolute against `base`, dropping `.` components.
pub(super) fn resolve_path(base: &Path, path: &str) -> PathBuf {
    let path = Path::new(path);
    if path.is_absolute() {
        return path.to_path_buf();
    }
    let mut out = base.to_path_buf();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// The context of a check: the files, the variables, and the problems found so far.
pub(super) struct Cx<'a> {
    pub(super) srcs: &'a [Source],
    /// The file the raw values being checked come from.
    pub(super) cur: usize,
    pub(super) vars: &'a BTreeMap<String, String>,
    pub(super) found: Vec<Found>,
}

impl Cx<'_> {
    pub(super) fn report(&mut self, at: Pos, message: impl Into<String>, help: Option<String>) {
        let problem = Problem {
            file: self.srcs[self.cur].display.clone(),
            line: at.line,
            column: at.column,
            message: message.into(),
            help,
        };
        self.found.push((problem, at.width));
    }

    pub(super) fn error(&mut self, at: Pos, message: impl Into<String>) {
        self.report(at, message, None);
    }

    pub(super) fn base_dir(&self) -> PathBuf {
        self.srcs[self.cur].base_dir.clone()
    }

    /// Substitutes `${NAME}` in a raw scalar written at `loc`.
    pub(super) fn subst(&mut self, raw: &str, loc: &serde_saphyr::Location) -> Option<String> {
        let vars = self.vars;
        let lookup = |name: &str| vars.get(name).cloned().or_else(|| std::env::var(name).ok());
        match vars::substitute(raw, lookup) {
            Ok(text) => Some(text),
            Err(err) => {
                let at = self.locate(raw, err.offset, loc);
                self.report(at, err.message, err.help);
                None
            }
        }
    }

    /// The position of the `${...}` at byte `offset` of `raw`, found in the file from `loc` on;
    /// the value's own position when it cannot be found (an escaped quoted string).
    pub(super) fn locate(&self, raw: &str, offset: usize, loc: &serde_saphyr::Location) -> Pos {
        let whole = Pos {
            line: loc.line() as usize,
            column: loc.column() as usize,
            width: loc.span().len() as usize,
        };
        let needle_end = raw[offset..]
            .find('}')
            .map_or(raw.len(), |i| offset + i + 1);
        let needle = &raw[offset..needle_end];
        let text = &self.srcs[self.cur].text;
        let Some(start) = loc.span().byte_offset().map(|b| b as usize) else {
            return whole;
        };
        let Some(found) = text.get(start..).and_then(|rest| rest.find(needle)) else {
            return whole;
        };
        let at = start + found;
        let line_start = text[..at].rfind('\n').map_or(0, |i| i + 1);
        Pos {
            line: text[..at].matches('\n').count() + 1,
            column: text[line_start..at].chars().count() + 1,
            width: needle.chars().count(),
        }
    }

    pub(super) fn text(&mut self, v: &Sp<Scalar>) -> Option<String> {
        self.subst(&v.value.0, &v.referenced)
    }

    /// Substitutes and parses a value, reporting a failure at its position.
    pub(super) fn get<T>(
        &mut self,
        v: &Sp<Scalar>,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        let text = self.text(v)?;
        match parse(&text) {
            Ok(value) => Some(value),
            Err(message) => {
                self.error(pos(v), message);
                None
            }
        }
    }

    /// Like `get`, for an optional key: `None` when absent or invalid.
    pub(super) fn opt<T>(
        &mut self,
        v: &Option<Sp<Scalar>>,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        v.as_ref().and_then(|v| self.get(v, parse))
    }

    /// Like `get`, for a required key: reports `missing `key`` at `at` when absent.
    pub(super) fn req<T>(
        &mut self,
        v: &Option<Sp<Scalar>>,
        at: Pos,
        key: &str,
        what: &str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        match v {
            Some(v) => self.get(v, parse),
            None => {
                self.error(at, format!("{what} needs `{key}`"));
                None
            }
        }
    }

    pub(super) fn string(&mut self, v: &Option<Sp<Scalar>>) -> Option<String> {
        self.opt(v, |s| Ok(s.to_string()))
    }

    pub(super) fn duration(&mut self, v: &Option<Sp<Scalar>>) -> Option<Duration> {
        self.opt(v, values::parse_scenario_duration)
    }

    /// A duration that must be more than zero.
    pub(super) fn positive(&mut self, v: &Option<Sp<Scalar>>, key: &str) -> Option<Duration> {
        self.opt(v, |s| match values::parse_scenario_duration(s)? {
            d if d.is_zero() => Err(format!("`{key}` must be more than 0s")),
            d => Ok(d),
        })
    }

    pub(super) fn command(&mut self, run: &Sp<ScalarOrList>, what: &str) -> Option<Command> {
        match &run.value {
            ScalarOrList::Single(script) => {
                let script = self.subst(script, &run.referenced)?;
                if script.trim().is_empty() {
                    self.error(pos(run), format!("{what} has an empty `run`"));
                    return None;
                }
                Some(Command::Shell(script))
            }
            ScalarOrList::List(items) => {
                let mut argv = Vec::with_capacity(items.len());
                for item in items {
                    argv.push(self.text(item)?);
                }
                let Some(program) = argv.first_mut() else {
                    self.error(pos(run), format!("{what} has an empty `run`"));
                    return None;
                };
                if program.contains('/') {
                    *program = resolve_path(&self.base_dir(), program)
                        .to_string_lossy()
                        .into_owned();
                }
                Some(Command::Argv(argv))
            }
        }
    }

    pub(super) fn regex(&mut self, v: &Option<Sp<Scalar>>) -> Option<Pattern> {
        self.opt(v, |s| {
            Pattern::new(s).map_err(|err| {
                format!(
                    "`{s}` is not a valid regex: {}",
                    Pattern::error_detail(&err)
                )
            })
        })
    }
}
