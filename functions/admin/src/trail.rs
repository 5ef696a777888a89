//! The audit trail for auditors: a chain's events by time, and its verification. Both are
//! themselves audited, in the chain they read.

use crate::{Admin, AdminError, AuditTarget, Ctx, bad_request};
use shared::apigw::{self, Request, Response};
use shared::domain::AuditChain;
use shared::seal::CursorScope;
use shared::store::TimeRange;
use shared::timestamp::Timestamp;

impl Admin {
    /// `?tenant=` names a registered tenant's chain; without it, the platform's.
    async fn chain_of(&self, req: &Request) -> Result<AuditChain, AdminError> {
        match apigw::query(req, "tenant") {
            None => Ok(AuditChain::Platform),
            Some(t) => Ok(AuditChain::Tenant(self.tenant(t).await?.id)),
        }
    }

    pub(crate) async fn audit_trail(&self, req: &Request, ctx: &Ctx) -> Response {
        let chain = match self.chain_of(req).await {
            Ok(c) => c,
            Err(e) => return e.into(),
        };
        let time = |field: &str| match apigw::query(req, field) {
            None => Ok(None),
            Some(v) => Timestamp::parse_rfc3339(v)
                .map(Some)
                .map_err(|_| bad_request(field, "must be an RFC 3339 time")),
        };
        let range = match (time("from"), time("to")) {
            (Ok(Some(from)), Ok(Some(to))) if from > to => return bad_request("from", "must not be after to").into(),
            (Ok(from), Ok(to)) => TimeRange { from, to },
            (Err(e), _) | (_, Err(e)) => return e.into(),
        };
        let scope = CursorScope::Audit(
            &chain,
            range.from.map(Timestamp::unix_millis),
            range.to.map(Timestamp::unix_millis),
        );
        let page = match self.page_request(req, scope) {
            Ok(p) => p,
            Err(e) => return e.into(),
        };
        if let Err(e) = self
            .audit(chain.clone(), ctx, req, AuditTarget::Trail { verify: false })
            .await
        {
            return e.into();
        }
        match self.stores.audit.list(&chain, &range, &page).await {
            Ok(p) => apigw::json(
                200,
                &serde_json::json!({
                    "chain": chain,
                    "events": p.items,
                    "next_cursor": self.next_cursor(scope, p.next.as_ref()),
                }),
            ),
            Err(e) => crate::store_error(e).into(),
        }
    }

    pub(crate) async fn verify_audit(&self, req: &Request, ctx: &Ctx) -> Response {
        let chain = match self.chain_of(req).await {
            Ok(c) => c,
            Err(e) => return e.into(),
        };
        if let Err(e) = self
            .audit(chain.clone(), ctx, req, AuditTarget::Trail { verify: true })
            .await
        {
            return e.into();
        }
        match shared::audit::verify(self.stores.audit.as_ref(), &chain, self.clock.as_ref()).await {
            Ok(v) => apigw::json(200, &v),
            Err(e) => crate::store_error(e).into(),
        }
    }
}
