//! An erasure asked for in the chat itself (policy §7): a WhatsApp message whose whole text is a
//! deletion phrase (`keywords::ERASURE_PHRASES`) opens an erasure of its sender in that tenant.
//! The person's own number proves who asked, so the request is approved at once and queued for
//! the erasure worker, and a reply with the status page's link is queued for the sender.
//!
//! The confirmation code is derived from the tenant and Meta's message id, so a redelivery of the
//! message finds the same request (one lookup by id) instead of opening a second one.

use crate::ProcessError;
use shared::deadline::{Jurisdiction, RequestKind};
use shared::domain::{
    ConfirmationCode, ContactUpsert, Created, ErasureJob, Locale, MetaMessageId, NewRequest, PrivacyRequest,
    RequestSource, RequestStatus, Subject, Tenant,
};
use shared::identity::SubjectKeySecret;
use shared::optout::command::{OutboundReply, ReplyKind};
use shared::optout::replies;
use shared::queue::{Queue, QueueError};
use shared::store::{PrivacyRequestStore, StoreError};
use shared::timestamp::Timestamp;
use std::sync::Arc;

/// Where the status page is served, under the stack's public URL (as the deletion function
/// serves it).
pub const STATUS_PAGE_PATH: &str = "/privacy/requests/";

#[derive(Clone, Debug)]
pub struct ChatErasure {
    requests: Arc<dyn PrivacyRequestStore>,
    erasure: Arc<dyn Queue>,
    outbound: Arc<dyn Queue>,
    /// `https://host` of the public routes.
    public_base_url: String,
    code_key: [u8; 32],
}

impl ChatErasure {
    pub fn new(
        requests: Arc<dyn PrivacyRequestStore>,
        erasure: Arc<dyn Queue>,
        outbound: Arc<dyn Queue>,
        public_base_url: &str,
        secret: &SubjectKeySecret,
    ) -> Self {
        Self {
            requests,
            erasure,
            outbound,
            public_base_url: public_base_url.trim_end_matches('/').to_owned(),
            code_key: secret.derive_key(b"chat-erasure-confirmation-code"),
        }
    }

    /// Opens (or finds) the erasure of the message's sender in the tenant, queues it and the
    /// reply. Returns the request, or None when the sender has no identifier to erase by.
    pub async fn open(
        &self,
        tenant: &Tenant,
        upsert: &ContactUpsert,
        message: &MetaMessageId,
        language: Locale,
        now: Timestamp,
    ) -> Result<Option<PrivacyRequest>, ProcessError> {
        if upsert.identifiers.is_empty() {
            return Ok(None);
        }
        let code = ConfirmationCode::derived(
            &self.code_key,
            format!("{}\n{}", tenant.id, message.as_str()).as_bytes(),
        );
        let request = PrivacyRequest::new(NewRequest {
            kind: RequestKind::Erasure,
            source: RequestSource::WhatsApp,
            jurisdiction: Jurisdiction::default(),
            tenant: Some(tenant.id.clone()),
            subjects: upsert
                .identifiers
                .iter()
                .map(|l| Subject {
                    kind: l.identifier.kind(),
                    key: l.subject_key.clone(),
                })
                .collect(),
            note: None,
            erase: false,
            rectify: None,
            code,
            now,
            by: "whatsapp chat",
        });
        let stored = match self.requests.create(&request).await? {
            Created::New => request,
            // This message again, or another request of the person's still open.
            Created::Existing(id) => self.requests.get(id).await?.ok_or(StoreError::Conflict)?,
        };
        // Queued again when found: a send lost the first time is retried this way, and the
        // worker skips what is already done.
        if matches!(stored.status, RequestStatus::Approved | RequestStatus::InProgress) {
            let job = shared::queue::to_body(&ErasureJob { request: stored.id })
                .map_err(|e| QueueError::Backend(e.to_string()))?;
            self.erasure.send_batch(&[job]).await?;
        }
        let status_url = format!("{}{STATUS_PAGE_PATH}{}", self.public_base_url, stored.code.as_str());
        let reply = OutboundReply {
            tenant: tenant.id.clone(),
            to: upsert.contact.clone(),
            kind: ReplyKind::ErasureReceived,
            language,
            text: replies::erasure_received(language, &tenant.name, &status_url),
            // One reply per request, however often it is asked for.
            dedup_key: format!("erasure:{}", stored.id),
            request: Some(stored.id),
            answering_at: Some(upsert.seen_at),
        };
        let body = shared::queue::to_body(&reply).map_err(|e| QueueError::Backend(e.to_string()))?;
        self.outbound.send_batch(&[body]).await?;
        Ok(Some(stored))
    }
}
