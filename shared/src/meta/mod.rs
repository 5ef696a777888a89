//! Meta's webhook formats: the signature, the split of a POST into per-change envelopes, and the
//! WhatsApp Cloud API and Instagram messaging payloads the processor reads.

pub mod envelope;
pub mod events;
pub mod identifiers;
pub mod instagram;
pub mod signature;
pub mod whatsapp;
