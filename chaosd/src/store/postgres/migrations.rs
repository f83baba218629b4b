//! The PostgreSQL schema, as numbered migrations. Each is applied once, in order, inside one
//! transaction that holds an advisory lock, so that chaosd instances starting together do not
//! race; `chaos_migrations` records which are applied. A database migrated by a newer chaosd
//! (a version this build does not know) is refused rather than misread.
//!
//! Never edit a migration that has shipped: add the next one.

/// The migrations, in order; the version of `MIGRATIONS[i]` is `i + 1`.
pub const MIGRATIONS: &[&str] = &[
    // 1: runs, schedules with their claimed due times, the halt switch, the instances.
    "CREATE TABLE runs (
        run_id        TEXT PRIMARY KEY,
        seq           BIGSERIAL NOT NULL,             -- insertion order, to break ties
        scenario      TEXT NOT NULL,
        scenario_path TEXT NOT NULL,
        verdict       TEXT,                           -- NULL while running
        cause         TEXT,
        started_at    TIMESTAMPTZ NOT NULL,
        ended_at      TIMESTAMPTZ,
        report_dir    TEXT,
        labels        JSONB NOT NULL DEFAULT '{}',
        exit_code     INTEGER,
        dry_run       BOOLEAN NOT NULL DEFAULT false,
        node          TEXT,                           -- the chaosd instance that runs it
        instance      TEXT,
        report_json   TEXT
    );
    CREATE INDEX runs_started_at ON runs (started_at, seq);
    CREATE INDEX runs_open ON runs (instance) WHERE verdict IS NULL;
    CREATE TABLE schedules (
        id            TEXT PRIMARY KEY,
        scenario      TEXT NOT NULL,
        file          TEXT,
        scenario_text TEXT NOT NULL,
        cron          TEXT NOT NULL,
        timezone      TEXT,
        vars          JSONB NOT NULL DEFAULT '{}',
        labels        JSONB NOT NULL DEFAULT '{}',
        blackouts     JSONB NOT NULL DEFAULT '[]',
        created_at    TIMESTAMPTZ NOT NULL,
        last_due      TIMESTAMPTZ,
        last_run_id   TEXT,
        last_error    TEXT
    );
    -- Each due time of a schedule is claimed once, by the instance that fires it: the database,
    -- not only the leader's lock, is what makes a due time run once.
    CREATE TABLE schedule_fires (
        schedule_id TEXT NOT NULL,
        due         TIMESTAMPTZ NOT NULL,
        node        TEXT NOT NULL,
        claimed_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
        PRIMARY KEY (schedule_id, due)
    );
    -- At most one row: present means halted.
    CREATE TABLE halt (
        one   BOOLEAN PRIMARY KEY DEFAULT true CHECK (one),
        since TIMESTAMPTZ NOT NULL
    );
    CREATE TABLE instances (
        instance     TEXT PRIMARY KEY,
        node         TEXT NOT NULL,
        started_at   TIMESTAMPTZ NOT NULL,
        heartbeat_at TIMESTAMPTZ NOT NULL,
        leader       BOOLEAN NOT NULL DEFAULT false
    );",
];

/// The newest version this build knows.
pub fn latest() -> i32 {
    MIGRATIONS.len() as i32
}

/// The key of the advisory lock held while migrating (any fixed number: "chaos" in ASCII).
pub const MIGRATION_LOCK: i64 = 0x0063_6861_6f73;
