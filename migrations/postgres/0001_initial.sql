-- storecast's tables (PostgreSQL). The SQLite twin in ../sqlite/ must describe the same data.

-- Daily sales per store and product. Ingest upserts by the primary key, so replaying a
-- message changes nothing.
CREATE TABLE sales (
    store          integer  NOT NULL CHECK (store > 0),
    product        text     NOT NULL,
    date           date     NOT NULL,
    day_of_week    smallint NOT NULL CHECK (day_of_week BETWEEN 1 AND 7),
    sales          integer  NOT NULL CHECK (sales >= 0),
    customers      integer  NOT NULL CHECK (customers >= 0),
    open           boolean  NOT NULL,
    promo          boolean  NOT NULL,
    state_holiday  text     NOT NULL CHECK (state_holiday IN ('0', 'a', 'b', 'c')),
    school_holiday boolean  NOT NULL,
    PRIMARY KEY (store, product, date)
);

-- The model registry: one row per trained version of a series.
CREATE TABLE model_versions (
    store        integer     NOT NULL,
    product      text        NOT NULL,
    version      integer     NOT NULL CHECK (version > 0),
    profile      text        NOT NULL,
    params       bytea       NOT NULL,  -- the fitted model, encoded by the forecast engine
    metrics      jsonb       NOT NULL,  -- walk-forward CV: rmse, mape, mae, median_ae
    trained_from date        NOT NULL,
    trained_to   date        NOT NULL,
    trained_at   timestamptz NOT NULL DEFAULT now(),
    node         text        NOT NULL,
    PRIMARY KEY (store, product, version)
);

-- Batch forecasts; rewriting the same version's forecast for a day replaces it.
CREATE TABLE forecast_results (
    store         integer          NOT NULL,
    product       text             NOT NULL,
    forecast_date date             NOT NULL,
    forecast_sale double precision NOT NULL,
    lower_ci      double precision NOT NULL,
    upper_ci      double precision NOT NULL,
    model_version integer          NOT NULL,
    created_at    timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (store, product, forecast_date, model_version)
);

-- Train-all and retrain requests, with their progress.
CREATE TABLE jobs (
    id          bigserial   PRIMARY KEY,
    kind        text        NOT NULL CHECK (kind IN ('train_all', 'retrain')),
    state       text        NOT NULL DEFAULT 'pending'
                            CHECK (state IN ('pending', 'running', 'succeeded', 'failed', 'cancelled')),
    profile     text        NOT NULL,
    total       integer     NOT NULL DEFAULT 0,
    done        integer     NOT NULL DEFAULT 0,
    failed      integer     NOT NULL DEFAULT 0,
    error       text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    started_at  timestamptz,
    finished_at timestamptz
);

-- One row per series a job trains; a task is done at most once per job.
CREATE TABLE job_tasks (
    job_id        bigint      NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    store         integer     NOT NULL,
    product       text        NOT NULL,
    state         text        NOT NULL DEFAULT 'pending'
                              CHECK (state IN ('pending', 'running', 'succeeded', 'failed')),
    attempts      integer     NOT NULL DEFAULT 0,
    node          text,
    model_version integer,
    error         text,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job_id, store, product)
);

-- Kafka messages that could not be parsed or stored, kept for inspection.
CREATE TABLE ingest_rejects (
    id          bigserial   PRIMARY KEY,
    topic       text        NOT NULL,
    partition   integer     NOT NULL,
    "offset"    bigint      NOT NULL,
    payload     bytea       NOT NULL,
    reason      text        NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (topic, partition, "offset")
);
