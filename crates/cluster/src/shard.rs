//! One shard's storage as the other roles see it.

use std::sync::Arc;

use async_trait::async_trait;
use futures::StreamExt;
use pharos_model::{Labels, Matcher, Series};
use pharos_proto::pharos::v1 as pb;
use pharos_proto::pharos::v1::ingester_client::IngesterClient;
use pharos_tsdb::{AppendResult, RejectReason, Rejection, SeriesSamples, Storage};
use tonic::transport::Channel;

use crate::convert::*;
use crate::{Error, MAX_MESSAGE_BYTES};

/// The operations the distributor and the querier need from one shard.
#[async_trait]
pub trait Shard: Send + Sync {
    async fn append(&self, tenant: &str, batch: Vec<SeriesSamples>) -> Result<AppendResult, Error>;
    async fn select(&self, tenant: &str, matchers: &[Matcher], mint: i64, maxt: i64) -> Result<Vec<Series>, Error>;
    async fn series(&self, tenant: &str, matchers: &[Matcher]) -> Result<Vec<Labels>, Error>;
    /// Label names (`name` = None) or the values of one label.
    async fn labels(&self, tenant: &str, name: Option<&str>, matchers: &[Matcher]) -> Result<Vec<String>, Error>;
    async fn flush(&self) -> Result<(), Error>;
}

/// A shard whose TSDB lives in this process. Storage calls block, so they
/// run on tokio's blocking pool, never on the async workers.
#[derive(Clone)]
pub struct LocalShard {
    storage: Arc<dyn Storage>,
}

impl LocalShard {
    pub fn new(storage: Arc<dyn Storage>) -> Self {
        Self { storage }
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn Storage) -> Result<T, pharos_tsdb::Error> + Send + 'static,
    ) -> Result<T, Error> {
        let storage = self.storage.clone();
        tokio::task::spawn_blocking(move || f(&*storage))
            .await
            .map_err(|e| Error::Internal(format!("storage task failed: {e}")))?
            .map_err(Error::from)
    }
}

#[async_trait]
impl Shard for LocalShard {
    async fn append(&self, tenant: &str, batch: Vec<SeriesSamples>) -> Result<AppendResult, Error> {
        let tenant = tenant.to_string();
        self.blocking(move |s| s.append(&tenant, &batch)).await
    }

    async fn select(&self, tenant: &str, matchers: &[Matcher], mint: i64, maxt: i64) -> Result<Vec<Series>, Error> {
        let (tenant, matchers) = (tenant.to_string(), matchers.to_vec());
        self.blocking(move |s| s.select(&tenant, &matchers, mint, maxt)).await
    }

    async fn series(&self, tenant: &str, matchers: &[Matcher]) -> Result<Vec<Labels>, Error> {
        let (tenant, matchers) = (tenant.to_string(), matchers.to_vec());
        self.blocking(move |s| s.series(&tenant, &matchers)).await
    }

    async fn labels(&self, tenant: &str, name: Option<&str>, matchers: &[Matcher]) -> Result<Vec<String>, Error> {
        let (tenant, matchers, name) = (tenant.to_string(), matchers.to_vec(), name.map(str::to_string));
        self.blocking(move |s| match name {
            None => s.label_names(&tenant, &matchers),
            Some(n) => s.label_values(&tenant, &n, &matchers),
        })
        .await
    }

    async fn flush(&self) -> Result<(), Error> {
        self.blocking(|s| s.flush()).await
    }
}

/// A shard reached over gRPC. The connection is made lazily and re-made
/// after failures by tonic's channel.
#[derive(Clone)]
pub struct RemoteShard {
    id: u32,
    client: IngesterClient<Channel>,
}

impl RemoteShard {
    /// `addr` is `host:port`.
    pub fn new(id: u32, addr: &str) -> Result<Self, Error> {
        let channel = Channel::from_shared(format!("http://{addr}"))
            .map_err(|e| Error::BadRequest(format!("bad ingester address {addr:?}: {e}")))?
            .connect_timeout(std::time::Duration::from_secs(5))
            .connect_lazy();
        let client = IngesterClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        Ok(Self { id, client })
    }

    fn err(&self, s: tonic::Status) -> Error {
        Error::from_status(self.id, s)
    }
}

fn reason_from_str(s: &str) -> RejectReason {
    RejectReason::parse(s).unwrap_or(RejectReason::OutOfOrder)
}

#[async_trait]
impl Shard for RemoteShard {
    async fn append(&self, tenant: &str, batch: Vec<SeriesSamples>) -> Result<AppendResult, Error> {
        let req = pb::WriteRequest {
            tenant: tenant.to_string(),
            series: batch.iter().map(|s| series_to_proto(&s.labels, &s.samples)).collect(),
        };
        let resp = self.client.clone().write(req).await.map_err(|s| self.err(s))?.into_inner();
        let duplicates = 0; // folded into `accepted` by the ingester
        Ok(AppendResult {
            accepted: resp.accepted,
            duplicates,
            rejected: resp
                .rejected
                .into_iter()
                .map(|r| {
                    let labels = batch
                        .iter()
                        .find(|s| s.labels.to_string() == r.series)
                        .map(|s| s.labels.clone())
                        .unwrap_or_default();
                    Rejection { labels, reason: reason_from_str(&r.reason), count: r.count, first_t: r.first_timestamp }
                })
                .collect(),
        })
    }

    async fn select(&self, tenant: &str, matchers: &[Matcher], mint: i64, maxt: i64) -> Result<Vec<Series>, Error> {
        let req = pb::SelectRequest {
            tenant: tenant.to_string(),
            matchers: matchers_to_proto(matchers),
            start_ms: mint,
            end_ms: maxt,
        };
        let mut stream = self.client.clone().select(req).await.map_err(|s| self.err(s))?.into_inner();
        let mut out = Vec::new();
        while let Some(msg) = stream.next().await {
            let msg = msg.map_err(|s| self.err(s))?;
            out.extend(msg.series.into_iter().map(select_result_from_proto));
        }
        Ok(out)
    }

    async fn series(&self, tenant: &str, matchers: &[Matcher]) -> Result<Vec<Labels>, Error> {
        let req = pb::SelectRequest {
            tenant: tenant.to_string(),
            matchers: matchers_to_proto(matchers),
            start_ms: i64::MIN,
            end_ms: i64::MAX,
        };
        let resp = self.client.clone().series(req).await.map_err(|s| self.err(s))?.into_inner();
        Ok(resp.series.into_iter().map(|s| labels_from_proto(s.labels)).collect())
    }

    async fn labels(&self, tenant: &str, name: Option<&str>, matchers: &[Matcher]) -> Result<Vec<String>, Error> {
        let req = pb::LabelsRequest {
            tenant: tenant.to_string(),
            name: name.unwrap_or_default().to_string(),
            matchers: matchers_to_proto(matchers),
            start_ms: i64::MIN,
            end_ms: i64::MAX,
        };
        let mut client = self.client.clone();
        let resp = match name {
            None => client.label_names(req).await,
            Some(_) => client.label_values(req).await,
        };
        Ok(resp.map_err(|s| self.err(s))?.into_inner().values)
    }

    async fn flush(&self) -> Result<(), Error> {
        self.client.clone().flush(pb::FlushRequest {}).await.map_err(|s| self.err(s))?;
        Ok(())
    }
}
