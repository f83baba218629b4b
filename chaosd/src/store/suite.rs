//! One suite of store tests, run against both stores: SQLite in a temporary state directory,
//! and PostgreSQL on a server of the test's own (skipped, and a failure in CI, where that cannot
//! run). What only one store does (SQLite's pid-based `interrupted`, PostgreSQL's halt switch
//! and due-time claims) is tested beside it.

use std::collections::BTreeMap;

use chaos_tests::postgres::Postgres;
use chrono::DateTime;

use super::{ScheduleRecord, Store};
use crate::report::model::{Cause, Verdict};
use crate::report::test_support::{at, sample_report};
use crate::schedule::Blackout;

/// Runs `case` on a SQLite store, then on a PostgreSQL one.
fn both(case: fn(&Store)) {
    let dir = tempfile::tempdir().unwrap();
    case(&Store::sqlite(dir.path()).unwrap());
    let Some(pg) = Postgres::start_or_skip() else {
        return;
    };
    let store = Store::postgres(&pg.url(), "suite").unwrap_or_else(|e| panic!("{e}\n{}", pg.log()));
    case(&store);
}

fn labels() -> BTreeMap<String, String> {
    BTreeMap::from([("team".to_string(), "payments".to_string())])
}

fn begin(store: &Store, id: &str, start_ms: i64) {
    let halted = store
        .begin(
            id,
            "checkout-failover",
            "scenarios/c.yaml",
            at(start_ms),
            &labels(),
            false,
            "r",
        )
        .unwrap();
    assert_eq!(halted, None);
}

#[test]
fn begin_finish_list_get() {
    both(|store| {
        assert!(store.list(10).unwrap().is_empty());
        assert!(store.get("latest").unwrap().is_none());
        begin(store, "20250314-aaa111", 0);
        begin(store, "20250314-aab222", 1000);
        begin(store, "20250314-bbb333", 2000);

        let running = store.get("20250314-bbb").unwrap().unwrap();
        assert_eq!(running.0.verdict, None);
        assert!(running.1.is_none());
        assert_eq!(running.0.labels, labels());

        let mut report = sample_report();
        report.run_id = "20250314-aab222".into();
        report.started_at = at(1000);
        store
            .finish(&report, "/tmp/reports/20250314-aab222")
            .unwrap();

        let ids: Vec<String> = store
            .list(10)
            .unwrap()
            .into_iter()
            .map(|r| r.run_id)
            .collect();
        assert_eq!(
            ids,
            ["20250314-bbb333", "20250314-aab222", "20250314-aaa111"]
        );
        assert_eq!(store.list(1).unwrap().len(), 1);

        let (rec, rep) = store.get("20250314-aab").unwrap().unwrap();
        assert_eq!(rec.verdict, Some(Verdict::Deviated));
        assert_eq!(rec.cause, Some(Cause::Hypothesis));
        assert_eq!(rec.exit_code, Some(6));
        assert_eq!(rec.ended_at, Some(report.ended_at));
        assert_eq!(rec.started_at, at(1000));
        assert_eq!(rec.scenario_path, "scenarios/c.yaml");
        assert_eq!(rep.unwrap().steps.len(), 2);

        assert_eq!(
            store.get("latest").unwrap().unwrap().0.run_id,
            "20250314-bbb333"
        );
        assert!(store.get("nope").unwrap().is_none());
        assert!(store.get("").unwrap_err().is_bad_id());
        let err = store.get("20250314-aa").unwrap_err().to_string();
        assert!(
            err.contains("`20250314-aaa111`") && err.contains("`20250314-aab222`"),
            "{err}"
        );
        assert!(!err.contains("bbb333"), "{err}");
        assert_eq!(
            store.get("aab222").unwrap().unwrap().0.run_id,
            "20250314-aab222"
        );
        assert_eq!(
            store.get("bbb").unwrap().unwrap().0.run_id,
            "20250314-bbb333"
        );
        assert!(store.get("aa").unwrap_err().is_bad_id());
        // Prefixes are literal.
        assert!(store.get("2025031%").unwrap().is_none());
        assert!(store.get("20250314_").unwrap().is_none());

        let err = store
            .begin(
                "20250314-aaa111",
                "x",
                "x",
                at(0),
                &BTreeMap::new(),
                false,
                "r",
            )
            .unwrap_err()
            .to_string();
        assert!(err.contains("already"), "{err}");

        // A finish without a begin records the whole run.
        let mut whole = sample_report();
        whole.run_id = "20250315-ccc444".into();
        whole.started_at = at(5000);
        store.finish(&whole, "reports/x").unwrap();
        let (rec, rep) = store.get("ccc444").unwrap().unwrap();
        assert_eq!(rec.labels, whole.labels);
        assert_eq!(rep.unwrap().seed, whole.seed);
    });
}

pub(super) fn schedule(id: &str, created_s: i64) -> ScheduleRecord {
    ScheduleRecord {
        id: id.into(),
        scenario: "checkout".into(),
        file: Some("checkout.yaml".into()),
        scenario_text: "version: 1\n".into(),
        cron: "0 10 * * TUE".into(),
        timezone: Some("Europe/Berlin".into()),
        vars: BTreeMap::from([("PORT".into(), "8080".into())]),
        labels: BTreeMap::from([("team".into(), "payments".into())]),
        blackouts: vec![Blackout::Recurring {
            days: vec!["sat".into()],
            hours: None,
            timezone: None,
        }],
        created_at: DateTime::from_timestamp(created_s, 0).unwrap(),
        last_due: None,
        last_run_id: None,
        last_error: None,
    }
}

#[test]
fn schedules_are_kept_updated_and_removed() {
    both(|store| {
        store.add_schedule(&schedule("b", 2000)).unwrap();
        store.add_schedule(&schedule("a", 1000)).unwrap();
        assert!(store.add_schedule(&schedule("a", 1000)).is_err());
        let due = DateTime::from_timestamp(5000, 0).unwrap();
        store.schedule_fired("a", due, Some("run-1"), None).unwrap();
        store
            .schedule_fired("a", due, None, Some("halted"))
            .unwrap();
        let all = store.schedules().unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].id, "a");
        assert_eq!(all[0].last_due, Some(due));
        assert_eq!(all[0].last_run_id.as_deref(), Some("run-1"));
        assert_eq!(all[0].last_error.as_deref(), Some("halted"));
        assert_eq!(all[1], schedule("b", 2000));
        assert!(store.remove_schedule("a").unwrap());
        assert!(!store.remove_schedule("a").unwrap());
        assert_eq!(store.schedules().unwrap().len(), 1);
    });
}

#[test]
fn postgresql_claims_each_due_time_once_and_a_halt_refuses_runs_in_the_database() {
    let Some(pg) = Postgres::start_or_skip() else {
        return;
    };
    let a = Store::postgres(&pg.url(), "a").unwrap();
    // A second instance on the same database: the migrations are applied once.
    let b = Store::postgres(&pg.url(), "b").unwrap();
    assert_eq!(pg.psql("SELECT count(*) FROM chaos_migrations"), "1");

    let due = DateTime::from_timestamp(5000, 0).unwrap();
    assert!(a.claim_due("sch-1", due).unwrap());
    assert!(!b.claim_due("sch-1", due).unwrap());
    assert!(!a.claim_due("sch-1", due).unwrap());
    assert!(
        b.claim_due("sch-1", DateTime::from_timestamp(5060, 0).unwrap())
            .unwrap()
    );

    let (Store::Postgres { store: pa, .. }, Store::Postgres { store: pb, .. }) = (&a, &b) else {
        unreachable!()
    };
    let since = pa.set_halt(at(0)).unwrap();
    assert_eq!(since, at(0));
    // Set again, through the other instance: the first time is kept.
    assert_eq!(pb.set_halt(at(9000)).unwrap(), at(0));
    let halted = b
        .begin("r-1", "s", "s.yaml", at(10), &BTreeMap::new(), false, "r")
        .unwrap();
    assert_eq!(halted, Some(at(0)));
    assert!(
        b.get("r-1").unwrap().is_none(),
        "a halted begin recorded nothing"
    );
    pa.clear_halt().unwrap();
    assert_eq!(pb.halted().unwrap(), None);
    assert_eq!(
        b.begin("r-1", "s", "s.yaml", at(10), &BTreeMap::new(), false, "r")
            .unwrap(),
        None
    );
}

#[test]
fn postgresql_that_cannot_be_reached_is_an_error_that_says_where() {
    let port = chaos_tests::support::free_port();
    let url = format!("postgresql://chaos:s3cret@127.0.0.1:{port}/chaos");
    let started = tokio::time::Instant::now();
    let err = Store::postgres(&url, "x").unwrap_err().to_string();
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
    assert!(err.contains("store:"), "{err}");
    assert!(!err.contains("s3cret"), "{err}");
}
