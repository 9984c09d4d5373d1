//! A replica's raft figures on `/metrics`, `pharos_raft_*`, written from
//! its [`ReplicaStatus`].

use pharos_exposition::Exposition;

use crate::ReplicaStatus;

impl ReplicaStatus {
    /// Writes this replica's raft metrics.
    pub fn write_metrics(&self, e: &mut Exposition) {
        let st = self;
        let index = |i: Option<u64>| i.unwrap_or(0) as f64;
        let gauges = [
            ("pharos_raft_term", "Current raft term of this replica.", st.term as f64),
            (
                "pharos_raft_is_leader",
                "1 if this replica leads its shard's raft group.",
                if st.state == "leader" { 1.0 } else { 0.0 },
            ),
            ("pharos_raft_commit_index", "Newest raft log index known committed.", st.commit_index as f64),
            ("pharos_raft_applied_index", "Newest raft log index applied to the TSDB.", index(st.applied_index)),
            ("pharos_raft_last_log_index", "Newest raft log index stored by this replica.", index(st.last_log_index)),
            (
                "pharos_raft_snapshot_index",
                "Last raft log index in this replica's current snapshot.",
                index(st.snapshot_index),
            ),
            ("pharos_raft_purged_index", "Raft log entries up to this index are purged here.", index(st.purged_index)),
            (
                "pharos_raft_last_snapshot_install_seconds",
                "How long the newest snapshot install took (unpack and TSDB restore).",
                st.last_snapshot_install_ms as f64 / 1000.0,
            ),
            (
                "pharos_raft_max_follower_lag_entries",
                "On the leader: entries the slowest follower is behind.",
                st.lag.values().copied().max().unwrap_or(0) as f64,
            ),
        ];
        for (name, help, value) in gauges {
            e.gauge(name, help, value);
        }
        e.counter("pharos_raft_snapshots_built_total", "Snapshots this replica built.", st.snapshots_built as f64);
        e.counter(
            "pharos_raft_snapshots_installed_total",
            "Snapshots received from the leader and installed into the TSDB.",
            st.snapshots_installed as f64,
        );
    }
}
