-- Flow rollups, rendered from pipeline/rollups.py by `python -m pipeline.migrate rollups`.
-- Each view is dropped and created again from its declaration; tables are kept with their rows.

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

DROP VIEW IF EXISTS link_stats_1s_mv;

CREATE MATERIALIZED VIEW IF NOT EXISTS link_stats_1s_mv TO link_stats_1s AS
SELECT
    toDateTime(ts_start, 'UTC') AS ts, link, direction, leaf, spine,
    count() AS flows, sum(packets) AS packets, sum(bytes) AS bytes, sum(ecn_ect) AS ecn_ect, sum(ecn_ce) AS ecn_ce, sum(cnp) AS cnp, sum(psn_gaps) AS psn_gaps, sum(naks) AS naks
FROM flows
GROUP BY ts, link, direction, leaf, spine;

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

DROP VIEW IF EXISTS flows_1m_mv;

CREATE MATERIALIZED VIEW IF NOT EXISTS flows_1m_mv TO flows_1m AS
SELECT
    toStartOfMinute(ts_start) AS ts, link, direction, leaf, spine, app, traffic_class, job,
    count() AS flows, sum(packets) AS packets, sum(bytes) AS bytes, sum(ecn_ect) AS ecn_ect, sum(ecn_ce) AS ecn_ce, sum(cnp) AS cnp, sum(roce_write) AS roce_write, sum(roce_read) AS roce_read, sum(roce_send) AS roce_send, sum(roce_ack) AS roce_ack, sum(psn_gaps) AS psn_gaps, sum(naks) AS naks
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

DROP VIEW IF EXISTS flows_1h_mv;

CREATE MATERIALIZED VIEW IF NOT EXISTS flows_1h_mv TO flows_1h AS
SELECT
    toStartOfHour(ts) AS ts, link, direction, leaf, spine, app, traffic_class, job,
    sum(flows) AS flows, sum(packets) AS packets, sum(bytes) AS bytes, sum(ecn_ect) AS ecn_ect, sum(ecn_ce) AS ecn_ce, sum(cnp) AS cnp, sum(roce_write) AS roce_write, sum(roce_read) AS roce_read, sum(roce_send) AS roce_send, sum(roce_ack) AS roce_ack, sum(psn_gaps) AS psn_gaps, sum(naks) AS naks
FROM flows_1m
GROUP BY ts, link, direction, leaf, spine, app, traffic_class, job;

CREATE TABLE IF NOT EXISTS flows_talkers_1m
(
    `ts` DateTime('UTC'),
    `link` LowCardinality(String),
    `app` LowCardinality(String),
    `traffic_class` LowCardinality(String),
    `job` LowCardinality(String),
    `src_ip` IPv6,
    `dst_ip` IPv6,
    `flows` UInt64,
    `packets` UInt64,
    `bytes` UInt64,
    `_inserted` DateTime MATERIALIZED now()
)
ENGINE = SummingMergeTree
PARTITION BY toYYYYMMDD(ts)
ORDER BY (ts, link, app, traffic_class, job, src_ip, dst_ip)
TTL _inserted + INTERVAL 14 DAY
SETTINGS non_replicated_deduplication_window = 1000;

DROP VIEW IF EXISTS flows_talkers_1m_mv;

CREATE MATERIALIZED VIEW IF NOT EXISTS flows_talkers_1m_mv TO flows_talkers_1m AS
SELECT
    toStartOfMinute(ts_start) AS ts, link, app, traffic_class, job, src_ip, dst_ip,
    count() AS flows, sum(packets) AS packets, sum(bytes) AS bytes
FROM flows
GROUP BY ts, link, app, traffic_class, job, src_ip, dst_ip;

CREATE TABLE IF NOT EXISTS flows_talkers_1h
(
    `ts` DateTime('UTC'),
    `link` LowCardinality(String),
    `app` LowCardinality(String),
    `traffic_class` LowCardinality(String),
    `job` LowCardinality(String),
    `src_ip` IPv6,
    `dst_ip` IPv6,
    `flows` UInt64,
    `packets` UInt64,
    `bytes` UInt64,
    `_inserted` DateTime MATERIALIZED now()
)
ENGINE = SummingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (ts, link, app, traffic_class, job, src_ip, dst_ip)
TTL _inserted + INTERVAL 90 DAY
SETTINGS non_replicated_deduplication_window = 1000;

DROP VIEW IF EXISTS flows_talkers_1h_mv;

CREATE MATERIALIZED VIEW IF NOT EXISTS flows_talkers_1h_mv TO flows_talkers_1h AS
SELECT
    toStartOfHour(ts) AS ts, link, app, traffic_class, job, src_ip, dst_ip,
    sum(flows) AS flows, sum(packets) AS packets, sum(bytes) AS bytes
FROM flows_talkers_1m
GROUP BY ts, link, app, traffic_class, job, src_ip, dst_ip;
