//! Opens agora's local SQLite databases (the offers store, the facilitator journal, the
//! gateway's payment ledger, the indexer) one way, so every one of them gets WAL (readers
//! never block the writer), the same busy timeout (a second connection waits for a lock
//! instead of failing at once) and its schema applied on open.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

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
}
