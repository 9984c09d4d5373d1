//! Scraper membership from the Kubernetes API: the members are the ready
//! pods (by name) of the scraper StatefulSet, chosen by a label selector in
//! one namespace, watched. A pod that is being deleted is out at once, so a
//! terminating scraper hands its targets over while it still scrapes them.
//! This scraper is always in its own view, as with the static peer list.

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::{oneshot, watch};

use super::client::{ApiAccess, connect};
use super::store::Objects;
use super::targets::pod_ready;

/// Which pods are the scrapers.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MemberPods {
    pub access: ApiAccess,
    /// The namespace of the pods; this process's own when `None`.
    pub namespace: Option<String>,
    /// A label selector, e.g. `app.kubernetes.io/name=pharos-scraper`.
    pub selector: String,
}

/// The names of the pods that are ready and not being deleted, plus `me`, sorted.
pub fn ready_members<'a>(pods: impl IntoIterator<Item = &'a Pod>, me: &str) -> Vec<String> {
    let mut out: Vec<String> = pods
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none() && pod_ready(p) == "true")
        .filter_map(|p| p.metadata.name.clone())
        .chain(std::iter::once(me.to_string()))
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Watches the member pods. Returns once the first list is in (or the API
/// server did not answer within `first_within`, then with `me` alone
/// until it does), with the live members on a watch channel.
pub async fn watch_members(
    me: &str,
    pods: MemberPods,
    first_within: std::time::Duration,
) -> watch::Receiver<Vec<String>> {
    let (tx, rx) = watch::channel(vec![me.to_string()]);
    let (first_tx, first_rx) = oneshot::channel::<()>();
    let me = me.to_string();
    tokio::spawn(async move {
        let (client, own) = loop {
            match connect(&pods.access).await {
                Ok(c) => break c,
                Err(e) => {
                    tracing::error!(error = %e, "scraper membership: cannot connect to the Kubernetes API, retrying");
                    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
                }
            }
        };
        let ns = pods.namespace.clone().unwrap_or(own);
        let config = watcher::Config::default().labels(&pods.selector);
        let mut stream = watcher(Api::<Pod>::namespaced(client, &ns), config).default_backoff().boxed();
        let mut objects = Objects::<Pod>::default();
        let mut first = Some(first_tx);
        while let Some(event) = stream.next().await {
            let event = match event {
                Ok(e) => e,
                Err(e) => {
                    tracing::warn!(error = %e, "scraper membership: watch failed, retrying");
                    continue;
                }
            };
            let listed = matches!(event, watcher::Event::InitDone);
            if objects.apply(event).is_empty() && !listed {
                continue;
            }
            let now = ready_members(objects.values(), &me);
            tx.send_if_modified(|v| {
                let changed = *v != now;
                if changed {
                    tracing::info!(members = ?now, "scraper membership changed");
                    *v = now.clone();
                }
                changed
            });
            if listed && let Some(f) = first.take() {
                let _ = f.send(());
            }
            if tx.is_closed() {
                return;
            }
        }
    });
    let _ = tokio::time::timeout(first_within, first_rx).await;
    rx
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, ready: &str, deleting: bool) -> Pod {
        let mut v = serde_json::json!({
            "metadata": {"name": name, "namespace": "mon"},
            "status": {"conditions": [{"type": "Ready", "status": ready}]}
        });
        if deleting {
            v["metadata"]["deletionTimestamp"] = serde_json::json!("2026-11-27T00:00:00Z");
        }
        serde_json::from_value(v).unwrap_or_default()
    }

    #[test]
    fn members_are_ready_pods_not_being_deleted_and_always_me() {
        let pods = [
            pod("s-2", "True", false),
            pod("s-1", "False", false),
            pod("s-3", "True", true),
            pod("s-0", "True", false),
        ];
        assert_eq!(ready_members(&pods, "s-1"), ["s-0", "s-1", "s-2"]);
        assert_eq!(ready_members(&pods, "s-0"), ["s-0", "s-2"]);
        assert_eq!(ready_members(&[], "s-0"), ["s-0"]);
    }
}
