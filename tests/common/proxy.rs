//! A fault-injecting TCP proxy between named nodes, for partition tests.
//!
//! Every directed link `from → to` has its own loopback listener, so the
//! proxy knows who talks to whom: a node that sends to peer `to` through
//! [`Proxy::routes`]`[from][to]` reaches `to` at the address `resolve(to)`
//! gives (looked up when the first connection arrives, so the proxy can
//! start before the nodes' addresses are known). [`Proxy::isolate`] cuts a
//! node off both ways: its links' connections are closed at once and new
//! ones are closed as soon as they are accepted, until [`Proxy::heal`].

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

type Resolve = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

pub struct Proxy {
    rt: tokio::runtime::Runtime,
    cut: watch::Sender<BTreeSet<String>>,
    routes: BTreeMap<String, BTreeMap<String, String>>,
}

fn is_cut(cut: &BTreeSet<String>, from: &str, to: &str) -> bool {
    cut.contains(from) || cut.contains(to)
}

impl Proxy {
    /// Listeners for every ordered pair of `nodes`; `resolve` names the
    /// address a node really listens on.
    pub fn start(nodes: &[&str], resolve: impl Fn(&str) -> Option<String> + Send + Sync + 'static) -> Proxy {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let (cut, _) = watch::channel(BTreeSet::new());
        let resolve: Resolve = Arc::new(resolve);
        let mut routes: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        for from in nodes {
            for to in nodes.iter().filter(|t| *t != from) {
                let listener = rt.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
                let addr = listener.local_addr().unwrap().to_string();
                routes.entry(from.to_string()).or_default().insert(to.to_string(), addr);
                let link = (from.to_string(), to.to_string());
                rt.spawn(accept(listener, link, cut.clone(), resolve.clone()));
            }
        }
        Proxy { rt, cut, routes }
    }

    /// `{from: {to: address}}`: the shape of `pharos cluster up --raft-routes`.
    pub fn routes(&self) -> serde_json::Value {
        serde_json::to_value(&self.routes).unwrap()
    }

    /// Cuts `node` off from every other node, both ways.
    pub fn isolate(&self, node: &str) {
        self.cut.send_modify(|c| {
            c.insert(node.to_string());
        });
    }

    pub fn heal(&self, node: &str) {
        self.cut.send_modify(|c| {
            c.remove(node);
        });
    }

    /// Runs `f` on the proxy's runtime (for a test's own async calls).
    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }
}

async fn accept(listener: TcpListener, link: (String, String), cut: watch::Sender<BTreeSet<String>>, resolve: Resolve) {
    while let Ok((inbound, _)) = listener.accept().await {
        tokio::spawn(forward(inbound, link.clone(), cut.subscribe(), resolve.clone()));
    }
}

/// Carries one connection over the link until either side closes it or the
/// link is cut.
async fn forward(
    mut inbound: TcpStream,
    (from, to): (String, String),
    mut cut: watch::Receiver<BTreeSet<String>>,
    resolve: Resolve,
) {
    if is_cut(&cut.borrow(), &from, &to) {
        return;
    }
    let target = loop {
        match resolve(&to) {
            Some(t) => break t,
            None => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    let Ok(mut outbound) = TcpStream::connect(&target).await else { return };
    let _ = (inbound.set_nodelay(true), outbound.set_nodelay(true));
    let until_cut = async {
        while cut.changed().await.is_ok() {
            if is_cut(&cut.borrow(), &from, &to) {
                return;
            }
        }
    };
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
        _ = until_cut => {}
    }
}
