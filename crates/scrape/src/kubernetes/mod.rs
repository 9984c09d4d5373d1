//! Kubernetes service discovery (`kubernetes_sd_configs`), as Prometheus
//! 2.42 does it, through the `kube` crate with watches, never polling.
//!
//! [`config`] parses and checks an entry; [`targets`] turns Kubernetes
//! objects into target groups with the `__meta_kubernetes_*` labels and
//! [`store`] keeps the objects up to date from watch events (both pure);
//! [`client`] connects to the API server and [`watch`] runs the watches.
//! [`members`] uses the same machinery for scraper membership: the ready
//! pods of the scraper StatefulSet.

pub mod client;
pub mod config;
pub mod members;
pub mod store;
pub mod targets;
pub mod watch;

pub use config::{KubernetesSdConfig, Role};
pub use watch::KubernetesDiscovery;
