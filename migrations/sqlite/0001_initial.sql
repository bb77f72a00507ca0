-- storecast's tables (SQLite, the embedded default). Same data as ../postgres/: dates are
-- TEXT 'YYYY-MM-DD', times TEXT in UTC, booleans INTEGER 0/1, JSON as TEXT.

CREATE TABLE sales (
    store          INTEGER NOT NULL CHECK (store > 0),
    product        TEXT    NOT NULL,
    date           TEXT    NOT NULL,
    day_of_week    INTEGER NOT NULL CHECK (day_of_week BETWEEN 1 AND 7),
    sales          INTEGER NOT NULL CHECK (sales >= 0),
    customers      INTEGER NOT NULL CHECK (customers >= 0),
    open           INTEGER NOT NULL CHECK (open IN (0, 1)),
    promo          INTEGER NOT NULL CHECK (promo IN (0, 1)),
    state_holiday  TEXT    NOT NULL CHECK (state_holiday IN ('0', 'a', 'b', 'c')),
    school_holiday INTEGER NOT NULL CHECK (school_holiday IN (0, 1)),
    PRIMARY KEY (store, product, date)
) WITHOUT ROWID;

CREATE TABLE model_versions (
    store        INTEGER NOT NULL,
    product      TEXT    NOT NULL,
    version      INTEGER NOT NULL CHECK (version > 0),
    profile      TEXT    NOT NULL,
    params       BLOB    NOT NULL,
    metrics      TEXT    NOT NULL,
    trained_from TEXT    NOT NULL,
    trained_to   TEXT    NOT NULL,
    trained_at   TEXT    NOT NULL DEFAULT CURRENT_TIMESTAMP,
    node         TEXT    NOT NULL,
    PRIMARY KEY (store, product, version)
);

CREATE TABLE forecast_results (
    store         INTEGER NOT NULL,
    product       TEXT    NOT NULL,
    forecast_date TEXT    NOT NULL,
    forecast_sale REAL    NOT NULL,
    lower_ci      REAL    NOT NULL,
    upper_ci      REAL    NOT NULL,
    model_version INTEGER NOT NULL,
    created_at    TEXT    NOT NULL DEFAULT CURRENT_TIMESTAMP,
    PRIMARY KEY (store, product, forecast_date, model_version)
);

CREATE TABLE jobs (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    kind        TEXT    NOT NULL CHECK (kind IN ('train_all', 'retrain')),
    state       TEXT    NOT NULL DEFAULT 'pending'
                        CHECK (state IN ('pending', 'running', 'succeeded', 'failed', 'cancelled')),
    profile     TEXT    NOT NULL,
    total       INTEGER NOT NULL DEFAULT 0,
    done        INTEGER NOT NULL DEFAULT 0,
    failed      INTEGER NOT NULL DEFAULT 0,
    error       TEXT,
    created_at  TEXT    NOT NULL DEFAULT CURRENT_TIMESTAMP,
    started_at  TEXT,
    finished_at TEXT
);

CREATE TABLE job_tasks (
    job_id        INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    store         INTEGER NOT NULL,
    product       TEXT    NOT NULL,
    state         TEXT    NOT NULL DEFAULT 'pending'
                          CHECK (state IN ('pending', 'running', 'succeeded', 'failed')),
    attempts      INTEGER NOT NULL DEFAULT 0,
    node          TEXT,
    model_version INTEGER,
    error         TEXT,
    updated_at    TEXT    NOT NULL DEFAULT CURRENT_TIMESTAMP,
    PRIMARY KEY (job_id, store, product)
);

CREATE TABLE ingest_rejects (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    topic       TEXT    NOT NULL,
    partition   INTEGER NOT NULL,
    "offset"    INTEGER NOT NULL,
    payload     BLOB    NOT NULL,
    reason      TEXT    NOT NULL,
    received_at TEXT    NOT NULL DEFAULT CURRENT_TIMESTAMP,
    UNIQUE (topic, partition, "offset")
);
