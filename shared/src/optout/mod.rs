//! Opt-outs: the keyword policy, the commands the processor sends to the opt-out function, the
//! replies, and the contactability check every outbound path asks first.

pub mod command;
pub mod contactability;
pub mod keywords;
pub mod replies;
