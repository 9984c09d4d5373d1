//! The objects a discovery has seen, kept up to date from watch events, and
//! which target groups an event changes: pure, no I/O.
//!
//! A watch (re)starts with `Init`, lists every object (`InitApply`) and ends
//! the list with `InitDone`, after which objects not listed are gone; then
//! `Apply` and `Delete` follow one object each.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Endpoints, Node, Pod, Service};
use kube::ResourceExt;
use kube::runtime::watcher::Event;

use super::config::Role;
use super::targets;
use crate::discovery::TargetGroup;

/// `namespace/name`, or `name` for objects without a namespace.
pub fn key<K: ResourceExt>(o: &K) -> String {
    match o.namespace() {
        Some(ns) => format!("{ns}/{}", o.name_any()),
        None => o.name_any(),
    }
}

/// Objects of one kind by [`key`].
#[derive(Debug)]
pub struct Objects<K> {
    items: BTreeMap<String, K>,
    listing: Option<BTreeMap<String, K>>,
}

impl<K> Default for Objects<K> {
    fn default() -> Self {
        Objects { items: BTreeMap::new(), listing: None }
    }
}

impl<K: ResourceExt + Clone> Objects<K> {
    /// Applies one event; returns the keys of objects that were added,
    /// changed or removed (a relist reports every key before and after).
    pub fn apply(&mut self, event: Event<K>) -> Vec<String> {
        match event {
            Event::Init => {
                self.listing = Some(BTreeMap::new());
                Vec::new()
            }
            Event::InitApply(o) => {
                self.listing.get_or_insert_default().insert(key(&o), o);
                Vec::new()
            }
            Event::InitDone => {
                let listed = self.listing.take().unwrap_or_default();
                let old = std::mem::replace(&mut self.items, listed);
                let mut changed: Vec<String> = old.into_keys().chain(self.items.keys().cloned()).collect();
                changed.sort();
                changed.dedup();
                changed
            }
            Event::Apply(o) => {
                let k = key(&o);
                self.items.insert(k.clone(), o);
                vec![k]
            }
            Event::Delete(o) => {
                let k = key(&o);
                self.items.remove(&k);
                vec![k]
            }
        }
    }

    pub fn get(&self, key: &str) -> Option<&K> {
        self.items.get(key)
    }

    pub fn values(&self) -> impl Iterator<Item = &K> {
        self.items.values()
    }
}

/// One watch event of any kind a discovery follows (boxed: objects are large).
#[derive(Debug)]
pub enum Change {
    Pod(Box<Event<Pod>>),
    Service(Box<Event<Service>>),
    Endpoints(Box<Event<Endpoints>>),
    Node(Box<Event<Node>>),
}

/// Everything one discovery scope (a namespace, or all) has seen, and the
/// target groups built from it by source.
#[derive(Debug)]
pub struct State {
    role: Role,
    pods: Objects<Pod>,
    services: Objects<Service>,
    endpoints: Objects<Endpoints>,
    nodes: Objects<Node>,
}

/// A group to set (by its source) or, without targets, to remove.
pub type Update = TargetGroup;

fn ns_of(key: &str) -> &str {
    key.split_once('/').map_or("", |(ns, _)| ns)
}

fn split(key: &str) -> (&str, &str) {
    key.split_once('/').unwrap_or(("", key))
}

impl State {
    pub fn new(role: Role) -> Self {
        State {
            role,
            pods: Objects::default(),
            services: Objects::default(),
            endpoints: Objects::default(),
            nodes: Objects::default(),
        }
    }

    /// Applies a change; returns the groups it changes (an object that is
    /// gone yields an empty group with its source).
    pub fn apply(&mut self, change: Change) -> Vec<Update> {
        match (self.role, change) {
            (Role::Pod, Change::Pod(e)) => {
                let pod_source = |k: &str| targets::pod_source(split(k).0, split(k).1);
                rebuild(&mut self.pods, *e, targets::pod_group, pod_source)
            }
            (Role::Service, Change::Service(e)) => {
                let service_source = |k: &str| targets::service_source(split(k).0, split(k).1);
                rebuild(&mut self.services, *e, targets::service_group, service_source)
            }
            (Role::Node, Change::Node(e)) => rebuild(&mut self.nodes, *e, targets::node_group, targets::node_source),
            (Role::Endpoints, change) => {
                // Which endpoints objects to build again.
                let affected: Vec<String> = match change {
                    Change::Endpoints(e) => self.endpoints.apply(*e),
                    // A service's labels go to the endpoints of the same name.
                    Change::Service(e) => self.services.apply(*e),
                    // A pod's labels go to every endpoints of its namespace that points at it.
                    Change::Pod(e) => {
                        let namespaces: Vec<String> =
                            self.pods.apply(*e).iter().map(|k| ns_of(k).to_string()).collect();
                        self.endpoints.values().map(key).filter(|k| namespaces.iter().any(|n| n == ns_of(k))).collect()
                    }
                    Change::Node(_) => Vec::new(),
                };
                affected.iter().map(|k| self.endpoints_group(k)).collect()
            }
            _ => Vec::new(),
        }
    }

    fn endpoints_group(&self, k: &str) -> Update {
        let (ns, name) = split(k);
        match self.endpoints.get(k) {
            Some(eps) => {
                targets::endpoints_group(eps, self.services.get(k), |ns, name| self.pods.get(&format!("{ns}/{name}")))
            }
            None => gone(targets::endpoints_source(ns, name)),
        }
    }
}

/// Applies `event` to `objects` and builds the group of each changed object
/// again (an empty one named by `source` for an object that is gone).
fn rebuild<K: ResourceExt + Clone>(
    objects: &mut Objects<K>,
    event: Event<K>,
    build: impl Fn(&K) -> TargetGroup,
    source: impl Fn(&str) -> String,
) -> Vec<Update> {
    let keys = objects.apply(event);
    keys.iter()
        .map(|k| match objects.get(k) {
            Some(o) => build(o),
            None => gone(source(k)),
        })
        .collect()
}

fn gone(source: String) -> Update {
    TargetGroup { source, ..TargetGroup::default() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, ip: &str) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": "ns"},
            "spec": {"containers": [{"name": "c", "ports": [{"containerPort": 8080}]}]},
            "status": {"podIP": ip}
        }))
        .unwrap()
    }

    fn sources(updates: &[Update]) -> Vec<(String, usize)> {
        updates.iter().map(|u| (u.source.clone(), u.targets.len())).collect()
    }

    #[test]
    fn a_relist_replaces_the_objects_and_reports_those_gone() {
        let mut s = State::new(Role::Pod);
        assert!(s.apply(Change::Pod(Box::new(Event::Init))).is_empty());
        assert!(s.apply(Change::Pod(Box::new(Event::InitApply(pod("a", "10.0.0.1"))))).is_empty());
        assert!(s.apply(Change::Pod(Box::new(Event::InitApply(pod("b", "10.0.0.2"))))).is_empty());
        let u = s.apply(Change::Pod(Box::new(Event::InitDone)));
        assert_eq!(sources(&u), [("pod/ns/a".into(), 1), ("pod/ns/b".into(), 1)]);
        let u = s.apply(Change::Pod(Box::new(Event::Apply(pod("a", "10.0.0.9")))));
        assert_eq!(u[0].targets, ["10.0.0.9:8080"]);
        let u = s.apply(Change::Pod(Box::new(Event::Delete(pod("b", "10.0.0.2")))));
        assert_eq!(sources(&u), [("pod/ns/b".into(), 0)]);
        // A restarted watch that no longer lists `a` removes it.
        s.apply(Change::Pod(Box::new(Event::Init)));
        s.apply(Change::Pod(Box::new(Event::InitApply(pod("c", "10.0.0.3")))));
        let u = s.apply(Change::Pod(Box::new(Event::InitDone)));
        assert_eq!(sources(&u), [("pod/ns/a".into(), 0), ("pod/ns/c".into(), 1)]);
        // Events of kinds the role does not use change nothing.
        assert!(s.apply(Change::Service(Box::new(Event::Init))).is_empty());
    }

    #[test]
    fn endpoints_are_rebuilt_when_their_pods_or_service_change() {
        let eps: Endpoints = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "svc", "namespace": "ns"},
            "subsets": [{"addresses": [{"ip": "10.0.0.1", "targetRef": {"kind": "Pod", "name": "a", "namespace": "ns"}}],
                         "ports": [{"port": 8080}]}]
        }))
        .unwrap();
        let mut s = State::new(Role::Endpoints);
        let u = s.apply(Change::Endpoints(Box::new(Event::Apply(eps))));
        assert!(!u[0].target_labels[0].contains_key("__meta_kubernetes_pod_name"));
        let u = s.apply(Change::Pod(Box::new(Event::Apply(pod("a", "10.0.0.1")))));
        assert_eq!(sources(&u), [("endpoints/ns/svc".into(), 1)]);
        assert_eq!(u[0].target_labels[0]["__meta_kubernetes_pod_name"], "a");
        let svc: Service = serde_json::from_value(
            serde_json::json!({"metadata": {"name": "svc", "namespace": "ns", "labels": {"t": "x"}}}),
        )
        .unwrap();
        let u = s.apply(Change::Service(Box::new(Event::Apply(svc))));
        assert_eq!(u[0].labels["__meta_kubernetes_service_label_t"], "x");
    }
}
