-- The sink's insert intents: before inserting the records of offsets [first_offset, end_offset) of a
-- partition it writes the range here, and after a crash or a rebalance the next owner of the partition
-- re-inserts exactly that range, so the insert deduplication token matches and nothing is doubled.
-- `topic_id` tells a range of this topic from one of an earlier topic of the same name (the embedded broker
-- starts empty every run). Kafka commit metadata would be the natural place, but the embedded broker drops it.
CREATE TABLE IF NOT EXISTS sink_intents
(
    `consumer_group` LowCardinality(String),
    `topic` LowCardinality(String),
    `topic_id` String,
    `partition` UInt32,
    `first_offset` UInt64,
    `end_offset` UInt64,
    `written` DateTime64(6, 'UTC') DEFAULT now64(6)
)
ENGINE = ReplacingMergeTree(written)
ORDER BY (consumer_group, topic, partition)
TTL toDateTime(written) + INTERVAL 30 DAY;
