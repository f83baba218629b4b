//! The error of loading a scenario: every problem found, each at `FILE:LINE:COLUMN`, rendered
//! like rustc or `just` with the source line and a caret under the offending value.

use std::fmt;
use std::path::{Path, PathBuf};

/// One thing wrong with a scenario or inventory file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file as the user named it.
    pub file: PathBuf,
    /// From 1; 0 when the problem has no position (the file could not be read).
    pub line: usize,
    /// From 1, in characters; 0 when the problem has no position.
    pub column: usize,
    pub message: String,
    /// A suggestion, e.g. "did you mean `steps`?".
    pub help: Option<String>,
}

/// Everything wrong with a scenario, in file and line order.
#[derive(Debug, Clone)]
pub struct ScenarioError {
    problems: Vec<Problem>,
    /// How many characters each problem's caret underlines (parallel to `problems`).
    widths: Vec<usize>,
    /// The text of each file a problem points into, to show its lines.
    sources: Vec<(PathBuf, String)>,
}

impl ScenarioError {
    /// Every problem found, at least one.
    pub fn problems(&self) -> &[Problem] {
        &self.problems
    }

    /// A file that could not be read.
    pub(crate) fn io(file: &Path, err: &std::io::Error) -> Self {
        ScenarioError {
            problems: vec![Problem {
                file: file.to_path_buf(),
                line: 0,
                column: 0,
                message: format!("cannot read: {err}"),
                help: None,
            }],
            widths: vec![0],
            sources: Vec::new(),
        }
    }

    /// Problems with their caret widths, and the texts they point into.
    pub(crate) fn new(mut found: Vec<(Problem, usize)>, sources: Vec<(PathBuf, String)>) -> Self {
        // Stable: problems at one position keep the order they were found in.
        let file_rank = |file: &Path| sources.iter().position(|(f, _)| f == file);
        found.sort_by_key(|(p, _)| (file_rank(&p.file), p.line, p.column));
        found.dedup_by(|a, b| a.0 == b.0);
        let (problems, widths) = found.into_iter().unzip();
        ScenarioError {
            problems,
            widths,
            sources,
        }
    }

    fn source_line(&self, file: &Path, line: usize) -> Option<&str> {
        let (_, text) = self.sources.iter().find(|(f, _)| f == file)?;
        text.lines().nth(line.checked_sub(1)?)
    }
}

impl fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (problem, &width)) in self.problems.iter().zip(&self.widths).enumerate() {
            if i > 0 {
                f.write_str("\n\n")?;
            }
            let file = problem.file.display();
            if problem.line == 0 {
                write!(f, "{file}: {}", problem.message)?;
            } else {
                write!(
                    f,
                    "{file}:{}:{}: {}",
                    problem.line, problem.column, problem.message
                )?;
            }
            let gutter = " ".repeat(problem.line.to_string().len());
            if let Some(text) = self.source_line(&problem.file, problem.line) {
                let text = text.trim_end_matches('\r');
                let before: String = text
                    .chars()
                    .take(problem.column.saturating_sub(1))
                    .map(|c| if c == '\t' { '\t' } else { ' ' })
                    .collect();
                let rest = text.chars().count().saturating_sub(problem.column - 1);
                let carets = "^".repeat(width.clamp(1, rest.max(1)));
                write!(
                    f,
                    "\n{gutter} |\n{} | {text}\n{gutter} | {before}{carets}",
                    problem.line
                )?;
            }
            if let Some(help) = &problem.help {
                write!(f, "\n{gutter} = help: {help}")?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for ScenarioError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_like_rustc() {
        let file = PathBuf::from("scenarios/bad.yaml");
        let text = (1..12).map(|_| "x: 1\n").collect::<String>() + "    stpes:\n";
        let err = ScenarioError::new(
            vec![(
                Problem {
                    file: file.clone(),
                    line: 12,
                    column: 5,
                    message: "unknown key `stpes`".into(),
                    help: Some("did you mean `steps`?".into()),
                },
                5,
            )],
            vec![(file, text)],
        );
        assert_eq!(
            err.to_string(),
            "scenarios/bad.yaml:12:5: unknown key `stpes`\n   |\n12 |     stpes:\n   |     ^^^^^\n   = help: did you mean `steps`?"
        );
    }

    #[test]
    fn io_errors_have_no_position() {
        let err = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let rendered = ScenarioError::io(Path::new("x.yaml"), &err).to_string();
        assert_eq!(rendered, "x.yaml: cannot read: no such file");
    }
}
