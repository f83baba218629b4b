//! The report folder `REPORT_DIR/RUN_ID/`: `events.jsonl` grows while the run goes on, and at
//! the end `report.json`, `report.md`, `report.html` and `report.junit.xml` appear whole (temp
//! file + rename), then `REPORT_DIR/latest` is pointed at the folder.
//!
//! **Invariant:** a reader never sees a half-written report file or a missing `latest` link: both
//! are replaced by `rename(2)`.
//!
//! Durability costs two syncs per run: `report.json`'s data, and the folder once it is renamed
//! into it. `report.json` is the record (the history keeps a copy too); the other files
//! are renderings of it, and `events.jsonl` is superseded by it, so they are not synced one by
//! one: after a power cut they may be empty, and `chaosctl report RUN --format md|html|junit`
//! renders them again. `latest` is a convenience and is not synced either.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::model::{Event, Report};
use super::{html, junit, markdown};

/// The name of the link to the newest report folder, inside the report root.
pub const LATEST: &str = "latest";
pub const EVENTS_FILE: &str = "events.jsonl";
pub const JSON_FILE: &str = "report.json";
pub const MARKDOWN_FILE: &str = "report.md";
pub const HTML_FILE: &str = "report.html";
pub const JUNIT_FILE: &str = "report.junit.xml";

/// One run's report folder.
#[derive(Debug)]
pub struct ReportDir {
    /// `REPORT_DIR`, where `latest` lives.
    root: PathBuf,
    /// `REPORT_DIR/RUN_ID`.
    dir: PathBuf,
    run_id: String,
    /// `events.jsonl`, opened for appending; each event is written with one `write` call.
    events: File,
}

impl ReportDir {
    /// Creates REPORT_DIR/RUN_ID/ (and REPORT_DIR) and opens events.jsonl for appending.
    pub fn create(report_root: &Path, run_id: &str) -> io::Result<ReportDir> {
        if run_id.is_empty()
            || run_id == "."
            || run_id == ".."
            || run_id == LATEST
            || run_id.starts_with('.')
            || run_id.contains(['/', '\\', '\0'])
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("`{run_id}` cannot be a report folder name"),
            ));
        }
        let dir = report_root.join(run_id);
        fs::create_dir_all(&dir)
            .map_err(|e| annotate(e, "cannot create the report folder", &dir))?;
        let path = dir.join(EVENTS_FILE);
        let events = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| annotate(e, "cannot open", &path))?;
        Ok(ReportDir {
            root: report_root.to_path_buf(),
            dir,
            run_id: run_id.to_string(),
            events,
        })
    }

    /// `REPORT_DIR/RUN_ID`.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Appends one event as a JSON line and flushes it to the file right away (write + flush; a
    /// crash must leave every earlier line on disk).
    pub fn append_event(&mut self, event: &Event) -> io::Result<()> {
        let mut line = serde_json::to_vec(event)?;
        line.push(b'\n');
        // One write of the whole line: with O_APPEND, a concurrent reader sees whole lines.
        self.events.write_all(&line)?;
        self.events.flush()
    }

    /// Writes report.json (pretty), report.md, report.html, report.junit.xml, each via a temp
    /// file and a rename, then points REPORT_DIR/latest at this folder (a relative symlink
    /// `latest -> RUN_ID`, replaced atomically: a temp symlink renamed over it).
    pub fn write_report(&mut self, report: &Report) -> io::Result<()> {
        let this = &*self;
        // The record and its two syncs go on a thread of their own, since waiting for the disk
        // is most of a run's last milliseconds; this one renders meanwhile.
        let (record, renderings) = crate::side_by_side::run(
            "report-sync",
            || this.write_record(report),
            || this.write_renderings(report),
        );
        record.unwrap_or_else(|_| Err(io::Error::other("writing report.json panicked")))?;
        renderings?;
        self.point_latest()
    }

    /// report.json, synced, then the folder, synced once it holds it.
    fn write_record(&self, report: &Report) -> io::Result<()> {
        let mut json = serde_json::to_vec_pretty(report)?;
        json.push(b'\n');
        self.write_atomic(JSON_FILE, &json, true)?;
        sync_dir(&self.dir);
        Ok(())
    }

    /// report.md, report.html and report.junit.xml, not synced.
    fn write_renderings(&self, report: &Report) -> io::Result<()> {
        self.write_atomic(MARKDOWN_FILE, markdown::render(report).as_bytes(), false)?;
        self.write_atomic(HTML_FILE, html::render(report).as_bytes(), false)?;
        self.write_atomic(JUNIT_FILE, junit::render(report).as_bytes(), false)
    }

    fn write_atomic(&self, name: &str, bytes: &[u8], sync: bool) -> io::Result<()> {
        let path = self.dir.join(name);
        let tmp = self.dir.join(format!(".{name}.tmp-{}", std::process::id()));
        let result = (|| {
            let mut f = File::create(&tmp)?;
            f.write_all(bytes)?;
            if sync {
                f.sync_data()?;
            }
            fs::rename(&tmp, &path)
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result.map_err(|e| annotate(e, "cannot write", &path))
    }

    fn point_latest(&self) -> io::Result<()> {
        let latest = self.root.join(LATEST);
        let tmp = self.root.join(format!(
            ".{LATEST}.tmp-{}-{}",
            std::process::id(),
            self.run_id
        ));
        let _ = fs::remove_file(&tmp);
        std::os::unix::fs::symlink(&self.run_id, &tmp)
            .map_err(|e| annotate(e, "cannot create", &tmp))?;
        // rename(2) never replaces a directory with a symlink, so a real `latest` folder a user
        // made is kept, and reported.
        if let Err(e) = fs::rename(&tmp, &latest) {
            let _ = fs::remove_file(&tmp);
            return Err(annotate(
                e,
                "cannot point the link at the newest report",
                &latest,
            ));
        }
        Ok(())
    }
}

/// Best effort: makes renames in `dir` durable.
fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

fn annotate(e: io::Error, what: &str, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{what} `{}`: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader};

    use super::*;
    use crate::report::model::Report;
    use crate::report::test_support::{at, sample_report};

    fn event(ms: i64, kind: &str) -> Event {
        let mut fields = serde_json::Map::new();
        fields.insert("host".into(), "api-1".into());
        Event {
            at: at(ms),
            kind: kind.into(),
            message: format!("{kind}\nwith a newline"),
            fields,
        }
    }

    fn read_events(dir: &Path) -> Vec<Event> {
        let f = File::open(dir.join(EVENTS_FILE)).unwrap();
        BufReader::new(f)
            .lines()
            .map(|l| serde_json::from_str(&l.unwrap()).unwrap())
            .collect()
    }

    #[test]
    fn events_are_readable_while_the_writer_is_open() {
        let root = tempfile::tempdir().unwrap();
        let mut dir = ReportDir::create(&root.path().join("reports"), "run-1").unwrap();
        dir.append_event(&event(0, "run_started")).unwrap();
        dir.append_event(&event(1500, "fault_applied")).unwrap();
        let events = read_events(dir.path());
        assert_eq!(events.len(), 2);
        assert_eq!(events[1].kind, "fault_applied");
        assert_eq!(events[1].fields["host"], "api-1");
        dir.append_event(&event(3000, "fault_reverted")).unwrap();
        assert_eq!(read_events(dir.path()).len(), 3);
        drop(dir);

        // Reopening (say, the same run id again) appends.
        let mut dir = ReportDir::create(&root.path().join("reports"), "run-1").unwrap();
        dir.append_event(&event(4000, "run_ended")).unwrap();
        let text = fs::read_to_string(dir.path().join(EVENTS_FILE)).unwrap();
        assert_eq!(text.lines().count(), 4);
        assert!(text.ends_with('\n'));
    }

    #[test]
    fn writes_every_file_and_points_latest_at_the_newest() {
        let root = tempfile::tempdir().unwrap();
        let reports = root.path().join("chaos-reports");

        let mut first = sample_report();
        first.run_id = "run-a".into();
        let mut a = ReportDir::create(&reports, &first.run_id).unwrap();
        a.append_event(&first.events[0]).unwrap();
        a.write_report(&first).unwrap();
        for f in [EVENTS_FILE, JSON_FILE, MARKDOWN_FILE, HTML_FILE, JUNIT_FILE] {
            assert!(a.path().join(f).is_file(), "{f} missing");
        }
        assert_eq!(
            fs::read_link(reports.join(LATEST)).unwrap(),
            Path::new("run-a")
        );

        let mut second = sample_report();
        second.run_id = "run-b".into();
        let mut b = ReportDir::create(&reports, &second.run_id).unwrap();
        b.write_report(&second).unwrap();
        assert_eq!(
            fs::read_link(reports.join(LATEST)).unwrap(),
            Path::new("run-b")
        );
        let via_latest = fs::read_to_string(reports.join(LATEST).join(JSON_FILE)).unwrap();
        let back: Report = serde_json::from_str(&via_latest).unwrap();
        assert_eq!(back.run_id, "run-b");

        // No temp files are left behind.
        let mut names: Vec<String> = fs::read_dir(&reports)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["latest", "run-a", "run-b"]);
        let mut names: Vec<String> = fs::read_dir(b.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [EVENTS_FILE, HTML_FILE, JSON_FILE, JUNIT_FILE, MARKDOWN_FILE]
        );

        // Writing again (a rewrite of the same run) replaces the files.
        second.reason = "rewritten".into();
        b.write_report(&second).unwrap();
        assert!(
            fs::read_to_string(b.path().join(MARKDOWN_FILE))
                .unwrap()
                .contains("rewritten")
        );
    }

    #[test]
    fn report_json_round_trips() {
        let root = tempfile::tempdir().unwrap();
        let report = sample_report();
        let mut dir = ReportDir::create(root.path(), &report.run_id).unwrap();
        dir.write_report(&report).unwrap();
        let text = fs::read_to_string(dir.path().join(JSON_FILE)).unwrap();
        assert!(text.contains("\"schema\": \"chaos.report/v1\""));
        let back: Report = serde_json::from_str(&text).unwrap();
        assert_eq!(back.schema, report.schema);
        assert_eq!(back.run_id, report.run_id);
        assert_eq!(back.verdict, report.verdict);
        assert_eq!(back.cause, report.cause);
        assert_eq!(back.seed, report.seed);
        assert_eq!(back.labels, report.labels);
        assert_eq!(back.started_at, report.started_at);
        assert_eq!(back.ended_at, report.ended_at);
        assert_eq!(back.faults_left.len(), 1);
        assert_eq!(back.steps.len(), 2);
        assert_eq!(back.steps[1].name, report.steps[1].name);
        assert_eq!(back.steps[1].status, report.steps[1].status);
        assert_eq!(back.steps[0].recovery_ms, Some(4_500));
        assert_eq!(back.steps[1].recovery_ms, None);
        assert_eq!(
            back.steps[0].faults[0].applied_at,
            report.steps[0].faults[0].applied_at
        );
        assert_eq!(back.events.len(), report.events.len());
        assert_eq!(back.probes[0].samples.len(), report.probes[0].samples.len());
        // The whole value survives: serializing the copy gives the same JSON.
        assert_eq!(
            serde_json::to_value(&back).unwrap(),
            serde_json::to_value(&report).unwrap()
        );
    }

    #[test]
    fn refuses_run_ids_that_are_not_a_folder_name() {
        let root = tempfile::tempdir().unwrap();
        for bad in ["", "..", "a/b", "latest", ".hidden"] {
            let err = ReportDir::create(root.path(), bad).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{bad}");
        }
    }

    #[test]
    fn a_real_latest_folder_is_kept() {
        let root = tempfile::tempdir().unwrap();
        fs::create_dir(root.path().join(LATEST)).unwrap();
        fs::write(root.path().join(LATEST).join("mine"), "x").unwrap();
        let mut dir = ReportDir::create(root.path(), "run-1").unwrap();
        let err = dir.write_report(&sample_report()).unwrap_err();
        assert!(err.to_string().contains("latest"), "{err}");
        assert!(root.path().join(LATEST).join("mine").is_file());
        assert!(dir.path().join(JSON_FILE).is_file());
    }
}
