//! Opens agora's local SQLite databases (the offers store, the facilitator journal, the
//! gateway's payment ledger, the indexer) one way, so every one of them gets WAL (readers
//! never block the writer), the same busy timeout (a second connection waits for a lock
//! instead of failing at once) and its schema applied on open. Beside the opener: one
//! value codec ([`codec`]), one write-transaction helper ([`with_immediate`]) and one
//! schema-version runner ([`migrate`]), so the stores stop each carrying their own.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

pub mod codec;

/// How long a connection waits for another connection's lock before giving up.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Opens (creating if needed) the database at `path` in WAL mode and applies `schema`,
/// which must be idempotent (`CREATE ... IF NOT EXISTS`, pragmas) since it runs on every
/// open.
pub fn open(path: &Path, schema: &str) -> rusqlite::Result<Connection> {
    let conn = connect(path)?;
    conn.execute_batch("PRAGMA journal_mode = WAL;")?;
    conn.execute_batch(schema)?;
    Ok(conn)
}

/// A further connection to a database that [`open`] has set up (a reader beside the
/// writer): the busy timeout, no schema.
pub fn connect(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    Ok(conn)
}

/// Opens an existing database read-only, to look at what a running process writes
/// without taking its locks; writes through it fail.
pub fn open_read_only(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    Ok(conn)
}

/// The transaction around some work could not be begun or committed (the work itself
/// reports its own errors).
#[derive(Debug, thiserror::Error)]
pub enum TransactionError {
    /// `BEGIN IMMEDIATE` failed: another connection kept the write lock past the busy
    /// timeout.
    #[error("cannot begin a write transaction")]
    Begin(#[source] rusqlite::Error),
    /// `COMMIT` failed; everything was rolled back.
    #[error("cannot commit a write transaction")]
    Commit(#[source] rusqlite::Error),
}

impl From<TransactionError> for rusqlite::Error {
    fn from(e: TransactionError) -> Self {
        match e {
            TransactionError::Begin(e) | TransactionError::Commit(e) => e,
        }
    }
}

/// Runs `f` in a `BEGIN IMMEDIATE` transaction: the write lock is taken before `f`
/// reads, so a check and the write that depends on it cannot interleave with another
/// connection's. Commits when `f` returns `Ok`, rolls back when it returns `Err`.
pub fn with_immediate<T, E>(
    conn: &Connection,
    f: impl FnOnce(&Connection) -> Result<T, E>,
) -> Result<T, E>
where
    E: From<TransactionError>,
{
    conn.execute_batch("BEGIN IMMEDIATE")
        .map_err(TransactionError::Begin)?;
    let done = f(conn);
    let end = if done.is_ok() { "COMMIT" } else { "ROLLBACK" };
    if let Err(e) = conn.execute_batch(end) {
        let _ = conn.execute_batch("ROLLBACK");
        return Err(TransactionError::Commit(e).into());
    }
    done
}

/// One schema change, run once per database.
pub type Migration = fn(&Connection) -> rusqlite::Result<()>;

/// Brings a database to the newest schema version: runs the `steps` above its
/// `PRAGMA user_version` (step `i` makes version `i + 1`) and records the new version,
/// all in one transaction, so a crash leaves the old version or the new, never half.
/// A database of a newer agora (version above `steps.len()`) is left as it is.
pub fn migrate(conn: &Connection, steps: &[Migration]) -> rusqlite::Result<()> {
    with_immediate(conn, |conn| {
        let version: i64 = conn.query_row("PRAGMA user_version", [], |row| row.get(0))?;
        let done = usize::try_from(version).unwrap_or(0);
        if done >= steps.len() {
            return Ok(());
        }
        for step in &steps[done..] {
            step(conn)?;
        }
        conn.execute_batch(&format!("PRAGMA user_version = {};", steps.len()))
    })
}

/// Adds `column` to `table` unless it is there: the step for a column the current
/// schema already creates, so it runs the same on an old database and a new one.
pub fn add_column_if_missing(
    conn: &Connection,
    table: &str,
    column: &str,
    definition: &str,
) -> rusqlite::Result<()> {
    let present = conn
        .prepare("SELECT 1 FROM pragma_table_info(?1) WHERE name = ?2")?
        .exists([table, column])?;
    if !present {
        conn.execute_batch(&format!(
            "ALTER TABLE {table} ADD COLUMN {column} {definition};"
        ))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS t (k TEXT PRIMARY KEY);";

    #[test]
    fn open_sets_wal_and_applies_the_schema_every_time() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        let conn = open(&path, SCHEMA).unwrap();
        conn.execute("INSERT INTO t (k) VALUES ('a')", []).unwrap();
        let mode: String = conn
            .query_row("PRAGMA journal_mode", [], |row| row.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        drop(conn);
        let again = open(&path, SCHEMA).unwrap();
        let rows: i64 = again
            .query_row("SELECT count(*) FROM t", [], |row| row.get(0))
            .unwrap();
        assert_eq!(rows, 1, "reopening keeps the data");
        let waits: i64 = again
            .query_row("PRAGMA busy_timeout", [], |row| row.get(0))
            .unwrap();
        assert_eq!(waits, 5000);
    }

    #[test]
    fn a_reader_sees_the_writer_and_read_only_cannot_write() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        let writer = open(&path, SCHEMA).unwrap();
        writer
            .execute("INSERT INTO t (k) VALUES ('a')", [])
            .unwrap();
        let reader = connect(&path).unwrap();
        let seen: String = reader
            .query_row("SELECT k FROM t", [], |row| row.get(0))
            .unwrap();
        assert_eq!(seen, "a");
        let inspector = open_read_only(&path).unwrap();
        assert!(
            inspector
                .execute("INSERT INTO t (k) VALUES ('b')", [])
                .is_err()
        );
        assert!(open_read_only(&dir.path().join("missing.sqlite")).is_err());
    }

    #[test]
    fn with_immediate_commits_on_ok_and_rolls_back_on_err() {
        let dir = tempfile::tempdir().unwrap();
        let conn = open(&dir.path().join("db.sqlite"), SCHEMA).unwrap();
        let kept: rusqlite::Result<()> = with_immediate(&conn, |c| {
            c.execute("INSERT INTO t (k) VALUES ('kept')", []).map(drop)
        });
        kept.unwrap();
        let undone: rusqlite::Result<()> = with_immediate(&conn, |c| {
            c.execute("INSERT INTO t (k) VALUES ('undone')", [])?;
            c.execute("INSERT INTO t (k) VALUES ('kept')", []).map(drop)
        });
        assert!(undone.is_err(), "the duplicate key fails the work");
        let keys: Vec<String> = conn
            .prepare("SELECT k FROM t")
            .unwrap()
            .query_map([], |row| row.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(keys, ["kept"]);
        assert!(conn.is_autocommit(), "no transaction is left open");
    }

    #[test]
    fn with_immediate_reports_a_held_write_lock_as_begin() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        let holder = open(&path, SCHEMA).unwrap();
        holder.execute_batch("BEGIN IMMEDIATE").unwrap();
        let other = connect(&path).unwrap();
        other.busy_timeout(Duration::from_millis(10)).unwrap();
        let refused: Result<(), TransactionError> = with_immediate(&other, |_| Ok(()));
        assert!(matches!(refused, Err(TransactionError::Begin(_))));
    }

    fn add_n(conn: &Connection) -> rusqlite::Result<()> {
        add_column_if_missing(conn, "t", "n", "INTEGER NOT NULL DEFAULT 0")
    }

    fn add_m(conn: &Connection) -> rusqlite::Result<()> {
        add_column_if_missing(conn, "t", "m", "TEXT")
    }

    fn fail(conn: &Connection) -> rusqlite::Result<()> {
        conn.execute_batch("ALTER TABLE missing ADD COLUMN x TEXT")
    }

    fn version(conn: &Connection) -> i64 {
        conn.query_row("PRAGMA user_version", [], |row| row.get(0))
            .unwrap()
    }

    #[test]
    fn migrate_runs_only_the_steps_above_the_stored_version() {
        let dir = tempfile::tempdir().unwrap();
        let conn = open(&dir.path().join("db.sqlite"), SCHEMA).unwrap();
        conn.execute("INSERT INTO t (k) VALUES ('old')", [])
            .unwrap();
        migrate(&conn, &[add_n]).unwrap();
        assert_eq!(version(&conn), 1);
        conn.execute("UPDATE t SET n = 7", []).unwrap();
        migrate(&conn, &[add_n, add_m]).unwrap();
        assert_eq!(version(&conn), 2);
        let (n, m): (i64, Option<String>) = conn
            .query_row("SELECT n, m FROM t", [], |row| {
                Ok((row.get(0)?, row.get(1)?))
            })
            .unwrap();
        assert_eq!(
            (n, m),
            (7, None),
            "old rows keep their values and gain the defaults"
        );
        migrate(&conn, &[add_n]).unwrap();
        assert_eq!(version(&conn), 2, "a newer database is left alone");
    }

    #[test]
    fn a_failing_step_leaves_the_old_version_and_schema() {
        let dir = tempfile::tempdir().unwrap();
        let conn = open(&dir.path().join("db.sqlite"), SCHEMA).unwrap();
        assert!(migrate(&conn, &[add_n, fail]).is_err());
        assert_eq!(version(&conn), 0);
        let columns: i64 = conn
            .query_row("SELECT count(*) FROM pragma_table_info('t')", [], |row| {
                row.get(0)
            })
            .unwrap();
        assert_eq!(columns, 1, "the first step was rolled back with the second");
        assert!(conn.is_autocommit());
    }

    #[test]
    fn add_column_if_missing_is_a_no_op_when_the_schema_has_it() {
        let dir = tempfile::tempdir().unwrap();
        let conn = open(&dir.path().join("db.sqlite"), SCHEMA).unwrap();
        add_n(&conn).unwrap();
        add_n(&conn).unwrap();
        conn.execute("INSERT INTO t (k) VALUES ('a')", []).unwrap();
    }
}
