//! The translation checked on real Kubernetes JSON objects (as `kubectl get
//! -o json` prints them) against the labels Prometheus 2.42 gives them.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Endpoints, Node, Pod, Service};

use super::*;

fn load<T: serde::de::DeserializeOwned>(name: &str) -> T {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/kubernetes").join(name);
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (format!("__meta_kubernetes_{k}"), v.to_string())).collect()
}

fn pod_meta() -> BTreeMap<String, String> {
    labels(&[
        ("pod_name", "web-0"),
        ("pod_ip", "10.244.1.7"),
        ("pod_ready", "true"),
        ("pod_phase", "Running"),
        ("pod_node_name", "node-a"),
        ("pod_host_ip", "10.0.0.11"),
        ("pod_uid", "a3f1e0d2-4b7c-4e55-8a21-9c0d1e2f3a4b"),
        ("pod_controller_kind", "StatefulSet"),
        ("pod_controller_name", "web"),
        ("pod_label_app_kubernetes_io_name", "web"),
        ("pod_labelpresent_app_kubernetes_io_name", "true"),
        ("pod_label_controller_revision_hash", "web-6d4cf56db6"),
        ("pod_labelpresent_controller_revision_hash", "true"),
        ("pod_label_statefulset_kubernetes_io_pod_name", "web-0"),
        ("pod_labelpresent_statefulset_kubernetes_io_pod_name", "true"),
        ("pod_annotation_prometheus_io_scrape", "true"),
        ("pod_annotationpresent_prometheus_io_scrape", "true"),
        ("pod_annotation_kubectl_kubernetes_io_restartedAt", "2026-11-20T10:00:00Z"),
        ("pod_annotationpresent_kubectl_kubernetes_io_restartedAt", "true"),
    ])
}

fn with_address(mut l: BTreeMap<String, String>, addr: &str) -> BTreeMap<String, String> {
    l.insert("__address__".into(), addr.into());
    l
}

#[test]
fn pod_role_one_target_per_port_and_per_container_without_ports() {
    let pod: Pod = load("pod.json");
    let g = pod_group(&pod);
    assert_eq!(g.source, "pod/shop/web-0");
    let mut group = pod_meta();
    group.insert("__meta_kubernetes_namespace".into(), "shop".into());
    assert_eq!(g.labels, group);
    assert_eq!(g.targets, ["10.244.1.7:80", "10.244.1.7:9113", "10.244.1.7", "10.244.1.7"]);
    let port = |addr, name, num| {
        with_address(
            labels(&[
                ("pod_container_name", "nginx"),
                ("pod_container_image", "nginx:1.27"),
                ("pod_container_init", "false"),
                ("pod_container_port_name", name),
                ("pod_container_port_number", num),
                ("pod_container_port_protocol", "TCP"),
            ]),
            addr,
        )
    };
    assert_eq!(g.target_labels[0], port("10.244.1.7:80", "http", "80"));
    assert_eq!(g.target_labels[1], port("10.244.1.7:9113", "metrics", "9113"));
    let container = |name, init| {
        with_address(
            labels(&[
                ("pod_container_name", name),
                ("pod_container_image", "busybox:1.36"),
                ("pod_container_init", init),
            ]),
            "10.244.1.7",
        )
    };
    assert_eq!(g.target_labels[2], container("sidecar", "false"));
    assert_eq!(g.target_labels[3], container("init-perms", "true"));
}

#[test]
fn a_pod_without_ip_has_no_targets_and_unknown_readiness_without_condition() {
    let mut pod: Pod = load("pod.json");
    pod.status.as_mut().unwrap().pod_ip = None;
    assert!(pod_group(&pod).targets.is_empty());
    pod.status.as_mut().unwrap().conditions = None;
    assert_eq!(pod_ready(&pod), "unknown");
}

#[test]
fn pod_targets_go_through_relabeling_to_scrape_urls() {
    let pod: Pod = load("pod.json");
    let job = std::sync::Arc::new(
        crate::Config::parse(
            r#"
scrape_configs:
  - job_name: pods
    kubernetes_sd_configs: [{role: pod}]
    relabel_configs:
      - source_labels: [__meta_kubernetes_pod_container_port_name]
        regex: metrics
        action: keep
      - source_labels: [__meta_kubernetes_namespace, __meta_kubernetes_pod_name]
        separator: /
        target_label: pod
"#,
        )
        .unwrap()
        .scrape_configs
        .remove(0),
    );
    let t = crate::target::targets_from_groups(&job, &[pod_group(&pod)]);
    assert_eq!(t.len(), 1);
    assert_eq!(t[0].url, "http://10.244.1.7:9113/metrics");
    assert_eq!(t[0].labels.to_string(), r#"{instance="10.244.1.7:9113", job="pods", pod="shop/web-0"}"#);
}

#[test]
fn service_role_one_target_per_port_at_the_dns_name() {
    let svc: Service = load("service.json");
    let g = service_group(&svc);
    assert_eq!(g.source, "svc/shop/web");
    assert_eq!(
        g.labels,
        labels(&[
            ("namespace", "shop"),
            ("service_name", "web"),
            ("service_label_app_kubernetes_io_name", "web"),
            ("service_labelpresent_app_kubernetes_io_name", "true"),
            ("service_annotation_prometheus_io_port", "9113"),
            ("service_annotationpresent_prometheus_io_port", "true"),
        ])
    );
    assert_eq!(
        g.target_labels,
        [with_address(
            labels(&[
                ("service_port_name", "http"),
                ("service_port_number", "80"),
                ("service_port_protocol", "TCP"),
                ("service_type", "ClusterIP"),
                ("service_cluster_ip", "10.96.12.34"),
            ]),
            "web.shop.svc:80"
        )]
    );
}

#[test]
fn node_role_is_the_kubelet_at_the_internal_ip_named_by_the_node() {
    let node: Node = load("node.json");
    let g = node_group(&node);
    assert_eq!(g.source, "node/node-a");
    assert_eq!(
        g.labels,
        labels(&[
            ("node_name", "node-a"),
            ("node_provider_id", "kind://docker/kind/node-a"),
            ("node_label_kubernetes_io_arch", "amd64"),
            ("node_labelpresent_kubernetes_io_arch", "true"),
            ("node_label_kubernetes_io_hostname", "node-a"),
            ("node_labelpresent_kubernetes_io_hostname", "true"),
            ("node_label_node_role_kubernetes_io_worker", ""),
            ("node_labelpresent_node_role_kubernetes_io_worker", "true"),
            ("node_annotation_node_alpha_kubernetes_io_ttl", "0"),
            ("node_annotationpresent_node_alpha_kubernetes_io_ttl", "true"),
        ])
    );
    let mut want = with_address(
        labels(&[("node_address_InternalIP", "10.0.0.11"), ("node_address_Hostname", "node-a")]),
        "10.0.0.11:10250",
    );
    want.insert("instance".into(), "node-a".into());
    assert_eq!(g.target_labels, [want]);
}

#[test]
fn endpoints_role_joins_service_and_pod_labels_and_adds_uncovered_container_ports() {
    let eps: Endpoints = load("endpoints.json");
    let svc: Service = load("service.json");
    let pod: Pod = load("pod.json");
    let g = endpoints_group(&eps, Some(&svc), |ns, name| (ns == "shop" && name == "web-0").then_some(&pod));
    assert_eq!(g.source, "endpoints/shop/web");
    let mut group = service_group(&svc).labels;
    group.extend(labels(&[
        ("endpoints_name", "web"),
        ("endpoints_label_app_kubernetes_io_name", "web"),
        ("endpoints_labelpresent_app_kubernetes_io_name", "true"),
    ]));
    assert_eq!(g.labels, group);
    assert_eq!(g.targets, ["10.244.1.7:80", "10.244.2.9:80", "10.244.1.7:9113"]);

    let mut ready = pod_meta();
    ready.extend(with_address(
        labels(&[
            ("endpoint_port_name", "http"),
            ("endpoint_port_protocol", "TCP"),
            ("endpoint_ready", "true"),
            ("endpoint_address_target_kind", "Pod"),
            ("endpoint_address_target_name", "web-0"),
            ("endpoint_node_name", "node-a"),
            ("endpoint_hostname", "web-0"),
            ("pod_container_name", "nginx"),
            ("pod_container_image", "nginx:1.27"),
            ("pod_container_port_name", "http"),
            ("pod_container_port_number", "80"),
            ("pod_container_port_protocol", "TCP"),
        ]),
        "10.244.1.7:80",
    ));
    assert_eq!(g.target_labels[0], ready);
    // web-1 is not known (yet): the address without pod labels.
    let not_ready = with_address(
        labels(&[
            ("endpoint_port_name", "http"),
            ("endpoint_port_protocol", "TCP"),
            ("endpoint_ready", "false"),
            ("endpoint_address_target_kind", "Pod"),
            ("endpoint_address_target_name", "web-1"),
            ("endpoint_node_name", "node-b"),
        ]),
        "10.244.2.9:80",
    );
    assert_eq!(g.target_labels[1], not_ready);
    let mut uncovered = pod_meta();
    uncovered.extend(with_address(
        labels(&[
            ("pod_container_name", "nginx"),
            ("pod_container_image", "nginx:1.27"),
            ("pod_container_port_name", "metrics"),
            ("pod_container_port_number", "9113"),
            ("pod_container_port_protocol", "TCP"),
        ]),
        "10.244.1.7:9113",
    ));
    assert_eq!(g.target_labels[2], uncovered);
}

#[test]
fn label_names_are_sanitized_and_ipv6_is_bracketed() {
    assert_eq!(sanitize("app.kubernetes.io/name"), "app_kubernetes_io_name");
    assert_eq!(sanitize("a-b_C9"), "a_b_C9");
    assert_eq!(join_host_port("fd00::1", 80), "[fd00::1]:80");
    assert_eq!(join_host_port("10.0.0.1", 80), "10.0.0.1:80");
}
