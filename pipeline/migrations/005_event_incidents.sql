-- Events become incidents (DESIGN.md section 5): one incident is written when it opens, when it changes
-- materially and when it closes, as rows sharing an `event_id`; readers see each incident's latest row
-- through the `incidents` view. Rows written before this migration read as closed incidents of their own:
-- the defaults compute their id from what identified them and take their end as their last update.
ALTER TABLE events ADD COLUMN IF NOT EXISTS `event_id` String
    DEFAULT lower(hex(cityHash64(kind, link, direction, device, job, ts)));
ALTER TABLE events ADD COLUMN IF NOT EXISTS `state` LowCardinality(String) DEFAULT 'closed';
ALTER TABLE events ADD COLUMN IF NOT EXISTS `updated` DateTime64(6, 'UTC') DEFAULT ts_end;
-- A row written without an id (another producer's) is an incident of its own.
CREATE VIEW IF NOT EXISTS incidents AS
SELECT * FROM events
ORDER BY event_id, updated DESC, state = 'closed' DESC
LIMIT 1 BY if(event_id = '', lower(hex(cityHash64(kind, link, direction, device, job, ts, summary))), event_id);
