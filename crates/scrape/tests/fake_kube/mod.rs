//! A stand-in Kubernetes API server for tests, on a loopback port: it keeps
//! objects (pods, services, endpoints, nodes) as real Kubernetes JSON and
//! answers list requests (`GET /api/v1/namespaces/<ns>/pods`, `/api/v1/pods`,
//! with `labelSelector` equality terms) and watches (`?watch=true`: chunked,
//! newline-delimited `ADDED` / `MODIFIED` / `DELETED` events with resource
//! versions, events missed since the requested `resourceVersion` replayed
//! first, and a `BOOKMARK` when `allowWatchBookmarks=true`). Blocking
//! threads, so async and blocking tests can both use it.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Sender, channel};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

/// (kind plural, namespace, name)
type Key = (String, String, String);

struct Watcher {
    kind: String,
    namespace: Option<String>,
    selector: Vec<(String, String)>,
    tx: Sender<String>,
}

#[derive(Default)]
struct State {
    rv: u64,
    objects: BTreeMap<Key, Value>,
    /// Every event: (resource version, kind, object, line).
    log: Vec<(u64, String, Value, String)>,
    watchers: Vec<Watcher>,
    requests: Vec<String>,
    /// The `Authorization` header of each request ("" without one).
    authorizations: Vec<String>,
}

pub struct FakeKube {
    addr: String,
    state: Arc<Mutex<State>>,
}

fn kind_of(plural: &str) -> &'static str {
    match plural {
        "pods" => "Pod",
        "services" => "Service",
        "endpoints" => "Endpoints",
        _ => "Node",
    }
}

fn matches(obj: &Value, kind: &str, w_kind: &str, ns: &Option<String>, selector: &[(String, String)]) -> bool {
    if kind != w_kind {
        return false;
    }
    if let Some(ns) = ns
        && obj["metadata"]["namespace"].as_str() != Some(ns)
    {
        return false;
    }
    selector.iter().all(|(k, v)| obj["metadata"]["labels"][k].as_str() == Some(v))
}

fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == name).then(|| v.replace("%3D", "=").replace("%2C", ",").replace("%2F", "/"))
    })
}

fn parse_selector(s: Option<String>) -> Vec<(String, String)> {
    s.unwrap_or_default()
        .split(',')
        .filter_map(|t| t.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())))
        .collect()
}

impl FakeKube {
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let state = Arc::new(Mutex::new(State { rv: 100, ..State::default() }));
        let s = state.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let s = s.clone();
                std::thread::spawn(move || serve_conn(conn, s));
            }
        });
        FakeKube { addr, state }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A kubeconfig whose current context points at this server, namespace `namespace`.
    pub fn kubeconfig(&self, dir: &Path, namespace: &str) -> PathBuf {
        let path = dir.join("kubeconfig.yml");
        std::fs::write(
            &path,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {}\nusers:\n- name: test\n  user: {{}}\ncontexts:\n- name: test\n  context:\n    cluster: fake\n    user: test\n    namespace: {namespace}\ncurrent-context: test\n",
                self.url()
            ),
        )
        .unwrap();
        path
    }

    /// Creates or replaces an object (`ADDED` or `MODIFIED` to watchers).
    pub fn apply(&self, plural: &str, mut obj: Value) {
        let mut st = self.state.lock().unwrap();
        st.rv += 1;
        let rv = st.rv;
        obj["metadata"]["resourceVersion"] = json!(rv.to_string());
        obj["apiVersion"] = json!("v1");
        obj["kind"] = json!(kind_of(plural));
        let key = key_of(plural, &obj);
        let kind = if st.objects.insert(key, obj.clone()).is_some() { "MODIFIED" } else { "ADDED" };
        publish(&mut st, plural, kind, obj, rv);
    }

    /// Deletes an object (`DELETED` to watchers).
    pub fn delete(&self, plural: &str, namespace: &str, name: &str) {
        let mut st = self.state.lock().unwrap();
        let key = (plural.to_string(), namespace.to_string(), name.to_string());
        let Some(mut obj) = st.objects.remove(&key) else { return };
        st.rv += 1;
        let rv = st.rv;
        obj["metadata"]["resourceVersion"] = json!(rv.to_string());
        publish(&mut st, plural, "DELETED", obj, rv);
    }

    /// Ends every open watch (as an API server does at its timeout or on
    /// restart); clients must watch again from their last resource version.
    pub fn close_watches(&self) {
        self.state.lock().unwrap().watchers.clear();
    }

    /// The `Authorization` header of each request, in order ("" without one).
    pub fn authorizations(&self) -> Vec<String> {
        self.state.lock().unwrap().authorizations.clone()
    }

    /// The request lines seen, in order.
    pub fn requests(&self) -> Vec<String> {
        self.state.lock().unwrap().requests.clone()
    }
}

fn key_of(plural: &str, obj: &Value) -> Key {
    let m = &obj["metadata"];
    (plural.to_string(), m["namespace"].as_str().unwrap_or("").to_string(), m["name"].as_str().unwrap().to_string())
}

fn publish(st: &mut State, plural: &str, kind: &str, obj: Value, rv: u64) {
    let line = json!({"type": kind, "object": obj}).to_string();
    st.watchers
        .retain(|w| !matches(&obj, plural, &w.kind, &w.namespace, &w.selector) || w.tx.send(line.clone()).is_ok());
    st.log.push((rv, plural.to_string(), obj, line));
}

fn serve_conn(conn: TcpStream, state: Arc<Mutex<State>>) {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut out = conn;
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let mut authorization = String::new();
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            if h == "\r\n" || h == "\n" {
                break;
            }
            if let Some((name, value)) = h.split_once(':')
                && name.eq_ignore_ascii_case("authorization")
            {
                authorization = value.trim().to_string();
            }
        }
        let target = request_line.split_whitespace().nth(1).unwrap_or("/").to_string();
        {
            let mut st = state.lock().unwrap();
            st.requests.push(target.clone());
            st.authorizations.push(authorization);
        }
        let (path, query) = target.split_once('?').unwrap_or((&target, ""));
        let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
        let (namespace, plural) = match parts.as_slice() {
            ["api", "v1", "namespaces", ns, plural] => (Some(ns.to_string()), plural.to_string()),
            ["api", "v1", plural] => (None, plural.to_string()),
            _ => {
                let body = r#"{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"NotFound","code":404}"#;
                let _ = write!(
                    out,
                    "HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                );
                continue;
            }
        };
        let selector = parse_selector(query_param(query, "labelSelector"));
        if query_param(query, "watch").as_deref() == Some("true") {
            let since: u64 = query_param(query, "resourceVersion").and_then(|v| v.parse().ok()).unwrap_or(0);
            let bookmarks = query_param(query, "allowWatchBookmarks").as_deref() == Some("true");
            watch(out, &state, plural, namespace, selector, since, bookmarks);
            return;
        }
        let st = state.lock().unwrap();
        let items: Vec<&Value> = st
            .objects
            .iter()
            .filter(|((p, _, _), o)| matches(o, p, &plural, &namespace, &selector))
            .map(|(_, o)| o)
            .collect();
        let body = json!({
            "kind": format!("{}List", kind_of(&plural)),
            "apiVersion": "v1",
            "metadata": {"resourceVersion": st.rv.to_string()},
            "items": items,
        })
        .to_string();
        drop(st);
        let head =
            format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n", body.len());
        if out.write_all(head.as_bytes()).and_then(|_| out.write_all(body.as_bytes())).is_err() {
            return;
        }
    }
}

fn chunk(out: &mut TcpStream, line: &str) -> std::io::Result<()> {
    let data = format!("{line}\n");
    write!(out, "{:x}\r\n{data}\r\n", data.len())?;
    out.flush()
}

fn watch(
    mut out: TcpStream,
    state: &Arc<Mutex<State>>,
    plural: String,
    namespace: Option<String>,
    selector: Vec<(String, String)>,
    since: u64,
    bookmarks: bool,
) {
    let (tx, rx) = channel();
    let (backlog, rv) = {
        let mut st = state.lock().unwrap();
        let backlog: Vec<String> = st
            .log
            .iter()
            .filter(|(rv, p, o, _)| *rv > since && matches(o, p, &plural, &namespace, &selector))
            .map(|(_, _, _, line)| line.clone())
            .collect();
        st.watchers.push(Watcher { kind: plural.clone(), namespace, selector, tx });
        (backlog, st.rv)
    };
    let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n";
    if out.write_all(head.as_bytes()).is_err() {
        return;
    }
    for line in backlog {
        if chunk(&mut out, &line).is_err() {
            return;
        }
    }
    if bookmarks {
        let mark = json!({"type": "BOOKMARK", "object": {"kind": kind_of(&plural), "apiVersion": "v1", "metadata": {"resourceVersion": rv.to_string()}}});
        if chunk(&mut out, &mark.to_string()).is_err() {
            return;
        }
    }
    loop {
        match rx.recv_timeout(Duration::from_secs(1)) {
            Ok(line) => {
                if chunk(&mut out, &line).is_err() {
                    return;
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                // Find out whether the client went away: a zero-length chunk would end the stream, so probe with nothing.
                if out.flush().is_err() {
                    return;
                }
            }
            Err(_) => return,
        }
    }
}

/// A running pod with one container port, as the API server returns it.
pub fn pod(namespace: &str, name: &str, ip: &str, port: u16, ready: bool, labels: Value) -> Value {
    json!({
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": format!("uid-{namespace}-{name}"),
            "labels": labels,
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "demo", "uid": "sts-uid", "controller": true}]
        },
        "spec": {
            "nodeName": "node-a",
            "containers": [{"name": "app", "image": "demo:1", "ports": [{"name": "metrics", "containerPort": port, "protocol": "TCP"}]}]
        },
        "status": {
            "phase": "Running",
            "hostIP": "127.0.0.1",
            "podIP": ip,
            "podIPs": [{"ip": ip}],
            "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]
        }
    })
}
