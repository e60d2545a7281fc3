-- Rollups of flows, fed by materialized views straight from `flows` (not chained, so that every view is
-- one dependent of the insert and deduplicates with it: the sink sets
-- deduplicate_blocks_in_dependent_materialized_views=1, and every target carries the dedup window).
-- SummingMergeTree folds rows of one key on merge; read them with sum() ... GROUP BY all the same.
-- Like the raw tables, rollups keep rows for a while after they arrive (`_inserted`), whatever their time.

-- Per second and link: the live view.
CREATE TABLE IF NOT EXISTS link_stats_1s
(
    `ts` DateTime('UTC'),
    `link` LowCardinality(String),
    `direction` LowCardinality(String),
    `leaf` LowCardinality(String),
    `spine` LowCardinality(String),
    `flows` UInt64,
    `packets` UInt64,
    `bytes` UInt64,
    `ecn_ect` UInt64,
    `ecn_ce` UInt64,
    `cnp` UInt64,
    `psn_gaps` UInt64,
    `naks` UInt64,
    `_inserted` DateTime MATERIALIZED now()
)
ENGINE = SummingMergeTree
PARTITION BY toYYYYMMDD(ts)
ORDER BY (link, direction, leaf, spine, ts)
TTL _inserted + INTERVAL 2 DAY
SETTINGS non_replicated_deduplication_window = 1000;

CREATE MATERIALIZED VIEW IF NOT EXISTS link_stats_1s_mv TO link_stats_1s AS
SELECT
    toDateTime(ts_start, 'UTC') AS ts, link, direction, leaf, spine,
    count() AS flows, sum(packets) AS packets, sum(bytes) AS bytes, sum(ecn_ect) AS ecn_ect,
    sum(ecn_ce) AS ecn_ce, sum(cnp) AS cnp, sum(psn_gaps) AS psn_gaps, sum(naks) AS naks
FROM flows
GROUP BY ts, link, direction, leaf, spine;

-- Per minute and per hour, by link, application, traffic class and job: history.
CREATE TABLE IF NOT EXISTS flows_1m
(
    `ts` DateTime('UTC'),
    `link` LowCardinality(String),
    `direction` LowCardinality(String),
    `leaf` LowCardinality(String),
    `spine` LowCardinality(String),
    `app` LowCardinality(String),
    `traffic_class` LowCardinality(String),
    `job` LowCardinality(String),
    `flows` UInt64,
    `packets` UInt64,
    `bytes` UInt64,
    `ecn_ect` UInt64,
    `ecn_ce` UInt64,
    `cnp` UInt64,
    `roce_write` UInt64,
    `roce_read` UInt64,
    `roce_send` UInt64,
    `roce_ack` UInt64,
    `psn_gaps` UInt64,
    `naks` UInt64,
    `_inserted` DateTime MATERIALIZED now()
)
ENGINE = SummingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (link, direction, leaf, spine, app, traffic_class, job, ts)
TTL _inserted + INTERVAL 90 DAY
SETTINGS non_replicated_deduplication_window = 1000;

CREATE MATERIALIZED VIEW IF NOT EXISTS flows_1m_mv TO flows_1m AS
SELECT
    toStartOfMinute(ts_start) AS ts, link, direction, leaf, spine, app, traffic_class, job,
    count() AS flows, sum(packets) AS packets, sum(bytes) AS bytes, sum(ecn_ect) AS ecn_ect,
    sum(ecn_ce) AS ecn_ce, sum(cnp) AS cnp, sum(roce_write) AS roce_write, sum(roce_read) AS roce_read,
    sum(roce_send) AS roce_send, sum(roce_ack) AS roce_ack, sum(psn_gaps) AS psn_gaps, sum(naks) AS naks
FROM flows
GROUP BY ts, link, direction, leaf, spine, app, traffic_class, job;

CREATE TABLE IF NOT EXISTS flows_1h
(
    `ts` DateTime('UTC'),
    `link` LowCardinality(String),
    `direction` LowCardinality(String),
    `leaf` LowCardinality(String),
    `spine` LowCardinality(String),
    `app` LowCardinality(String),
    `traffic_class` LowCardinality(String),
    `job` LowCardinality(String),
    `flows` UInt64,
    `packets` UInt64,
    `bytes` UInt64,
    `ecn_ect` UInt64,
    `ecn_ce` UInt64,
    `cnp` UInt64,
    `roce_write` UInt64,
    `roce_read` UInt64,
    `roce_send` UInt64,
    `roce_ack` UInt64,
    `psn_gaps` UInt64,
    `naks` UInt64,
    `_inserted` DateTime MATERIALIZED now()
)
ENGINE = SummingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (link, direction, leaf, spine, app, traffic_class, job, ts)
TTL _inserted + INTERVAL 730 DAY
SETTINGS non_replicated_deduplication_window = 1000;

CREATE MATERIALIZED VIEW IF NOT EXISTS flows_1h_mv TO flows_1h AS
SELECT
    toStartOfHour(ts_start) AS ts, link, direction, leaf, spine, app, traffic_class, job,
    count() AS flows, sum(packets) AS packets, sum(bytes) AS bytes, sum(ecn_ect) AS ecn_ect,
    sum(ecn_ce) AS ecn_ce, sum(cnp) AS cnp, sum(roce_write) AS roce_write, sum(roce_read) AS roce_read,
    sum(roce_send) AS roce_send, sum(roce_ack) AS roce_ack, sum(psn_gaps) AS psn_gaps, sum(naks) AS naks
FROM flows
GROUP BY ts, link, direction, leaf, spine, app, traffic_class, job;
