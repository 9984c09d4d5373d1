//! A `kube` client for a discovery: from `kubeconfig_file`, from
//! `api_server` with the job's credentials and TLS settings, or from the
//! in-cluster service account, as Prometheus chooses.

use std::path::PathBuf;

use kube::config::{KubeConfigOptions, Kubeconfig};

use crate::http::ClientConfig;

/// Where the API server is and how to talk to it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ApiAccess {
    pub api_server: Option<String>,
    pub kubeconfig_file: Option<PathBuf>,
    pub client: ClientConfig,
}

/// The in-cluster namespace file of a pod's service account.
const NAMESPACE_FILE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";

/// A client and the namespace this process runs in (`own_namespace`).
pub async fn connect(access: &ApiAccess) -> Result<(kube::Client, String), String> {
    let config = if let Some(path) = access.kubeconfig_file.clone() {
        let shown = path.display().to_string();
        let kc = tokio::task::spawn_blocking(move || Kubeconfig::read_from(&path))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("kubeconfig_file {shown}: {e}"))?;
        kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
            .await
            .map_err(|e| format!("kubeconfig_file {shown}: {e}"))?
    } else if let Some(url) = &access.api_server {
        let mut config = kube::Config::new(url.parse().map_err(|e| format!("api_server {url:?}: {e}"))?);
        apply_client(&mut config, access.client.clone()).await?;
        config.default_namespace = own_namespace_file().await.unwrap_or_else(|| "default".into());
        config
    } else {
        kube::Config::incluster().map_err(|e| format!("in-cluster Kubernetes configuration: {e}"))?
    };
    let namespace = config.default_namespace.clone();
    let client = kube::Client::try_from(config).map_err(|e| format!("Kubernetes client: {e}"))?;
    Ok((client, namespace))
}

async fn own_namespace_file() -> Option<String> {
    let text = tokio::fs::read_to_string(NAMESPACE_FILE).await.ok()?;
    Some(text.trim().to_string()).filter(|s| !s.is_empty())
}

/// Puts `basic_auth`, `authorization` and `tls_config` into a kube config.
/// A bearer token file is given to kube, which reads it again as it
/// rotates, unless it has surrounding white space (kube would send it
/// as is); other secrets are read now, trimmed.
async fn apply_client(config: &mut kube::Config, client: ClientConfig) -> Result<(), String> {
    let bearer_file = client
        .authorization
        .as_ref()
        .filter(|a| a.kind.as_deref().is_none_or(|k| k.eq_ignore_ascii_case("bearer")))
        .and_then(|a| a.credentials_file.clone());
    // kube re-reads a token file as it rotates, but sends it verbatim; a
    // file with surrounding white space (Prometheus trims it) is read once.
    let clean_file = match bearer_file {
        Some(f) => {
            let path = f.clone();
            let text = tokio::task::spawn_blocking(move || std::fs::read_to_string(&path))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| format!("unable to read bearer token file {}: {e}", f.display()))?;
            (text == text.trim()).then_some(f)
        }
        None => None,
    };
    if let Some(file) = clean_file {
        config.auth_info.token_file = Some(file.display().to_string());
    } else if client.basic_auth.is_some() || client.authorization.is_some() {
        let c = client.clone();
        let header =
            tokio::task::spawn_blocking(move || c.authorization_header()).await.map_err(|e| e.to_string())??;
        if let Some(h) = header {
            let value = reqwest::header::HeaderValue::from_str(&h)
                .map_err(|_| "authorization: not a valid header value".to_string())?;
            config.headers.push((reqwest::header::AUTHORIZATION, value));
        }
    }
    if let Some(t) = client.tls_config {
        config.root_cert_file = t.ca_file.clone();
        config.auth_info.client_certificate = t.cert_file.map(|p| p.display().to_string());
        config.auth_info.client_key = t.key_file.map(|p| p.display().to_string());
        config.accept_invalid_certs = t.insecure_skip_verify;
        config.tls_server_name = t.server_name;
    }
    Ok(())
}
