-- The indexer's tables: raw events per block (the source of truth), remembered block
-- hashes for reorg detection, the agents projected from the events, and their tags.
-- Applied on every open, so every statement is IF NOT EXISTS.
PRAGMA synchronous = NORMAL;
CREATE TABLE IF NOT EXISTS chains (
    chain_id     INTEGER PRIMARY KEY,
    registry     TEXT NOT NULL,
    cursor_block INTEGER,
    cursor_hash  TEXT
);
CREATE TABLE IF NOT EXISTS blocks (
    chain_id INTEGER NOT NULL,
    number   INTEGER NOT NULL,
    hash     TEXT NOT NULL,
    PRIMARY KEY (chain_id, number)
);
CREATE TABLE IF NOT EXISTS events (
    chain_id     INTEGER NOT NULL,
    block        INTEGER NOT NULL,
    log_index    INTEGER NOT NULL,
    block_hash   TEXT NOT NULL,
    tx_hash      TEXT NOT NULL,
    agent_id     INTEGER NOT NULL,
    kind         TEXT NOT NULL
        CHECK (kind IN ('registered', 'uri_updated', 'metadata_set', 'transfer')),
    address      TEXT,
    from_address TEXT,
    uri          TEXT,
    meta_key     TEXT,
    meta_value   BLOB,
    PRIMARY KEY (chain_id, block, log_index)
);
CREATE INDEX IF NOT EXISTS events_by_agent ON events (chain_id, agent_id, block, log_index);
CREATE TABLE IF NOT EXISTS agents (
    chain_id         INTEGER NOT NULL,
    agent_id         INTEGER NOT NULL,
    registry         TEXT NOT NULL,
    owner            TEXT NOT NULL,
    uri              TEXT NOT NULL,
    metadata         TEXT NOT NULL,
    registered_block INTEGER NOT NULL,
    registered_tx    TEXT NOT NULL,
    updated_block    INTEGER NOT NULL,
    registration     TEXT,
    name             TEXT NOT NULL,
    description      TEXT NOT NULL,
    image            TEXT,
    search_text      TEXT NOT NULL,
    x402             INTEGER NOT NULL,
    active           INTEGER NOT NULL,
    service_type     TEXT,
    skills           TEXT NOT NULL,
    domains          TEXT NOT NULL,
    protocols        TEXT NOT NULL,
    services         TEXT NOT NULL,
    fetch_status     TEXT NOT NULL CHECK (fetch_status IN ('pending', 'ok', 'error', 'none')),
    fetch_error_kind TEXT,
    fetch_error      TEXT,
    fetched_at       INTEGER,
    PRIMARY KEY (chain_id, agent_id)
);
CREATE INDEX IF NOT EXISTS agents_registered ON agents (registered_block, chain_id, agent_id);
CREATE INDEX IF NOT EXISTS agents_owner ON agents (owner);
CREATE INDEX IF NOT EXISTS agents_pending ON agents (chain_id, agent_id) WHERE fetch_status = 'pending';
CREATE TABLE IF NOT EXISTS tags (
    chain_id INTEGER NOT NULL,
    agent_id INTEGER NOT NULL,
    kind     TEXT NOT NULL CHECK (kind IN ('skill', 'domain', 'protocol')),
    value    TEXT NOT NULL,
    PRIMARY KEY (chain_id, agent_id, kind, value)
);
CREATE INDEX IF NOT EXISTS tags_by_value ON tags (kind, value, chain_id, agent_id);
