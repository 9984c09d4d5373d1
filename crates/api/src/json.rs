//! Rendering of PromQL values in Prometheus's JSON shapes.

use axum::Json;
use pharos_model::{Labels, Sample};
use pharos_promql::Value;
use serde_json::{Map, Value as J, json};

pub fn success(data: J) -> Json<J> {
    Json(json!({"status": "success", "data": data}))
}

pub use pharos_exposition::format_value;

/// Unix seconds, as an integer when whole.
pub fn format_time(t_ms: i64) -> J {
    if t_ms % 1000 == 0 { J::from(t_ms / 1000) } else { J::from(t_ms as f64 / 1000.0) }
}

pub fn labels(l: &Labels) -> J {
    J::Object(l.iter().map(|l| (l.name.clone(), J::String(l.value.clone()))).collect::<Map<_, _>>())
}

fn point(s: &Sample) -> J {
    json!([format_time(s.t), format_value(s.v)])
}

pub fn value(v: &Value) -> J {
    match v {
        Value::Scalar { t, v } => json!({"resultType": "scalar", "result": [format_time(*t), format_value(*v)]}),
        Value::String { t, s } => json!({"resultType": "string", "result": [format_time(*t), s]}),
        Value::Vector(samples) => json!({
            "resultType": "vector",
            "result": samples.iter().map(|s| json!({"metric": labels(&s.labels), "value": point(&Sample::new(s.t, s.v))})).collect::<Vec<_>>(),
        }),
        Value::Matrix(series) => json!({
            "resultType": "matrix",
            "result": series.iter().map(|s| json!({"metric": labels(&s.labels), "values": s.samples.iter().map(point).collect::<Vec<_>>()})).collect::<Vec<_>>(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_and_times_like_prometheus() {
        assert_eq!(format_value(1.0), "1");
        assert_eq!(format_value(0.1), "0.1");
        assert_eq!(format_value(1e21), "1000000000000000000000");
        assert_eq!(format_value(f64::NEG_INFINITY), "-Inf");
        assert_eq!(format_time(1_500_000), J::from(1500));
        assert_eq!(format_time(1_500_001).to_string(), "1500.001");
    }
}
