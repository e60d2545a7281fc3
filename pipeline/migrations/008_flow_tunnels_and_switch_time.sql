-- Flows inside tunnels and switch time (records.py, FLOWS columns `since=8`): a GRE, IP-in-IP or Geneve
-- tunnel's inner flow is the row, its endpoints kept in `outer_src_ip`/`outer_dst_ip` (:: for rows that are
-- not a tunnel's inner flow); `time_source` says whether packet times are the switch's ERSPAN III timestamps
-- or the capture's arrival times, and `mirror_delay_us` how long the mirror path took on average. Rows
-- written before this migration read as untunnelled and capture-timed.
ALTER TABLE flows ADD COLUMN IF NOT EXISTS `outer_src_ip` IPv6 DEFAULT toIPv6('::');
ALTER TABLE flows ADD COLUMN IF NOT EXISTS `outer_dst_ip` IPv6 DEFAULT toIPv6('::');
ALTER TABLE flows ADD COLUMN IF NOT EXISTS `time_source` LowCardinality(String) DEFAULT 'capture';
ALTER TABLE flows ADD COLUMN IF NOT EXISTS `mirror_delay_us` Float64 DEFAULT 0;
