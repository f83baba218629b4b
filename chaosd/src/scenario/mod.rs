//! Scenario files: the YAML surface, its checks, and the validated model a run works from.
//!
//! [`load`] reads a file (and an optional inventory), checks it against spec v1 and resolves it
//! into a [`model::Scenario`]; every problem found is reported at once in a [`ScenarioError`],
//! each at `FILE:LINE:COLUMN` with the source line and a caret.
//!
//! `${NAME}` in any string value is replaced by `LoadOptions::vars[NAME]`, else the environment
//! variable NAME; `${NAME:-default}` (an extension of spec v1) falls back to `default`, and `$${`
//! is a literal `${` (see [`vars`]).

pub mod error;
mod hosts_from;
pub mod lint;
pub mod model;
mod raw;
pub mod schema;
mod validate;
pub mod values;
pub mod vars;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

pub use error::{Problem, ScenarioError};
pub use values::{format_duration, parse_duration};

use validate::Source;

/// What a scenario is loaded with besides its file.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// `--var NAME=VALUE`: looked up before the environment for `${NAME}`.
    pub vars: BTreeMap<String, String>,
    /// `--inventory FILE`: more `hosts:` and `targets:`.
    pub inventory: Option<PathBuf>,
    /// The client certificate and key for every agent host that names none of its own
    /// (chaosd's top-level `cert_file` and `key_file`).
    pub client_cert: Option<(PathBuf, PathBuf)>,
}

impl LoadOptions {
    /// Gives `client_cert` to the agent hosts without a `cert_file` of their own.
    fn fill_client_cert<'h>(&self, hosts: impl Iterator<Item = &'h mut model::Host>) {
        let Some((cert, key)) = &self.client_cert else {
            return;
        };
        for host in hosts {
            if host.agent.is_some() && host.cert_file.is_none() && host.key_file.is_none() {
                host.cert_file = Some(cert.clone());
                host.key_file = Some(key.clone());
            }
        }
    }
}

/// Reads, checks and resolves the scenario at `path`.
pub fn load(path: &Path, opts: &LoadOptions) -> Result<model::Scenario, ScenarioError> {
    let bytes = read_bounded(path)?;
    load_bytes(path, &bytes, opts)
}

/// Checks and resolves a scenario given as text; `path_for_messages` names it in errors and its
/// folder is the scenario's `base_dir`.
pub fn load_str(
    path_for_messages: &Path,
    text: &str,
    opts: &LoadOptions,
) -> Result<model::Scenario, ScenarioError> {
    load_bytes(path_for_messages, text.as_bytes(), opts)
}

/// Checks and resolves a scenario given as text, named `path_for_messages` in errors, whose
/// relative paths resolve against `base_dir` (chaosd: a folder of the run's own).
pub fn load_text_in(
    path_for_messages: &Path,
    base_dir: &Path,
    text: &str,
    opts: &LoadOptions,
) -> Result<model::Scenario, ScenarioError> {
    load_bytes_in(path_for_messages, Some(base_dir), text.as_bytes(), opts)
}

fn load_bytes(
    path: &Path,
    bytes: &[u8],
    opts: &LoadOptions,
) -> Result<model::Scenario, ScenarioError> {
    load_bytes_in(path, None, bytes, opts)
}

fn load_bytes_in(
    path: &Path,
    base_dir: Option<&Path>,
    bytes: &[u8],
    opts: &LoadOptions,
) -> Result<model::Scenario, ScenarioError> {
    let sha256 = Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>();
    let text = utf8_text(path, bytes)?;
    let abs_path = match base_dir {
        Some(dir) => dir.join(path.file_name().unwrap_or(path.as_os_str())),
        None => absolute(path),
    };
    let mut srcs = vec![Source {
        display: path.to_path_buf(),
        text,
        base_dir: base_dir.map_or_else(|| folder_of(&abs_path), Path::to_path_buf),
    }];
    if let Some(inventory) = &opts.inventory {
        let bytes = read_bounded(inventory)?;
        let text = utf8_text(inventory, &bytes)?;
        srcs.push(Source {
            display: inventory.clone(),
            text,
            base_dir: folder_of(&absolute(inventory)),
        });
    }
    let fail = |found: Vec<validate::Found>, srcs: &[Source]| {
        let sources = srcs
            .iter()
            .map(|s| (s.display.clone(), s.text.clone()))
            .collect();
        ScenarioError::new(found, sources)
    };
    let blank = |l: &str| l.trim().is_empty() || l.trim_start().starts_with('#');
    if srcs[0].text.lines().all(blank) {
        let problem = Problem {
            file: path.to_path_buf(),
            line: 1,
            column: 1,
            message: "the file is empty".into(),
            help: Some("a scenario starts with `version: 1`".into()),
        };
        return Err(fail(vec![(problem, 1)], &srcs));
    }
    let file = validate::parse_yaml::<raw::FileRaw>(&srcs[0]).map_err(|f| fail(vec![f], &srcs))?;
    let inventory = match srcs.get(1) {
        Some(src) => {
            Some(validate::parse_yaml::<raw::InventoryRaw>(src).map_err(|f| fail(vec![f], &srcs))?)
        }
        None => None,
    };
    let hosts_output = match &inventory {
        Some(inventory) => {
            run_hosts_from(&mut srcs, 1, inventory, &opts.vars).map_err(|f| fail(f, &srcs))?
        }
        None => None,
    };
    let input = validate::Input {
        srcs: &srcs,
        file,
        inventory,
        hosts_output,
        vars: &opts.vars,
        path: abs_path,
        sha256,
    };
    let mut scenario = validate::resolve(input).map_err(|found| fail(found, &srcs))?;
    opts.fill_client_cert(scenario.hosts.values_mut());
    Ok(scenario)
}

/// Reads and checks an inventory file on its own: its hosts, by name (`local` not included).
pub fn load_inventory(
    path: &Path,
    opts: &LoadOptions,
) -> Result<BTreeMap<String, model::Host>, ScenarioError> {
    let bytes = read_bounded(path)?;
    let text = utf8_text(path, &bytes)?;
    let mut srcs = vec![Source {
        display: path.to_path_buf(),
        text,
        base_dir: folder_of(&absolute(path)),
    }];
    let fail = |found: Vec<validate::Found>, srcs: &[Source]| {
        let sources = srcs
            .iter()
            .map(|s| (s.display.clone(), s.text.clone()))
            .collect();
        ScenarioError::new(found, sources)
    };
    let inventory =
        validate::parse_yaml::<raw::InventoryRaw>(&srcs[0]).map_err(|f| fail(vec![f], &srcs))?;
    let output =
        run_hosts_from(&mut srcs, 0, &inventory, &opts.vars).map_err(|f| fail(f, &srcs))?;
    let mut hosts = validate::resolve_inventory(&srcs, &inventory, output.as_ref(), &opts.vars)
        .map_err(|f| fail(f, &srcs))?;
    opts.fill_client_cert(hosts.values_mut());
    Ok(hosts)
}

/// Runs the `hosts_from` command of the inventory `srcs[index]`, if it has one, and parses what
/// it printed, which is added to `srcs` (its problems point into it).
fn run_hosts_from(
    srcs: &mut Vec<Source>,
    index: usize,
    inventory: &raw::InventoryRaw,
    vars: &BTreeMap<String, String>,
) -> Result<Option<raw::HostsOutputRaw>, Vec<validate::Found>> {
    let Some(raw) = &inventory.hosts_from else {
        return Ok(None);
    };
    let (command, timeout) = validate::hosts_from_command(srcs, index, raw, vars)?;
    let dir = srcs[index].base_dir.clone();
    let text = hosts_from::run(&command, &dir, timeout).map_err(|failure| {
        vec![validate::hosts_from_problem(
            srcs,
            index,
            raw,
            failure.message,
            failure.help,
        )]
    })?;
    let mut display = srcs[index].display.clone().into_os_string();
    display.push(" (hosts_from output)");
    srcs.push(Source {
        display: display.into(),
        text,
        base_dir: dir,
    });
    let output =
        validate::parse_yaml::<raw::HostsOutputRaw>(&srcs[srcs.len() - 1]).map_err(|f| vec![f])?;
    if output.hosts.as_ref().is_none_or(|h| h.0.is_empty()) {
        return Err(vec![validate::hosts_from_problem(
            srcs,
            index,
            raw,
            "`hosts_from` printed no hosts".into(),
            Some("it must print `hosts:` as in an inventory (YAML or JSON); an empty fleet is never assumed".into()),
        )]);
    }
    Ok(Some(output))
}

/// The most a scenario or inventory file may hold. Real ones are a few KiB; the bound keeps a
/// wrong file (a log, a disk image) from being read whole and parsed.
pub const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// The file's bytes, refused with a clear error past [`MAX_FILE_BYTES`] (without reading more).
fn read_bounded(path: &Path) -> Result<Vec<u8>, ScenarioError> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|err| ScenarioError::io(path, &err))?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|err| ScenarioError::io(path, &err))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        let problem = Problem {
            file: path.to_path_buf(),
            line: 1,
            column: 1,
            message: format!(
                "the file is over {} MiB, more than a scenario or inventory may be",
                MAX_FILE_BYTES / (1024 * 1024)
            ),
            help: Some("is this the right file? split what it holds into smaller ones".into()),
        };
        return Err(ScenarioError::new(vec![(problem, 1)], Vec::new()));
    }
    Ok(bytes)
}

/// The file's text. Invalid UTF-8 is refused at its first bad byte rather than replaced, so a
/// mangled value (`quick\xff\xfestart`) never validates as something the user did not write.
fn utf8_text(path: &Path, bytes: &[u8]) -> Result<String, ScenarioError> {
    let err = match std::str::from_utf8(bytes) {
        Ok(text) => return Ok(text.to_string()),
        Err(err) => err,
    };
    let offset = err.valid_up_to();
    let valid = &bytes[..offset];
    let line_start = valid.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let line = valid.iter().filter(|&&b| b == b'\n').count() + 1;
    // The prefix is valid UTF-8 by definition of `valid_up_to`.
    let column = String::from_utf8_lossy(&valid[line_start..])
        .chars()
        .count()
        + 1;
    let why = match err.error_len() {
        Some(_) => format!(
            "byte {:#04x} does not begin a valid character",
            bytes[offset]
        ),
        None => "the file ends in the middle of a character".to_string(),
    };
    let problem = Problem {
        file: path.to_path_buf(),
        line,
        column,
        message: format!("invalid UTF-8 at byte {offset} (line {line}, column {column}): {why}"),
        help: Some(
            "save the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8`), or remove the stray bytes"
                .into(),
        ),
    };
    // The line is shown with the bad bytes as U+FFFD, so the caret sits under the first one.
    let shown = String::from_utf8_lossy(bytes).into_owned();
    Err(ScenarioError::new(
        vec![(problem, 1)],
        vec![(path.to_path_buf(), shown)],
    ))
}

/// `path` made absolute (canonical when it exists).
fn absolute(path: &Path) -> PathBuf {
    if let Ok(canonical) = path.canonicalize() {
        return canonical;
    }
    if path.is_absolute() {
        return path.to_path_buf();
    }
    std::env::current_dir()
        .map(|cwd| cwd.join(path))
        .unwrap_or_else(|_| path.to_path_buf())
}

/// The folder of an absolute file path, canonical when it exists.
fn folder_of(abs_file: &Path) -> PathBuf {
    let dir = abs_file.parent().unwrap_or(Path::new("/"));
    dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf())
}
