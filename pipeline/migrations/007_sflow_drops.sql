-- `drops` (records.py, columns `since=7`): one row per sFlow dropped-packet notification, with the agent,
-- the link of the port the packet came in on (or was going out of) and the reason the switch gave.
CREATE TABLE IF NOT EXISTS drops
(
    `ts` DateTime64(6, 'UTC'),
    `device` LowCardinality(String),
    `link` LowCardinality(String),
    `input_ifindex` UInt32,
    `output_ifindex` UInt32,
    `reason_code` UInt32,
    `reason` LowCardinality(String),
    `unreported` UInt32,
    `source` LowCardinality(String),
    `_inserted` DateTime MATERIALIZED now()
)
ENGINE = MergeTree
PARTITION BY toYYYYMMDD(ts)
ORDER BY (device, reason, ts)
TTL _inserted + INTERVAL 90 DAY
SETTINGS non_replicated_deduplication_window = 1000;
