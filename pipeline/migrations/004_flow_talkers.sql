-- Top talkers: bytes and packets per source and destination address, link, application, traffic class and
-- job, per minute and per hour, so the flow explorer's top talkers over a long window read thousands of
-- rows instead of scanning raw `flows`. Fed like 002 by materialized views straight from `flows` (each one
-- dependent of the insert, deduplicated with it), every target carrying the dedup window; retention counts
-- from arrival. The time leads the sort key: every read of these tables is bounded by a window.
-- SummingMergeTree folds rows of one key on merge; read them with sum() ... GROUP BY all the same.

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

CREATE MATERIALIZED VIEW IF NOT EXISTS flows_talkers_1h_mv TO flows_talkers_1h AS
SELECT
    toStartOfHour(ts_start) AS ts, link, app, traffic_class, job, src_ip, dst_ip,
    count() AS flows, sum(packets) AS packets, sum(bytes) AS bytes
FROM flows
GROUP BY ts, link, app, traffic_class, job, src_ip, dst_ip;
