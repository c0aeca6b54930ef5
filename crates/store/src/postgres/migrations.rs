//! Schema migrations of the PostgreSQL store, embedded in the binary.
//!
//! Two modes, chosen once when the schema is first created:
//! - `timescaledb` when the extension can be created: `ticks` is a
//!   hypertable on `ts` with compression and retention policies, and
//!   continuous aggregates hold 1m and 1h candles;
//! - `postgres` otherwise (PostgreSQL ≥ 14): `ticks` is range-partitioned
//!   by day; partitions are created ahead and dropped past retention by
//!   [`super::PostgresStore::housekeeping`].
//!
//! The mode is recorded in `streamforge_schema`; queries work the same in
//! both.

use std::fmt;

use deadpool_postgres::Client;
use streamforge_model::Interval;

use super::PostgresConfig;
use crate::StoreError;

/// Which engine features the schema uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    TimescaleDb,
    Postgres,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::TimescaleDb => "timescaledb",
            Mode::Postgres => "postgres",
        }
    }

    pub fn parse(s: &str) -> Option<Mode> {
        match s {
            "timescaledb" => Some(Mode::TimescaleDb),
            "postgres" => Some(Mode::Postgres),
            _ => None,
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What `migrate status` reports.
#[derive(Clone, Debug, PartialEq)]
pub struct SchemaStatus {
    /// `None` before the first migration.
    pub mode: Option<Mode>,
    pub version: u32,
    pub latest: u32,
}

impl fmt::Display for SchemaStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.mode {
            None => write!(f, "no schema yet (latest version {})", self.latest),
            Some(m) => write!(
                f,
                "mode {m}, schema version {} of {}{}",
                self.version,
                self.latest,
                if self.version == self.latest {
                    " (up to date)"
                } else {
                    " (migrations pending)"
                }
            ),
        }
    }
}

/// One step: its SQL per mode, frozen in `migrations/<mode>/NNNN_<name>.{up,down}.sql`
/// once shipped (never edited after; [`SHIPPED`] holds their checksums and
/// a test compares). New schema changes are new files.
struct Migration {
    name: &'static str,
    postgres: [&'static str; 2],
    timescaledb: [&'static str; 2],
}

/// A migration's `up` and `down` files in both modes.
macro_rules! migration {
    ($name:literal, $file:literal) => {
        Migration {
            name: $name,
            postgres: [
                include_str!(concat!("migrations/postgres/", $file, ".up.sql")),
                include_str!(concat!("migrations/postgres/", $file, ".down.sql")),
            ],
            timescaledb: [
                include_str!(concat!("migrations/timescaledb/", $file, ".up.sql")),
                include_str!(concat!("migrations/timescaledb/", $file, ".down.sql")),
            ],
        }
    };
}

const MIGRATIONS: &[Migration] = &[
    migration!("ticks and symbols", "0001_ticks_and_symbols"),
    migration!("candle aggregates", "0002_candle_aggregates"),
    migration!("feed gaps", "0003_feed_gaps"),
    migration!("candle rollups", "0004_candle_rollups"),
    migration!("partition functions", "0005_partition_functions"),
    migration!("gap healing", "0006_gap_healing"),
    migration!("trade ids", "0007_trade_ids"),
    migration!("completeness ledger", "0008_completeness_ledger"),
];

/// xxh3-64 of every shipped migration file, recorded when it shipped.
/// Editing a shipped file fails the test that compares these; a new
/// migration adds its files here.
#[cfg(test)]
const SHIPPED: &[(&str, u64)] = &[
    // Shipped up to 2026-12-02 (migrations 1-4).
    ("postgres/0001_ticks_and_symbols.up.sql", 0x9b5e8ce7f1300d7b),
    (
        "postgres/0001_ticks_and_symbols.down.sql",
        0xd838ddb767d819d0,
    ),
    (
        "timescaledb/0001_ticks_and_symbols.up.sql",
        0x050083c116370f37,
    ),
    (
        "timescaledb/0001_ticks_and_symbols.down.sql",
        0xd838ddb767d819d0,
    ),
    ("postgres/0002_candle_aggregates.up.sql", 0x2d06800538d394c2),
    (
        "postgres/0002_candle_aggregates.down.sql",
        0x2d06800538d394c2,
    ),
    (
        "timescaledb/0002_candle_aggregates.up.sql",
        0x184e2287eac2acfd,
    ),
    (
        "timescaledb/0002_candle_aggregates.down.sql",
        0x4429c64b4a64b988,
    ),
    ("postgres/0003_feed_gaps.up.sql", 0x24cc93c7d3eab8b6),
    ("postgres/0003_feed_gaps.down.sql", 0xa68fe468baaaaa71),
    ("timescaledb/0003_feed_gaps.up.sql", 0x24cc93c7d3eab8b6),
    ("timescaledb/0003_feed_gaps.down.sql", 0xa68fe468baaaaa71),
    ("postgres/0004_candle_rollups.up.sql", 0x266baf3567ef0a17),
    ("postgres/0004_candle_rollups.down.sql", 0xe93812bddcb93e94),
    ("timescaledb/0004_candle_rollups.up.sql", 0xf753c51651bc5f62),
    (
        "timescaledb/0004_candle_rollups.down.sql",
        0xb8eb6dc553f0f4b5,
    ),
    // Shipped 2026-12-02 (migration 5).
    (
        "postgres/0005_partition_functions.up.sql",
        0x53aa6af0929cedae,
    ),
    (
        "postgres/0005_partition_functions.down.sql",
        0x28225947b93671ec,
    ),
    (
        "timescaledb/0005_partition_functions.up.sql",
        0x5d3103a7e0464040,
    ),
    (
        "timescaledb/0005_partition_functions.down.sql",
        0x5d3103a7e0464040,
    ),
    // Shipped 2026-12-06 (migration 6).
    ("postgres/0006_gap_healing.up.sql", 0xa94a64e55459c7c5),
    ("postgres/0006_gap_healing.down.sql", 0xc3133abc53a4e980),
    ("timescaledb/0006_gap_healing.up.sql", 0xa94a64e55459c7c5),
    ("timescaledb/0006_gap_healing.down.sql", 0xc3133abc53a4e980),
    // Shipped 2026-12-06 (migration 7).
    ("postgres/0007_trade_ids.up.sql", 0xea5fca0468913d54),
    ("postgres/0007_trade_ids.down.sql", 0x51d5f8282b9c3395),
    ("timescaledb/0007_trade_ids.up.sql", 0x5f24cf575eb6415b),
    ("timescaledb/0007_trade_ids.down.sql", 0x9f75b695cb48a924),
    // Shipped 2026-12-06 (migration 8).
    (
        "postgres/0008_completeness_ledger.up.sql",
        0xf1d04e1058572978,
    ),
    (
        "postgres/0008_completeness_ledger.down.sql",
        0x8aba90a255311fc5,
    ),
    (
        "timescaledb/0008_completeness_ledger.up.sql",
        0xf1d04e1058572978,
    ),
    (
        "timescaledb/0008_completeness_ledger.down.sql",
        0x8aba90a255311fc5,
    ),
];

impl Migration {
    fn files(&self, mode: Mode) -> &[&'static str; 2] {
        match mode {
            Mode::Postgres => &self.postgres,
            Mode::TimescaleDb => &self.timescaledb,
        }
    }

    /// The `up` SQL with the schema settings in place of its parameters
    /// (`{chunk_days}`, `{compress_after_days}`, `{retention_policy}`).
    fn up(&self, mode: Mode, o: &PostgresConfig) -> String {
        let retention = if o.retention_days > 0 {
            format!(
                "SELECT add_retention_policy('ticks', INTERVAL '{} days');",
                o.retention_days
            )
        } else {
            String::new()
        };
        self.files(mode)[0]
            .replace("{chunk_days}", &o.chunk_days.max(1).to_string())
            .replace(
                "{compress_after_days}",
                &o.compress_after_days.max(1).to_string(),
            )
            .replace("{retention_policy}", &retention)
    }

    fn down(&self, mode: Mode) -> &'static str {
        self.files(mode)[1]
    }
}

/// `INSERT` of rollup rows of `interval` already aggregated by the writer,
/// one array parameter per column (`$1` symbols ... `$13` trade counts, in
/// key order), merged into existing rows: the earlier open and later close by
/// `(ts, tick_id)`, extremes, sums (`CandlePart::merge` in the model, and
/// the frozen copy of this rule in migration 4 that filled the tables).
pub(crate) fn rollup_merge_parts(interval: Interval) -> String {
    format!(
        "INSERT INTO candles_{iv} AS c
              (symbol, bucket, open, open_ts, open_id, high, low, close, close_ts, close_id,
               volume, notional, trades)
         SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::float8[], $4::timestamptz[],
                              $5::int8[], $6::float8[], $7::float8[], $8::float8[],
                              $9::timestamptz[], $10::int8[], $11::float8[], $12::float8[],
                              $13::int8[])
         {merge}",
        iv = interval.as_str(),
        merge = ROLLUP_MERGE,
    )
}

/// How a rollup row takes in a part of the same bucket: the earlier open
/// and later close by `(ts, tick_id)`, extremes, sums.
const ROLLUP_MERGE: &str = "ON CONFLICT (symbol, bucket) DO UPDATE SET
             open = CASE WHEN (EXCLUDED.open_ts, EXCLUDED.open_id) < (c.open_ts, c.open_id)
                         THEN EXCLUDED.open ELSE c.open END,
             open_id = CASE WHEN (EXCLUDED.open_ts, EXCLUDED.open_id) < (c.open_ts, c.open_id)
                            THEN EXCLUDED.open_id ELSE c.open_id END,
             open_ts = LEAST(EXCLUDED.open_ts, c.open_ts),
             close = CASE WHEN (EXCLUDED.close_ts, EXCLUDED.close_id) > (c.close_ts, c.close_id)
                          THEN EXCLUDED.close ELSE c.close END,
             close_id = CASE WHEN (EXCLUDED.close_ts, EXCLUDED.close_id) > (c.close_ts, c.close_id)
                             THEN EXCLUDED.close_id ELSE c.close_id END,
             close_ts = GREATEST(EXCLUDED.close_ts, c.close_ts),
             high = GREATEST(EXCLUDED.high, c.high), low = LEAST(EXCLUDED.low, c.low),
             volume = c.volume + EXCLUDED.volume, notional = c.notional + EXCLUDED.notional,
             trades = c.trades + EXCLUDED.trades";

/// TimescaleDB: how far behind now a continuous aggregate's materialized
/// part can end (its refresh policy's end offset, in microseconds). A
/// tick newer than that is always in the real-time part; an older one may
/// land in a bucket already materialized, which the writer then refreshes.
pub(crate) fn refresh_lag(iv: Interval) -> i64 {
    let s = 1_000_000;
    match iv {
        Interval::S1 => 10 * s,
        Interval::H1 => 3_600 * s,
        Interval::D1 => 86_400 * s,
        _ => 60 * s,
    }
}

/// The latest schema version.
pub fn latest() -> u32 {
    MIGRATIONS.len() as u32
}

async fn ensure_bookkeeping(client: &Client) -> Result<(), StoreError> {
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS streamforge_schema (
                 version    INTEGER     PRIMARY KEY,
                 name       TEXT        NOT NULL,
                 mode       TEXT        NOT NULL,
                 applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
        )
        .await?;
    Ok(())
}

/// The schema's mode and version. Reads only: creating the bookkeeping
/// table here would race with a concurrent `migrate up` (`CREATE TABLE IF
/// NOT EXISTS` is not safe against another session creating it).
pub async fn status(client: &Client) -> Result<SchemaStatus, StoreError> {
    let exists: bool = client
        .query_one("SELECT to_regclass('streamforge_schema') IS NOT NULL", &[])
        .await?
        .get(0);
    if !exists {
        return Ok(SchemaStatus {
            mode: None,
            version: 0,
            latest: latest(),
        });
    }
    let row = client
        .query_opt(
            "SELECT version, mode FROM streamforge_schema ORDER BY version DESC LIMIT 1",
            &[],
        )
        .await?;
    Ok(match row {
        None => SchemaStatus {
            mode: None,
            version: 0,
            latest: latest(),
        },
        Some(r) => SchemaStatus {
            mode: Mode::parse(r.get::<_, &str>(1)),
            version: r.get::<_, i32>(0) as u32,
            latest: latest(),
        },
    })
}

/// Picks the mode for a new schema: the one asked for, else TimescaleDB
/// when its extension can be created in this database.
async fn choose_mode(client: &Client, wanted: Option<Mode>) -> Result<Mode, StoreError> {
    match wanted {
        Some(Mode::Postgres) => Ok(Mode::Postgres),
        Some(Mode::TimescaleDb) => {
            client
                .batch_execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
                .await?;
            Ok(Mode::TimescaleDb)
        }
        None => Ok(detect_mode(client).await),
    }
}

async fn detect_mode(client: &Client) -> Mode {
    let available = client
        .query_opt(
            "SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'",
            &[],
        )
        .await
        .ok()
        .flatten()
        .is_some();
    if !available {
        return Mode::Postgres;
    }
    // Creating the extension without it being preloaded ends the session
    // with a FATAL error, so check first.
    let preloaded = client
        .query_one("SELECT current_setting('shared_preload_libraries')", &[])
        .await
        .map(|r| r.get::<_, String>(0).contains("timescaledb"))
        .unwrap_or(false);
    if !preloaded {
        tracing::warn!(
            "timescaledb is installed but not in shared_preload_libraries; using plain PostgreSQL"
        );
        return Mode::Postgres;
    }
    match client
        .batch_execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
        .await
    {
        Ok(()) => Mode::TimescaleDb,
        Err(e) => {
            let detail = e
                .as_db_error()
                .map(|d| d.message().to_string())
                .unwrap_or_else(|| e.to_string());
            tracing::warn!(error = %detail, "cannot create the timescaledb extension; using plain PostgreSQL");
            Mode::Postgres
        }
    }
}

/// Applies every pending migration, each in its own transaction, holding
/// an advisory lock so concurrent `migrate`/`persist` processes take turns.
pub async fn up(client: &mut Client, options: &PostgresConfig) -> Result<SchemaStatus, StoreError> {
    client.batch_execute(LOCK).await?;
    let result = async {
        ensure_bookkeeping(client).await?;
        let current = status(client).await?;
        let mode = match current.mode {
            Some(m) => m,
            None => choose_mode(client, options.mode).await?,
        };
        for (i, m) in MIGRATIONS.iter().enumerate().skip(current.version as usize) {
            let version = i as i32 + 1;
            let tx = client.transaction().await?;
            let sql = m.up(mode, options);
            if !sql.trim().is_empty() {
                tx.batch_execute(&sql).await?;
            }
            tx.execute(
                "INSERT INTO streamforge_schema (version, name, mode) VALUES ($1, $2, $3)",
                &[&version, &m.name, &mode.as_str()],
            )
            .await?;
            tx.commit().await?;
            tracing::info!(version, name = m.name, %mode, "postgres store migrated");
            if mode == Mode::TimescaleDb && m.name == "candle rollups" {
                // Materialize the history (refreshes cannot run in a transaction);
                // finer levels first, as the coarser ones read them.
                for iv in Interval::ROLLUPS {
                    client
                        .batch_execute(&format!(
                            "CALL refresh_continuous_aggregate('candles_{iv}', NULL, NULL)"
                        ))
                        .await?;
                }
            }
        }
        status(client).await
    }
    .await;
    client.batch_execute(UNLOCK).await?;
    result
}

/// A database role `migrate up` creates or updates: its name, and the
/// password it logs in with (none: it authenticates otherwise, e.g. by
/// certificate or `peer`).
#[derive(Clone, Debug)]
pub struct RoleSpec {
    pub name: String,
    pub password: Option<streamforge_model::settings::Secret>,
}

impl RoleSpec {
    /// Checks the name: a plain lower-case SQL identifier.
    pub fn new(
        name: &str,
        password: Option<streamforge_model::settings::Secret>,
    ) -> Result<RoleSpec, StoreError> {
        let plain = name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
            && name.len() <= 63
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !plain {
            return Err(StoreError::Invalid(format!(
                "role name {name:?}: use lower-case letters, digits and _ (at most 63, not starting with a digit)"
            )));
        }
        Ok(RoleSpec {
            name: name.to_string(),
            password,
        })
    }
}

/// What each role may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Rights {
    /// Read every table; insert and update ticks, symbols, gaps and the
    /// rollups; add and drop partitions through the owner's functions.
    /// No DDL, no DELETE or TRUNCATE.
    Writer,
    /// Read every table.
    Reader,
}

/// Creates the roles when missing (or sets their password) and grants
/// what each may do on the current schema; run as the schema owner after
/// [`up`].
pub async fn grant_roles(
    client: &Client,
    writer: Option<&RoleSpec>,
    reader: Option<&RoleSpec>,
) -> Result<(), StoreError> {
    let mode = status(client).await?.mode.unwrap_or(Mode::Postgres);
    for (role, rights) in [(writer, Rights::Writer), (reader, Rights::Reader)] {
        let Some(role) = role else { continue };
        let name = &role.name;
        let found = client
            .query_opt(
                "SELECT rolsuper OR rolcreaterole OR rolname = current_user
                        OR pg_has_role(rolname, (SELECT relowner FROM pg_class WHERE relname = 'ticks' LIMIT 1), 'MEMBER')
                   FROM pg_roles WHERE rolname = $1",
                &[name],
            )
            .await?;
        // Never narrow a role that administers the database (the owner
        // running this, a superuser): these roles are to have less.
        if found.as_ref().is_some_and(|r| r.get::<_, bool>(0)) {
            return Err(StoreError::Invalid(format!(
                "role {name:?} is a superuser, may create roles, or owns the schema (it may be the one \
                 migrating): the writer and reader must be roles of their own, e.g. streamforge_writer"
            )));
        }
        let exists = found.is_some();
        let password = role
            .password
            .as_ref()
            .map(|p| format!(" PASSWORD '{}'", p.expose().replace('\'', "''")))
            .unwrap_or_default();
        let verb = if exists { "ALTER" } else { "CREATE" };
        client
            .batch_execute(&format!(
                "{verb} ROLE \"{name}\" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE{password}"
            ))
            .await?;
        let mut sql = format!(
            "GRANT USAGE ON SCHEMA public TO \"{name}\";
             GRANT SELECT ON ALL TABLES IN SCHEMA public TO \"{name}\";"
        );
        if rights == Rights::Writer {
            sql.push_str(&format!(
                "GRANT INSERT, UPDATE ON ticks, symbols, gaps, ledger TO \"{name}\";"
            ));
            if mode == Mode::Postgres {
                sql.push_str(&format!(
                    "GRANT INSERT, UPDATE ON candles_1s, candles_1m, candles_1h, candles_1d TO \"{name}\";
                     GRANT EXECUTE ON FUNCTION streamforge_add_partition(BIGINT),
                         streamforge_drop_partitions_before(BIGINT) TO \"{name}\";"
                ));
            }
        }
        client.batch_execute(&sql).await?;
        tracing::info!(role = %name, rights = ?rights, %mode, "database role granted");
    }
    Ok(())
}

/// The advisory lock every schema change holds, so that concurrent
/// `migrate` and `persist` processes take turns.
const LOCK: &str = "SELECT pg_advisory_lock(727274)";
const UNLOCK: &str = "SELECT pg_advisory_unlock(727274)";

/// Reverts the latest migration (under the same lock as [`up`]).
pub async fn down(client: &mut Client) -> Result<SchemaStatus, StoreError> {
    client.batch_execute(LOCK).await?;
    let result = down_locked(client).await;
    client.batch_execute(UNLOCK).await?;
    result
}

async fn down_locked(client: &mut Client) -> Result<SchemaStatus, StoreError> {
    let current = status(client).await?;
    let Some(mode) = current.mode else {
        return Ok(current);
    };
    let m = &MIGRATIONS[current.version as usize - 1];
    let tx = client.transaction().await?;
    let sql = m.down(mode);
    if !sql.trim().is_empty() {
        tx.batch_execute(sql).await?;
    }
    tx.execute(
        "DELETE FROM streamforge_schema WHERE version = $1",
        &[&(current.version as i32)],
    )
    .await?;
    tx.commit().await?;
    tracing::info!(
        version = current.version,
        name = m.name,
        "postgres migration reverted"
    );
    status(client).await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `"10 seconds"` → microseconds.
    fn micros_of(text: &str) -> i64 {
        let (n, unit) = text.split_once(' ').unwrap();
        let n: i64 = n.parse().unwrap();
        let unit_s = match unit.trim_end_matches('s') {
            "second" => 1,
            "minute" => 60,
            "hour" => 3_600,
            "day" => 86_400,
            other => panic!("unit {other}"),
        };
        n * unit_s * 1_000_000
    }

    /// The refresh policy of `candles_{iv}` in the frozen TimescaleDB
    /// migration 4: its start offset, end offset and schedule.
    fn policy_of(iv: Interval) -> (String, String, String) {
        let sql = MIGRATIONS[3].timescaledb[0];
        let at = sql
            .find(&format!("add_continuous_aggregate_policy('candles_{iv}',"))
            .unwrap_or_else(|| panic!("no policy for candles_{iv}"));
        let quoted = |key: &str| {
            let from = sql[at..].find(key).unwrap() + at + key.len();
            let rest = &sql[from..];
            let open = rest.find('\'').unwrap() + 1;
            let close = rest[open..].find('\'').unwrap() + open;
            rest[open..close].to_string()
        };
        (
            quoted("start_offset"),
            quoted("end_offset"),
            quoted("schedule_interval"),
        )
    }

    /// The writer refreshes what the policy may have materialized: its lag
    /// must be the policy's end offset, level by level, and each level's
    /// refresh window must reach further back than its lag.
    #[test]
    fn refresh_lags_are_the_policies_end_offsets() {
        let expected = [
            (Interval::S1, 10_000_000),
            (Interval::M1, 60_000_000),
            (Interval::H1, 3_600_000_000),
            (Interval::D1, 86_400_000_000),
        ];
        for iv in Interval::ROLLUPS {
            let (start, end, every) = policy_of(iv);
            let lag = refresh_lag(iv);
            if let Some((_, want)) = expected.iter().find(|(i, _)| *i == iv) {
                assert_eq!(lag, *want, "{iv}");
            }
            assert_eq!(micros_of(&end), lag, "{iv}: policy end offset {end}");
            assert!(micros_of(&start) > lag + iv.micros(), "{iv}: start {start}");
            assert!(
                micros_of(&every) <= micros_of(&start),
                "{iv}: every {every}"
            );
        }
    }

    /// A migration that shipped is never edited: each file's checksum is
    /// the one recorded when it shipped, and every file is recorded.
    #[test]
    fn shipped_migrations_never_change() {
        let mut files = Vec::new();
        for (i, m) in MIGRATIONS.iter().enumerate() {
            let slug = m.name.replace(' ', "_");
            for mode in [Mode::Postgres, Mode::TimescaleDb] {
                for (kind, sql) in ["up", "down"].iter().zip(m.files(mode)) {
                    files.push((format!("{mode}/{:04}_{slug}.{kind}.sql", i + 1), *sql));
                }
            }
        }
        let on_disk = ["postgres", "timescaledb"]
            .iter()
            .flat_map(|mode| {
                let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("src/postgres/migrations")
                    .join(mode);
                std::fs::read_dir(&dir)
                    .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
                    .map(move |f| format!("{mode}/{}", f.unwrap().file_name().to_string_lossy()))
            })
            .count();
        assert_eq!(
            on_disk,
            files.len(),
            "every migration file is in MIGRATIONS"
        );
        for (name, sql) in &files {
            let sum = xxhash_rust::xxh3::xxh3_64(sql.as_bytes());
            match SHIPPED.iter().find(|(n, _)| n == name) {
                Some((_, shipped)) => assert_eq!(
                    sum, *shipped,
                    "{name} changed after it shipped: add a new migration instead"
                ),
                None => panic!("{name} is not in SHIPPED; record it: (\"{name}\", 0x{sum:016x}),"),
            }
        }
        assert_eq!(
            SHIPPED.len(),
            files.len(),
            "SHIPPED names a file that is gone"
        );
    }

    /// The parameters of migration 1 take the schema settings.
    #[test]
    fn the_settings_fill_the_parameters_of_the_frozen_sql() {
        let o = PostgresConfig {
            chunk_days: 3,
            compress_after_days: 9,
            retention_days: 0,
            ..PostgresConfig::default()
        };
        let sql = MIGRATIONS[0].up(Mode::TimescaleDb, &o);
        assert!(
            sql.contains("chunk_time_interval => INTERVAL '3 days'"),
            "{sql}"
        );
        assert!(
            sql.contains("add_compression_policy('ticks', INTERVAL '9 days')"),
            "{sql}"
        );
        assert!(
            !sql.contains("add_retention_policy") && !sql.contains('{'),
            "{sql}"
        );
        let sql = MIGRATIONS[0].up(Mode::TimescaleDb, &PostgresConfig::default());
        assert!(
            sql.contains("add_retention_policy('ticks', INTERVAL '30 days');"),
            "{sql}"
        );
        for m in MIGRATIONS {
            for mode in [Mode::Postgres, Mode::TimescaleDb] {
                let up = m.up(mode, &PostgresConfig::default());
                assert!(!up.contains("{chunk_days}") && !up.contains("{retention_policy}"));
            }
        }
    }
}
