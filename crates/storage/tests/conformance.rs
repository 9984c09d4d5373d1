//! The in-memory engine passes the conformance suite (the RocksDB engine
//! runs the same suite in `pharos-tsdb`'s tests).

use pharos_storage::{MemStorage, conformance};

#[test]
fn mem_storage_passes_the_suite() {
    conformance::run_all(&mut || Box::new(MemStorage::new()));
}
