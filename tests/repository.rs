//! The repository's documentation holds together: every relative link in every Markdown file
//! resolves (to a file, and to a heading when it names one), and no file points outside the
//! repository (a clone is all a reader has).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Every file of the repository, without build output, fuzzing's working folders or git's own.
fn repo_files() -> Vec<PathBuf> {
    const SKIPPED: &[&str] = &[".git", "target", "corpus", "artifacts", "coverage"];
    fn walk(dir: &Path, found: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let path = entry.path();
            let name = entry.file_name();
            if SKIPPED.iter().any(|s| name == *s) {
                // `.git` is a file in a worktree: it names where the repository's git data is.
                continue;
            }
            if entry.file_type().unwrap().is_dir() {
                walk(&path, found);
            } else {
                found.push(path);
            }
        }
    }
    let mut found = Vec::new();
    walk(&repo_root(), &mut found);
    found.sort();
    found
}

fn markdown_files() -> Vec<PathBuf> {
    repo_files()
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect()
}

/// The targets of a Markdown text's inline links and images, `[text](target "title")`, and of
/// its reference definitions, `[name]: target`, outside code blocks and code spans.
fn link_targets(text: &str) -> Vec<String> {
    let mut targets = Vec::new();
    let mut in_fence = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_fence = !in_fence;
            continue;
        }
        if in_fence {
            continue;
        }
        let line = without_code_spans(line);
        let trimmed = line.trim_start();
        if trimmed.starts_with('[')
            && let Some((_, rest)) = trimmed.split_once("]: ")
        {
            targets.push(first_word(rest));
        }
        let mut rest = line.as_str();
        while let Some(at) = rest.find("](") {
            rest = &rest[at + 2..];
            let end = rest.find(')').unwrap_or(rest.len());
            targets.push(first_word(&rest[..end]));
            rest = &rest[end..];
        }
    }
    targets
}

fn first_word(s: &str) -> String {
    let s = s.trim();
    match s.strip_prefix('<') {
        Some(bracketed) => bracketed.split('>').next().unwrap_or("").to_string(),
        None => s.split_whitespace().next().unwrap_or("").to_string(),
    }
}

fn without_code_spans(line: &str) -> String {
    line.split('`')
        .enumerate()
        .filter(|(i, _)| i % 2 == 0)
        .map(|(_, part)| part)
        .collect::<Vec<_>>()
        .join("")
}

/// The anchors GitHub gives a Markdown file's headings: lowercased, punctuation other than `-`
/// and `_` dropped, spaces made dashes, repeats numbered.
fn anchors(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut in_fence = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_fence = !in_fence;
            continue;
        }
        let Some(heading) = line.strip_prefix('#') else {
            continue;
        };
        if in_fence {
            continue;
        }
        let title = heading.trim_start_matches('#').trim();
        let slug: String = title
            .to_lowercase()
            .chars()
            .filter(|c| c.is_alphanumeric() || *c == '-' || *c == '_' || *c == ' ')
            .map(|c| if c == ' ' { '-' } else { c })
            .collect();
        let mut anchor = slug.clone();
        let mut n = 0;
        while !found.insert(anchor.clone()) {
            n += 1;
            anchor = format!("{slug}-{n}");
        }
    }
    found
}

#[test]
fn every_relative_link_in_the_markdown_resolves() {
    let root = repo_root();
    let files = markdown_files();
    assert!(files.len() > 10, "found only {files:?}");
    let mut broken = Vec::new();
    let mut checked = 0;
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for target in link_targets(&text) {
            if target.is_empty() || target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            checked += 1;
            let (path, anchor) = target.split_once('#').unwrap_or((&target, ""));
            let resolved = if path.is_empty() {
                file.clone()
            } else {
                file.parent().unwrap().join(path)
            };
            let shown = file.strip_prefix(&root).unwrap().display();
            if !resolved.exists() {
                broken.push(format!("{shown}: `{target}`: no such file"));
            } else if !resolved.starts_with(&root)
                || !resolved
                    .canonicalize()
                    .unwrap()
                    .starts_with(root.canonicalize().unwrap())
            {
                broken.push(format!("{shown}: `{target}` leads outside the repository"));
            } else if !anchor.is_empty() && resolved.extension().is_some_and(|e| e == "md") {
                let text = std::fs::read_to_string(&resolved).unwrap();
                if !anchors(&text).contains(anchor) {
                    broken.push(format!("{shown}: `{target}`: no heading with that anchor"));
                }
            }
        }
    }
    assert!(
        checked > 50,
        "only {checked} links checked: is the parser broken?"
    );
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn no_file_points_outside_the_repository() {
    // Written in two halves so that this file does not find itself.
    let outside = [format!("../{}", "shared/"), format!("/{}/", "work")];
    let mut found = Vec::new();
    for file in repo_files() {
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue; // not text
        };
        for (n, line) in text.lines().enumerate() {
            if outside.iter().any(|o| line.contains(o.as_str())) {
                found.push(format!("{}:{}: {}", file.display(), n + 1, line.trim()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "paths outside the repository:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_link_reader_finds_links_and_anchors() {
    let text = "# A title, with: punctuation\n## Again\n## Again\n\
                See [a](docs/a.md#x) and ![b](b.png \"t\") but not `[c](c.md)`.\n\
                [ref]: <d e.md>\n```\n[e](e.md)\n```\n";
    assert_eq!(link_targets(text), ["docs/a.md#x", "b.png", "d e.md"]);
    let found = anchors(text);
    for a in ["a-title-with-punctuation", "again", "again-1"] {
        assert!(found.contains(a), "{a} in {found:?}");
    }
}
