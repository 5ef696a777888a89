//! Counters as CloudWatch Embedded Metric Format: one JSON line on stdout that CloudWatch turns
//! into metrics. Names and counts only; never personal data.

use crate::timestamp::Timestamp;
use serde_json::{Map, Value, json};

pub const NAMESPACE: &str = "SocioVirtual";

/// The EMF line for a set of counters of one function. Zero counters are left out.
pub fn emf_line(function: &str, at: Timestamp, counters: &[(&str, u64)]) -> Option<String> {
    let nonzero: Vec<_> = counters.iter().filter(|(_, v)| *v > 0).collect();
    if nonzero.is_empty() {
        return None;
    }
    let mut root = Map::new();
    root.insert(
        "_aws".to_owned(),
        json!({
            "Timestamp": at.unix_millis(),
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [["Function"]],
                "Metrics": nonzero.iter().map(|(name, _)| json!({"Name": name, "Unit": "Count"})).collect::<Vec<_>>(),
            }],
        }),
    );
    root.insert("Function".to_owned(), Value::from(function));
    for (name, value) in nonzero {
        root.insert((*name).to_owned(), Value::from(*value));
    }
    Some(Value::Object(root).to_string())
}

pub fn emit(function: &str, at: Timestamp, counters: &[(&str, u64)]) {
    if let Some(line) = emf_line(function, at, counters) {
        println!("{line}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emf_declares_every_nonzero_counter() {
        let line = emf_line(
            "processor",
            Timestamp::from_unix_millis(5),
            &[("Stored", 3), ("Unrouted", 0)],
        )
        .expect("line");
        let v: Value = serde_json::from_str(&line).expect("json");
        assert_eq!(v["Stored"], 3);
        assert!(v.get("Unrouted").is_none());
        assert_eq!(v["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Name"], "Stored");
        assert_eq!(
            emf_line("processor", Timestamp::from_unix_millis(5), &[("Unrouted", 0)]),
            None
        );
    }
}
