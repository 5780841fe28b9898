//! The Embedded Metric Format's required structure, for the tests that read
//! the metric lines the functions write.

use serde_json::Value;

/// Checks `line` against the EMF specification's required structure:
/// `_aws.Timestamp` (integer ms), `_aws.CloudWatchMetrics` (non-empty), each
/// directive with a `Namespace`, 1–30-key dimension sets whose keys are
/// top-level string members, and 1–100 metrics, each a top-level number.
/// Returns what is wrong.
pub fn check_emf(line: &Value) -> Result<(), String> {
    let aws = line.get("_aws").ok_or("no _aws")?;
    aws["Timestamp"]
        .as_u64()
        .ok_or("_aws.Timestamp is not an integer")?;
    let directives = aws["CloudWatchMetrics"]
        .as_array()
        .filter(|d| !d.is_empty())
        .ok_or("_aws.CloudWatchMetrics is not a non-empty array")?;
    for d in directives {
        let ns = d["Namespace"]
            .as_str()
            .ok_or("a directive has no Namespace")?;
        if ns.is_empty() || ns.len() > 255 {
            return Err(format!("bad Namespace {ns:?}"));
        }
        for set in d["Dimensions"]
            .as_array()
            .ok_or("Dimensions is not an array")?
        {
            let keys = set.as_array().ok_or("a dimension set is not an array")?;
            if keys.is_empty() || keys.len() > 30 {
                return Err(format!("dimension set of {} keys", keys.len()));
            }
            for k in keys {
                let k = k.as_str().ok_or("a dimension key is not a string")?;
                if !line[k].is_string() {
                    return Err(format!("dimension {k} has no string value"));
                }
            }
        }
        let metrics = d["Metrics"].as_array().ok_or("Metrics is not an array")?;
        if metrics.is_empty() || metrics.len() > 100 {
            return Err(format!("{} metrics in a directive", metrics.len()));
        }
        for m in metrics {
            let name = m["Name"].as_str().ok_or("a metric has no Name")?;
            if !line[name].is_number() {
                return Err(format!("metric {name} has no numeric value"));
            }
        }
    }
    Ok(())
}
