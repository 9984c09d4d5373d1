//! Generated protobuf and gRPC code: Prometheus remote_write messages and the
//! ingester service. Nothing here is written by hand except this module tree;
//! the sources are the `.proto` files under `proto/` at the repository root.

#![allow(clippy::all, missing_docs)]

pub mod prometheus {
    tonic::include_proto!("prometheus");
}

pub mod pharos {
    pub mod v1 {
        tonic::include_proto!("pharos.v1");
    }
}
