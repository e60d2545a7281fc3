-- Raw record tables, rendered from pipeline/records.py by `python -m pipeline.migrate`.

CREATE TABLE IF NOT EXISTS flows
(
    `ts_start` DateTime64(6, 'UTC'),
    `ts_end` DateTime64(6, 'UTC'),
    `exporter` LowCardinality(String),
    `link` LowCardinality(String),
    `direction` LowCardinality(String),
    `leaf` LowCardinality(String),
    `spine` LowCardinality(String),
    `src_ip` IPv6,
    `dst_ip` IPv6,
    `src_port` UInt16,
    `dst_port` UInt16,
    `proto` UInt8,
    `vlan` UInt16,
    `vni` UInt32,
    `dscp` UInt8,
    `roce_qp` UInt32,
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
    `app` LowCardinality(String),
    `app_detail` String,
    `traffic_class` LowCardinality(String),
    `confidence` Float32,
    `job` LowCardinality(String),
    `sampling_rate` UInt32,
    `ts_tail` DateTime64(6, 'UTC'),
    `psn_first` UInt32,
    `psn_last` UInt32,
    `_inserted` DateTime MATERIALIZED now()
)
ENGINE = MergeTree
PARTITION BY toYYYYMMDD(ts_start)
ORDER BY (link, direction, ts_start)
TTL _inserted + INTERVAL 14 DAY
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS link_bins
(
    `ts` DateTime64(6, 'UTC'),
    `exporter` LowCardinality(String),
    `link` LowCardinality(String),
    `direction` LowCardinality(String),
    `leaf` LowCardinality(String),
    `spine` LowCardinality(String),
    `ts_first` DateTime64(6, 'UTC'),
    `ts_last` DateTime64(6, 'UTC'),
    `packets` UInt64,
    `bytes` UInt64,
    `roce_packets` UInt64,
    `roce_ect` UInt64,
    `roce_ce` UInt64,
    `cnp` UInt64,
    `pfc_pause` UInt64,
    `pfc_quanta` UInt64,
    `ts_first_ce` DateTime64(6, 'UTC'),
    `ts_last_ce` DateTime64(6, 'UTC'),
    `sampling_rate` UInt32,
    `_inserted` DateTime MATERIALIZED now()
)
ENGINE = MergeTree
PARTITION BY toYYYYMMDD(ts)
ORDER BY (link, direction, ts)
TTL _inserted + INTERVAL 7 DAY
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS iterations
(
    `ts` DateTime64(6, 'UTC'),
    `ts_end` DateTime64(6, 'UTC'),
    `exporter` LowCardinality(String),
    `job` LowCardinality(String),
    `iteration` UInt64,
    `allreduce_ms` Float64,
    `period_ms` Float64,
    `packets` UInt64,
    `bytes` UInt64,
    `flows` UInt32,
    `links` Array(LowCardinality(String)),
    `_inserted` DateTime MATERIALIZED now()
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (job, ts)
TTL _inserted + INTERVAL 365 DAY
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS counters
(
    `ts` DateTime64(6, 'UTC'),
    `device` LowCardinality(String),
    `ifname` LowCardinality(String),
    `link` LowCardinality(String),
    `oper_up` UInt8,
    `speed_bps` UInt64,
    `in_octets` UInt64,
    `out_octets` UInt64,
    `in_pkts` UInt64,
    `out_pkts` UInt64,
    `in_errors` UInt64,
    `out_errors` UInt64,
    `in_discards` UInt64,
    `out_discards` UInt64,
    `fcs_errors` UInt64,
    `pfc_rx_pause` UInt64,
    `pfc_tx_pause` UInt64,
    `ecn_marked` UInt64,
    `source` LowCardinality(String),
    `_inserted` DateTime MATERIALIZED now()
)
ENGINE = MergeTree
PARTITION BY toYYYYMMDD(ts)
ORDER BY (device, ifname, ts)
TTL _inserted + INTERVAL 90 DAY
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS events
(
    `ts` DateTime64(6, 'UTC'),
    `ts_end` DateTime64(6, 'UTC'),
    `kind` LowCardinality(String),
    `severity` LowCardinality(String),
    `link` LowCardinality(String),
    `direction` LowCardinality(String),
    `device` LowCardinality(String),
    `job` LowCardinality(String),
    `summary` String,
    `convergence_ms` Nullable(Float64),
    `local_convergence_ms` Nullable(Float64),
    `remote_convergence_ms` Nullable(Float64),
    `flows_affected` UInt32,
    `flows_recovered` UInt32,
    `packets_lost` UInt64,
    `value` Nullable(Float64),
    `details` String,
    `_inserted` DateTime MATERIALIZED now()
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (kind, ts)
TTL _inserted + INTERVAL 365 DAY
SETTINGS non_replicated_deduplication_window = 1000;
