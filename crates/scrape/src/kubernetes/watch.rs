//! The running side of a `kubernetes_sd_configs` entry: watches (list, then
//! a long-lived watch resumed from the last resource version, through
//! `kube::runtime::watcher`) of the objects its role needs, in each
//! namespace or in all of them, folded into target groups by source.
//!
//! Every change to the groups wakes the scrape manager through a shared
//! [`Notify`]. A watch that fails is retried with backoff; its groups stay
//! as they were meanwhile. Dropping the discovery stops its watches.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{Endpoints, Node, Pod, Service};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::client::{ApiAccess, connect};
use super::config::{KubernetesSdConfig, Role};
use super::store::{Change, State};
use crate::discovery::TargetGroup;

/// How long to wait before trying again to build a client.
const RETRY: std::time::Duration = std::time::Duration::from_secs(5);

type Groups = Arc<Mutex<BTreeMap<String, TargetGroup>>>;

/// One `kubernetes_sd_configs` entry, watching.
#[derive(Debug)]
pub struct KubernetesDiscovery {
    config: KubernetesSdConfig,
    groups: Groups,
    task: JoinHandle<()>,
}

impl KubernetesDiscovery {
    /// Starts watching; `changed` is notified after every change of the groups.
    pub fn start(config: KubernetesSdConfig, changed: Arc<Notify>) -> Self {
        let groups = Groups::default();
        let task = tokio::spawn(run(config.clone(), groups.clone(), changed));
        KubernetesDiscovery { config, groups, task }
    }

    pub fn config(&self) -> &KubernetesSdConfig {
        &self.config
    }

    /// The current groups, in source order.
    pub fn groups(&self) -> Vec<TargetGroup> {
        self.groups.lock().unwrap_or_else(|e| e.into_inner()).values().cloned().collect()
    }
}

impl Drop for KubernetesDiscovery {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn access(config: &KubernetesSdConfig) -> ApiAccess {
    ApiAccess {
        api_server: config.api_server.clone(),
        kubeconfig_file: config.kubeconfig_file.clone(),
        client: config.client.clone(),
    }
}

async fn run(config: KubernetesSdConfig, groups: Groups, changed: Arc<Notify>) {
    let (client, own) = loop {
        match connect(&access(&config)).await {
            Ok(c) => break c,
            Err(e) => {
                tracing::error!(role = config.role.as_str(), error = %e, "Kubernetes SD: cannot connect, retrying");
                tokio::time::sleep(RETRY).await;
            }
        }
    };
    let mut namespaces = config.namespaces.clone();
    if config.own_namespace && !namespaces.contains(&own) {
        namespaces.push(own);
    }
    // Empty: every namespace (nodes have none).
    let scopes: Vec<Option<String>> = if namespaces.is_empty() || config.role == Role::Node {
        vec![None]
    } else {
        namespaces.into_iter().map(Some).collect()
    };
    let tasks: Vec<_> = scopes
        .into_iter()
        .map(|ns| {
            let stream = changes(&client, &config, ns.as_deref());
            tokio::spawn(follow(config.role, stream, groups.clone(), changed.clone()))
        })
        .collect();
    // Aborting this task (the discovery was dropped) drops the guard, which aborts the watches.
    let _guard = AbortOnDrop(tasks);
    std::future::pending::<()>().await;
}

struct AbortOnDrop(Vec<JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

fn api<K>(client: &Client, ns: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match ns {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

fn watch_config(config: &KubernetesSdConfig, role: Role) -> watcher::Config {
    let mut c = watcher::Config::default();
    if let Some(s) = config.selector(role) {
        if let Some(l) = &s.label {
            c = c.labels(l);
        }
        if let Some(f) = &s.field {
            c = c.fields(f);
        }
    }
    c
}

fn watch<K>(
    api: Api<K>,
    config: watcher::Config,
    wrap: fn(Box<watcher::Event<K>>) -> Change,
) -> impl Stream<Item = Change>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    let kind = std::any::type_name::<K>().rsplit("::").next().unwrap_or("object");
    watcher(api, config).default_backoff().filter_map(move |r| {
        std::future::ready(match r {
            Ok(e) => Some(wrap(Box::new(e))),
            Err(e) => {
                tracing::warn!(kind, error = %e, "Kubernetes SD: watch failed, retrying");
                None
            }
        })
    })
}

/// Every watch event the role needs in one scope, merged.
fn changes(
    client: &Client,
    config: &KubernetesSdConfig,
    ns: Option<&str>,
) -> futures::stream::BoxStream<'static, Change> {
    let pods = || watch(api::<Pod>(client, ns), watch_config(config, Role::Pod), Change::Pod);
    let services = || watch(api::<Service>(client, ns), watch_config(config, Role::Service), Change::Service);
    match config.role {
        Role::Pod => pods().boxed(),
        Role::Service => services().boxed(),
        Role::Node => watch(Api::<Node>::all(client.clone()), watch_config(config, Role::Node), Change::Node).boxed(),
        Role::Endpoints => {
            let eps = watch(api::<Endpoints>(client, ns), watch_config(config, Role::Endpoints), Change::Endpoints);
            futures::stream::select_all([eps.boxed(), services().boxed(), pods().boxed()]).boxed()
        }
    }
}

async fn follow(
    role: Role,
    mut stream: futures::stream::BoxStream<'static, Change>,
    groups: Groups,
    changed: Arc<Notify>,
) {
    let mut state = State::new(role);
    while let Some(change) = stream.next().await {
        let updates = state.apply(change);
        if updates.is_empty() {
            continue;
        }
        {
            let mut g = groups.lock().unwrap_or_else(|e| e.into_inner());
            for u in updates {
                if u.targets.is_empty() {
                    g.remove(&u.source);
                } else {
                    g.insert(u.source.clone(), u);
                }
            }
        }
        changed.notify_one();
    }
}
