//! Kubernetes objects to target groups, with Prometheus 2.42's
//! `__meta_kubernetes_*` labels (`discovery/kubernetes/{pod,service,node,
//! endpoints}.go`): pure functions of the objects, no I/O.
//!
//! Each object is one group whose source is `pod/<ns>/<name>`,
//! `svc/<ns>/<name>`, `node/<name>` or `endpoints/<ns>/<name>`; a deleted
//! object is a group without targets. Label and annotation names are
//! sanitized (every character outside `[a-zA-Z0-9_]` becomes `_`).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Endpoints, Node, Pod, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::discovery::TargetGroup;

const PREFIX: &str = "__meta_kubernetes_";
const ADDRESS: &str = "__address__";
const PRESENT: &str = "true";

type LabelSet = BTreeMap<String, String>;

/// Prometheus's `strutil.SanitizeLabelName`.
pub fn sanitize(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect()
}

fn l(name: &str) -> String {
    format!("{PREFIX}{name}")
}

fn opt(s: &Option<String>) -> String {
    s.clone().unwrap_or_default()
}

/// Go's `net.JoinHostPort`: brackets around an IPv6 host.
fn join_host_port(host: &str, port: impl std::fmt::Display) -> String {
    if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") }
}

/// `<role>_name`, `<role>_label_*`, `<role>_labelpresent_*`,
/// `<role>_annotation_*` and `<role>_annotationpresent_*`.
fn add_object_meta(ls: &mut LabelSet, meta: &ObjectMeta, role: &str) {
    ls.insert(l(&format!("{role}_name")), opt(&meta.name));
    for (k, v) in meta.labels.iter().flatten() {
        let n = sanitize(k);
        ls.insert(l(&format!("{role}_label_{n}")), v.clone());
        ls.insert(l(&format!("{role}_labelpresent_{n}")), PRESENT.into());
    }
    for (k, v) in meta.annotations.iter().flatten() {
        let n = sanitize(k);
        ls.insert(l(&format!("{role}_annotation_{n}")), v.clone());
        ls.insert(l(&format!("{role}_annotationpresent_{n}")), PRESENT.into());
    }
}

fn namespace(meta: &ObjectMeta) -> String {
    opt(&meta.namespace)
}

fn empty_group(source: String) -> TargetGroup {
    TargetGroup { source, ..TargetGroup::default() }
}

fn push(g: &mut TargetGroup, target: LabelSet) {
    g.targets.push(target.get(ADDRESS).cloned().unwrap_or_default());
    g.target_labels.push(target);
}

pub fn pod_source(ns: &str, name: &str) -> String {
    format!("pod/{ns}/{name}")
}

/// `true`/`false` from the pod's Ready condition, `unknown` without one.
pub fn pod_ready(pod: &Pod) -> String {
    let conditions = pod.status.as_ref().and_then(|s| s.conditions.as_ref());
    match conditions.into_iter().flatten().find(|c| c.type_ == "Ready") {
        Some(c) => c.status.to_lowercase(),
        None => "unknown".into(),
    }
}

/// The labels every target of a pod carries (not the namespace).
fn pod_labels(pod: &Pod) -> LabelSet {
    let status = pod.status.as_ref();
    let mut ls = LabelSet::new();
    ls.insert(l("pod_ip"), status.map(|s| opt(&s.pod_ip)).unwrap_or_default());
    ls.insert(l("pod_ready"), pod_ready(pod));
    ls.insert(l("pod_phase"), status.map(|s| opt(&s.phase)).unwrap_or_default());
    ls.insert(l("pod_node_name"), pod.spec.as_ref().map(|s| opt(&s.node_name)).unwrap_or_default());
    ls.insert(l("pod_host_ip"), status.map(|s| opt(&s.host_ip)).unwrap_or_default());
    ls.insert(l("pod_uid"), opt(&pod.metadata.uid));
    let controller = pod.metadata.owner_references.iter().flatten().find(|o| o.controller == Some(true));
    if let Some(c) = controller {
        if !c.kind.is_empty() {
            ls.insert(l("pod_controller_kind"), c.kind.clone());
        }
        if !c.name.is_empty() {
            ls.insert(l("pod_controller_name"), c.name.clone());
        }
    }
    add_object_meta(&mut ls, &pod.metadata, "pod");
    ls
}

/// The containers then the init containers, each with whether it is an init container.
fn containers(pod: &Pod) -> impl Iterator<Item = (&Container, bool)> {
    let spec = pod.spec.as_ref();
    let main = spec.into_iter().flat_map(|s| s.containers.iter()).map(|c| (c, false));
    main.chain(spec.into_iter().flat_map(|s| s.init_containers.iter().flatten()).map(|c| (c, true)))
}

/// The `pod` role: one target per container port, one per container
/// without ports (the pod IP alone); none while the pod has no IP.
pub fn pod_group(pod: &Pod) -> TargetGroup {
    let ns = namespace(&pod.metadata);
    let mut g = empty_group(pod_source(&ns, &opt(&pod.metadata.name)));
    let Some(ip) = pod.status.as_ref().and_then(|s| s.pod_ip.clone()).filter(|ip| !ip.is_empty()) else {
        return g;
    };
    g.labels = pod_labels(pod);
    g.labels.insert(l("namespace"), ns);
    for (c, init) in containers(pod) {
        let base = |addr: String| {
            LabelSet::from([
                (ADDRESS.to_string(), addr),
                (l("pod_container_name"), c.name.clone()),
                (l("pod_container_image"), opt(&c.image)),
                (l("pod_container_init"), init.to_string()),
            ])
        };
        match c.ports.as_deref() {
            None | Some([]) => push(&mut g, base(ip.clone())),
            Some(ports) => {
                for p in ports {
                    let mut t = base(join_host_port(&ip, p.container_port));
                    t.insert(l("pod_container_port_number"), p.container_port.to_string());
                    t.insert(l("pod_container_port_name"), opt(&p.name));
                    t.insert(l("pod_container_port_protocol"), opt(&p.protocol));
                    push(&mut g, t);
                }
            }
        }
    }
    g
}

pub fn service_source(ns: &str, name: &str) -> String {
    format!("svc/{ns}/{name}")
}

fn service_labels(svc: &Service) -> LabelSet {
    let mut ls = LabelSet::new();
    ls.insert(l("namespace"), namespace(&svc.metadata));
    add_object_meta(&mut ls, &svc.metadata, "service");
    ls
}

/// The `service` role: one target per service port, at the service's DNS name.
pub fn service_group(svc: &Service) -> TargetGroup {
    let (ns, name) = (namespace(&svc.metadata), opt(&svc.metadata.name));
    let mut g = empty_group(service_source(&ns, &name));
    g.labels = service_labels(svc);
    let spec = svc.spec.as_ref();
    let kind = spec.map(|s| opt(&s.type_)).unwrap_or_default();
    for p in spec.into_iter().flat_map(|s| s.ports.iter().flatten()) {
        let mut t = LabelSet::from([
            (ADDRESS.to_string(), join_host_port(&format!("{name}.{ns}.svc"), p.port)),
            (l("service_port_name"), opt(&p.name)),
            (l("service_port_number"), p.port.to_string()),
            (l("service_port_protocol"), opt(&p.protocol)),
            (l("service_type"), kind.clone()),
        ]);
        if kind == "ExternalName" {
            t.insert(l("service_external_name"), spec.map(|s| opt(&s.external_name)).unwrap_or_default());
        } else {
            t.insert(l("service_cluster_ip"), spec.map(|s| opt(&s.cluster_ip)).unwrap_or_default());
        }
        push(&mut g, t);
    }
    g
}

pub fn node_source(name: &str) -> String {
    format!("node/{name}")
}

/// The `node` role: one target, the kubelet of the node at its first
/// address by priority (InternalIP, ExternalIP, LegacyHostIP, Hostname);
/// no target without an address.
pub fn node_group(node: &Node) -> TargetGroup {
    let name = opt(&node.metadata.name);
    let mut g = empty_group(node_source(&name));
    g.labels.insert(l("node_provider_id"), node.spec.as_ref().map(|s| opt(&s.provider_id)).unwrap_or_default());
    add_object_meta(&mut g.labels, &node.metadata, "node");
    let status = node.status.as_ref();
    let mut by_type: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for a in status.into_iter().flat_map(|s| s.addresses.iter().flatten()) {
        by_type.entry(a.type_.as_str()).or_default().push(a.address.as_str());
    }
    let Some(addr) = ["InternalIP", "ExternalIP", "LegacyHostIP", "Hostname"]
        .iter()
        .find_map(|t| by_type.get(t).and_then(|a| a.first()))
    else {
        tracing::warn!(node = %name, "Kubernetes SD: no node address found");
        return g;
    };
    let port = status
        .and_then(|s| s.daemon_endpoints.as_ref())
        .and_then(|d| d.kubelet_endpoint.as_ref())
        .map_or(0, |k| k.port);
    let mut t = LabelSet::from([(ADDRESS.to_string(), join_host_port(addr, port)), ("instance".into(), name)]);
    for (ty, a) in &by_type {
        t.insert(sanitize(&l(&format!("node_address_{ty}"))), a[0].to_string());
    }
    push(&mut g, t);
    g
}

pub fn endpoints_source(ns: &str, name: &str) -> String {
    format!("endpoints/{ns}/{name}")
}

/// The `endpoints` role: one target per address and port of each subset,
/// with the labels of the service of the same name and of the pod an
/// address points at; then one target for each container port of those
/// pods that no endpoint port covered. `pod` finds a pod by namespace and name.
pub fn endpoints_group<'a>(
    eps: &Endpoints,
    service: Option<&Service>,
    pod: impl Fn(&str, &str) -> Option<&'a Pod>,
) -> TargetGroup {
    let (ns, name) = (namespace(&eps.metadata), opt(&eps.metadata.name));
    let mut g = empty_group(endpoints_source(&ns, &name));
    g.labels.insert(l("namespace"), ns.clone());
    g.labels.insert(l("endpoints_name"), name);
    if let Some(svc) = service {
        g.labels.extend(service_labels(svc));
    }
    for (k, v) in eps.metadata.labels.iter().flatten() {
        let n = sanitize(k);
        g.labels.insert(l(&format!("endpoints_label_{n}")), v.clone());
        g.labels.insert(l(&format!("endpoints_labelpresent_{n}")), PRESENT.into());
    }
    // Pods seen through an address, with the ports the endpoints cover.
    let mut seen: Vec<(&Pod, Vec<i32>)> = Vec::new();
    for ss in eps.subsets.iter().flatten() {
        for port in ss.ports.iter().flatten() {
            let ready = ss.addresses.iter().flatten().map(|a| (a, "true"));
            let not_ready = ss.not_ready_addresses.iter().flatten().map(|a| (a, "false"));
            for (addr, ready) in ready.chain(not_ready) {
                let mut t = LabelSet::from([
                    (ADDRESS.to_string(), join_host_port(&addr.ip, port.port)),
                    (l("endpoint_port_name"), opt(&port.name)),
                    (l("endpoint_port_protocol"), opt(&port.protocol)),
                    (l("endpoint_ready"), ready.to_string()),
                ]);
                if let Some(r) = &addr.target_ref {
                    t.insert(l("endpoint_address_target_kind"), opt(&r.kind));
                    t.insert(l("endpoint_address_target_name"), opt(&r.name));
                }
                if let Some(n) = &addr.node_name {
                    t.insert(l("endpoint_node_name"), n.clone());
                }
                if let Some(h) = addr.hostname.as_ref().filter(|h| !h.is_empty()) {
                    t.insert(l("endpoint_hostname"), h.clone());
                }
                let target_pod =
                    addr.target_ref.as_ref().filter(|r| r.kind.as_deref() == Some("Pod")).and_then(|r| {
                        pod(r.namespace.as_deref().unwrap_or(&ns), r.name.as_deref().unwrap_or_default())
                    });
                let Some(p) = target_pod else {
                    push(&mut g, t);
                    continue;
                };
                t.extend(pod_labels(p));
                let container = containers(p).filter(|(_, init)| !init).find_map(|(c, _)| {
                    c.ports.iter().flatten().find(|cp| cp.container_port == port.port).map(|cp| (c, cp))
                });
                if let Some((c, cp)) = container {
                    t.insert(l("pod_container_name"), c.name.clone());
                    t.insert(l("pod_container_image"), opt(&c.image));
                    t.insert(l("pod_container_port_name"), opt(&cp.name));
                    t.insert(l("pod_container_port_number"), port.port.to_string());
                    t.insert(l("pod_container_port_protocol"), opt(&cp.protocol));
                }
                match seen.iter_mut().find(|(s, _)| std::ptr::eq(*s, p)) {
                    Some((_, ports)) => ports.push(port.port),
                    None => seen.push((p, vec![port.port])),
                }
                push(&mut g, t);
            }
        }
    }
    for (p, covered) in seen {
        let Some(ip) = p.status.as_ref().and_then(|s| s.pod_ip.clone()).filter(|ip| !ip.is_empty()) else { continue };
        for (c, _) in containers(p).filter(|(_, init)| !init) {
            for cp in c.ports.iter().flatten().filter(|cp| !covered.contains(&cp.container_port)) {
                let mut t = pod_labels(p);
                t.extend([
                    (ADDRESS.to_string(), join_host_port(&ip, cp.container_port)),
                    (l("pod_container_name"), c.name.clone()),
                    (l("pod_container_image"), opt(&c.image)),
                    (l("pod_container_port_name"), opt(&cp.name)),
                    (l("pod_container_port_number"), cp.container_port.to_string()),
                    (l("pod_container_port_protocol"), opt(&cp.protocol)),
                ]);
                push(&mut g, t);
            }
        }
    }
    g
}

#[cfg(test)]
#[path = "targets_tests.rs"]
mod tests;
