//! The Meta webhook endpoint. GET answers the verification handshake; POST checks the signature
//! over the raw bytes, splits the body into per-change envelopes and enqueues them, answering in
//! milliseconds. It interprets no personal field and logs none: ids, counts and reasons only.
//!
//! Status codes follow Meta's retry rules: anything but 200 is retried for days, so a signed body
//! that cannot be used is quarantined and answered 200; only our own failures (queue or
//! quarantine unavailable) answer 500, so that Meta retries and nothing is lost.

use http::Method;
use shared::apigw::{self, Request, Response};
use shared::clock::SharedClock;
use shared::config::QueueKind;
use shared::domain::{QuarantineBucket, QuarantineEntry};
use shared::meta::envelope::{self, Rejected};
use shared::meta::signature::{self, AppSecret, SignatureError};
use shared::queue::Queue;
use shared::secrets::SecretSource;
use shared::store::QuarantineStore;
use shared::wiring::{Resources, WiringError};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::time::Instant;

pub const ROUTE: &str = "/webhooks/meta";
/// WhatsApp payloads are at most 3 MB; anything larger is not from Meta.
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

/// How often a signature that no cached app secret verifies may trigger a re-read of the secret:
/// a rotated secret is accepted within seconds, and a flood of bad signatures costs one read a
/// minute.
pub const SECRET_REREAD_INTERVAL: Duration = Duration::from_secs(60);

/// The cached app secrets, re-read from their source when a signature fails with all of them,
/// at most once per interval.
#[derive(Debug)]
pub struct AppSecrets {
    current: RwLock<Arc<Vec<AppSecret>>>,
    source: Arc<dyn SecretSource>,
    reread_interval: Duration,
    last_read: tokio::sync::Mutex<Instant>,
}

impl AppSecrets {
    pub fn new(initial: Vec<AppSecret>, source: Arc<dyn SecretSource>, reread_interval: Duration) -> Self {
        Self {
            current: RwLock::new(Arc::new(initial)),
            source,
            reread_interval,
            last_read: tokio::sync::Mutex::new(Instant::now()),
        }
    }

    fn current(&self) -> Arc<Vec<AppSecret>> {
        self.current.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Verifies with the cached secrets; on a mismatch, re-reads them if the last read is older
    /// than the interval, and tries once more.
    pub async fn verify(&self, header: Option<&str>, body: &[u8]) -> Result<(), SignatureError> {
        let first = signature::verify(header, body, &self.current());
        if first != Err(SignatureError::Mismatch) {
            return first;
        }
        let refreshed = {
            let mut last = self.last_read.lock().await;
            if last.elapsed() < self.reread_interval {
                None
            } else {
                *last = Instant::now();
                match self.source.fetch().await.and_then(|v| v.app_secrets()) {
                    Ok(secrets) => {
                        tracing::info!(count = secrets.len(), "app secrets re-read after a signature mismatch");
                        let secrets = Arc::new(secrets);
                        *self.current.write().unwrap_or_else(|p| p.into_inner()) = secrets.clone();
                        Some(secrets)
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "app secrets could not be re-read; keeping the cached ones");
                        None
                    }
                }
            }
        };
        match refreshed {
            Some(secrets) => signature::verify(header, body, &secrets),
            None => first,
        }
    }
}

/// The webhook handler from its resources: the ingest queue, the quarantine table and the
/// secret's app secrets and verify token, read now (a missing or malformed one fails init).
pub async fn build(r: &impl Resources) -> Result<Webhook, WiringError> {
    let source = r.secrets()?;
    let values = source.fetch().await?;
    let verify_token = values.verify_token()?;
    let secrets = AppSecrets::new(values.app_secrets()?, source, SECRET_REREAD_INTERVAL);
    let ingest = r.queue(QueueKind::Ingest)?;
    Ok(Webhook::new(secrets, verify_token, ingest, r.quarantine(), r.clock()))
}

#[derive(Debug)]
pub struct Webhook {
    secrets: AppSecrets,
    verify_token: String,
    ingest: Arc<dyn Queue>,
    quarantine: Arc<dyn QuarantineStore>,
    clock: SharedClock,
}

impl Webhook {
    pub fn new(
        secrets: AppSecrets,
        verify_token: String,
        ingest: Arc<dyn Queue>,
        quarantine: Arc<dyn QuarantineStore>,
        clock: SharedClock,
    ) -> Self {
        Self {
            secrets,
            verify_token,
            ingest,
            quarantine,
            clock,
        }
    }

    pub async fn handle(&self, req: &Request) -> Response {
        if apigw::path(req) != ROUTE {
            return apigw::error(404, "no such route");
        }
        match apigw::method(req) {
            Method::GET => self.verify_subscription(req),
            Method::POST => self.receive(req).await,
            _ => apigw::error(405, "use GET or POST"),
        }
    }

    fn verify_subscription(&self, req: &Request) -> Response {
        let (Some(mode), Some(token), Some(challenge)) = (
            apigw::query(req, "hub.mode"),
            apigw::query(req, "hub.verify_token"),
            apigw::query(req, "hub.challenge"),
        ) else {
            return apigw::error(400, "hub.mode, hub.verify_token and hub.challenge are required");
        };
        if mode != "subscribe" || !constant_time_eq(token.as_bytes(), self.verify_token.as_bytes()) {
            tracing::warn!("webhook verification refused");
            return apigw::error(403, "verification refused");
        }
        // Echoed byte for byte: Meta's challenge is opaque, not necessarily a number.
        apigw::respond(200, "text/plain", challenge)
    }

    async fn receive(&self, req: &Request) -> Response {
        let request_id = req
            .request_context
            .request_id
            .clone()
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        if apigw::body_len(req) > MAX_BODY_BYTES + 3 {
            return apigw::error(413, "body larger than 3 MB");
        }
        let Ok(body) = apigw::body_bytes(req) else {
            return apigw::error(400, "body is not valid base64");
        };
        if body.len() > MAX_BODY_BYTES {
            return apigw::error(413, "body larger than 3 MB");
        }
        if let Err(e) = self
            .secrets
            .verify(apigw::header(req, "x-hub-signature-256"), &body)
            .await
        {
            tracing::warn!(%request_id, reason = %e, "webhook signature refused");
            return apigw::error(401, e);
        }
        let received_at = self.clock.now();
        let split = match envelope::split(&body, &request_id, received_at) {
            Ok(split) => split,
            Err(unusable) => {
                let whole = Rejected {
                    kind: unusable.kind,
                    reason: unusable.to_string(),
                    raw: String::from_utf8_lossy(&body).into_owned(),
                };
                return match self.quarantine(&request_id, vec![whole]).await {
                    Ok(()) => apigw::respond(200, "text/plain", "quarantined"),
                    Err(r) => r,
                };
            }
        };
        let bodies = split.envelopes;
        if let Err(e) = self.ingest.send_batch(&bodies).await {
            tracing::error!(%request_id, error = %e, "ingest queue refused the envelopes; Meta will retry");
            return apigw::error(500, "temporarily unavailable");
        }
        let rejected = split.rejected.len();
        if let Err(r) = self.quarantine(&request_id, split.rejected).await {
            return r;
        }
        tracing::info!(%request_id, enqueued = bodies.len(), quarantined = rejected, "webhook accepted");
        shared::metrics::emit(
            "webhook",
            received_at,
            &[
                ("EnvelopesEnqueued", bodies.len() as u64),
                ("PartsQuarantined", rejected as u64),
            ],
        );
        apigw::respond(200, "text/plain", "ok")
    }

    async fn quarantine(&self, request_id: &str, parts: Vec<Rejected>) -> Result<(), Response> {
        let now = self.clock.now();
        for part in parts {
            tracing::warn!(%request_id, kind = part.kind, "webhook part quarantined");
            let entry = QuarantineEntry::new(QuarantineBucket::Rejected, part.reason, part.raw, now);
            if let Err(e) = self.quarantine.put(&entry).await {
                tracing::error!(%request_id, error = %e.log_safe(), "quarantine unavailable; Meta will retry");
                return Err(apigw::error(500, "temporarily unavailable"));
            }
        }
        Ok(())
    }
}

/// Compares without an early exit, so timing does not reveal how much of a token matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests;
