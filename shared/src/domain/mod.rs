//! The nouns of the data plane. Plain data: storage and transport live in `store` and `queue`.

pub mod audit;
pub mod contact;
pub mod message;
pub mod optout;
pub mod privacy;
pub mod quarantine;
pub mod tenant;

pub use audit::{AuditAction, AuditChain, AuditEvent};
pub use contact::{
    BadContactId, Contact, ContactId, ContactRef, ContactUpsert, LinkedIdentifier, MAX_PROFILE_NAME_BYTES,
    ReachedContact,
};
pub use message::{DeliveryState, Direction, Message, MetaMessageId, StatusUpdate};
pub use optout::{ApplyOutcome, OptOutRecord, OptOutScope, OptOutSource, OptState, supersedes};
pub use privacy::{
    ConfirmationCode, Created, ErasureJob, ErasureProgress, NewRequest, PrivacyRequest, Receipt, Rectification,
    RequestId, RequestSource, RequestStatus, Subject, TimelineEntry,
};
pub use quarantine::{DeadLetterSource, EXPIRING_BUCKETS, QuarantineBucket, QuarantineEntry, ReviewPointer};
pub use tenant::{Channel, ChannelAccount, Locale, Offboarding, Tenant, TenantEvent, TenantId};
