//! Meta's webhook formats: the signature, the split of a POST into per-change envelopes, and the
//! WhatsApp Cloud API and Instagram messaging payloads the processor reads, and the Graph API
//! client that resolves what the payloads leave out.

pub mod envelope;
pub mod events;
pub mod graph;
pub mod identifiers;
pub mod instagram;
pub mod send;
pub mod signature;
pub mod whatsapp;
