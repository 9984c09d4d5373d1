//! The synthetic series: names, labels, churn and values.
//!
//! Everything here is a pure function of a series *slot* (0..N), its churn
//! *generation* and a timestamp, so `write` need not remember what it sent
//! and `verify` can recompute every expected sample from the ack log alone.
//! `targets` uses the same model for its exporters (without job/instance,
//! which the scraper adds).
//!
//! The families mimic node_exporter: two counters that only increase and two
//! gauges that move every second. Values are short decimals (at most 12
//! significant digits) so that every storage engine, including ones that
//! store decimals, gives them back exactly.

/// Prometheus metric type of a family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        }
    }
}

/// One metric family of the model.
#[derive(Clone, Copy, Debug)]
pub struct Family {
    pub name: &'static str,
    pub kind: Kind,
    pub help: &'static str,
}

/// Slot `s` belongs to family `s % FAMILIES.len()`.
pub const FAMILIES: [Family; 4] = [
    Family { name: "node_cpu_seconds_total", kind: Kind::Counter, help: "Seconds the CPUs spent in each mode." },
    Family {
        name: "node_network_receive_bytes_total",
        kind: Kind::Counter,
        help: "Network device statistic receive_bytes.",
    },
    Family {
        name: "node_memory_MemAvailable_bytes",
        kind: Kind::Gauge,
        help: "Memory information field MemAvailable_bytes.",
    },
    Family { name: "node_load1", kind: Kind::Gauge, help: "1m load average." },
];

const MODES: [&str; 4] = ["user", "system", "idle", "iowait"];

/// Counters count from this instant (unix seconds), which keeps them small.
const COUNTER_EPOCH_S: i64 = 1_700_000_000;

/// The family of slot `slot`.
pub fn family(slot: u64) -> &'static Family {
    &FAMILIES[(slot % FAMILIES.len() as u64) as usize]
}

/// splitmix64: a stable, well-mixed hash of one integer.
pub fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The identity-giving labels of a series (besides `__name__`, `job` and
/// `instance`), sorted by name: a family-specific label, `cycle_id` (the
/// churn generation) and `series_id` (the slot).
pub fn labels(slot: u64, generation: u64) -> Vec<(&'static str, String)> {
    let idx = slot / FAMILIES.len() as u64;
    let mut out = match slot % FAMILIES.len() as u64 {
        0 => vec![("cpu", (idx / 4).to_string()), ("mode", MODES[(idx % 4) as usize].to_string())],
        1 | 3 => vec![],
        _ => vec![("numa", (idx % 2).to_string())],
    };
    if slot % FAMILIES.len() as u64 == 1 {
        out.push(("device", format!("eth{idx}")));
    }
    out.push(("cycle_id", generation.to_string()));
    out.push(("series_id", slot.to_string()));
    out.sort_by(|a, b| a.0.cmp(b.0));
    out
}

/// The value of series (`slot`, `generation`) at `t_ms`. Counters never
/// decrease as `t_ms` grows; gauges change every second.
pub fn value(slot: u64, generation: u64, t_ms: i64) -> f64 {
    let h = mix(slot ^ generation.rotate_left(40));
    let secs = t_ms.div_euclid(1000);
    match slot % FAMILIES.len() as u64 {
        0 => {
            let inc = 1 + (h % 100) as i64;
            ((secs - COUNTER_EPOCH_S).max(0) * inc) as f64 / 100.0
        }
        1 => {
            let inc = 1 + (h % 100) as i64;
            ((secs - COUNTER_EPOCH_S).max(0) * inc * 8) as f64
        }
        2 => ((1_i64 << 33) - 4096 * ((secs / 7 + (h % 100_000) as i64) % 100_000)) as f64,
        _ => ((secs.wrapping_mul(7919) + (h % 1000) as i64).rem_euclid(1000)) as f64 / 100.0,
    }
}

/// Series churn: `per_minute` series are replaced each minute, one at a
/// time, round-robin over the `n` slots, counted from `start_ms`. A slot's
/// generation is how many times it has been replaced by `t_ms`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Churn {
    pub per_minute: u64,
    pub start_ms: i64,
}

impl Churn {
    pub fn none() -> Churn {
        Churn { per_minute: 0, start_ms: 0 }
    }

    /// Replacements so far, over all slots.
    pub fn events(&self, t_ms: i64) -> u64 {
        if self.per_minute == 0 || t_ms <= self.start_ms {
            return 0;
        }
        ((t_ms - self.start_ms) as u128 * self.per_minute as u128 / 60_000) as u64
    }

    /// The generation of `slot` (of `n`) at `t_ms`.
    pub fn generation(&self, slot: u64, n: u64, t_ms: i64) -> u64 {
        if n == 0 {
            return 0;
        }
        let e = self.events(t_ms);
        e / n + u64::from(slot < e % n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_never_decrease_and_gauges_move() {
        let t0 = 1_800_000_000_000;
        for slot in 0..16 {
            let mut prev = value(slot, 0, t0);
            let mut changed = false;
            for i in 1..200 {
                let v = value(slot, 0, t0 + i * 1000);
                if family(slot).kind == Kind::Counter {
                    assert!(v > prev, "counter slot {slot} went from {prev} to {v}");
                }
                changed |= v != prev;
                prev = v;
            }
            assert!(changed, "slot {slot} never moved");
        }
    }

    #[test]
    fn values_are_short_decimals_that_round_trip_through_text() {
        for slot in 0..64 {
            for g in 0..3 {
                let v = value(slot, g, 1_900_000_000_123);
                assert!(v.abs() < 1e12, "{v}");
                assert_eq!(v.to_string().parse::<f64>().unwrap(), v);
                assert_eq!(v, value(slot, g, 1_900_000_000_999), "same second, same value");
            }
        }
    }

    #[test]
    fn generations_change_the_identity_and_the_value_pattern() {
        let a = labels(5, 0);
        let b = labels(5, 1);
        assert_ne!(a, b);
        assert!(a.windows(2).all(|w| w[0].0 < w[1].0), "sorted: {a:?}");
        assert_eq!(a.iter().find(|l| l.0 == "series_id").unwrap().1, "5");
        assert_eq!(b.iter().find(|l| l.0 == "cycle_id").unwrap().1, "1");
        let distinct = (0..4u64).map(|s| labels(s, 0)).collect::<std::collections::HashSet<_>>();
        assert_eq!(distinct.len(), 4);
    }

    #[test]
    fn churn_replaces_per_minute_series_round_robin() {
        let c = Churn { per_minute: 6, start_ms: 1000 };
        let n = 4;
        assert_eq!(c.events(1000), 0);
        assert_eq!(c.events(1000 + 9_999), 0);
        assert_eq!(c.events(1000 + 10_000), 1);
        assert_eq!(c.events(1000 + 60_000), 6);
        // After 6 replacements over 4 slots: slots 0 and 1 twice, 2 and 3 once.
        let gens: Vec<u64> = (0..n).map(|s| c.generation(s, n, 1000 + 60_000)).collect();
        assert_eq!(gens, vec![2, 2, 1, 1]);
        assert_eq!(gens.iter().sum::<u64>(), 6);
        assert_eq!(Churn::none().generation(3, n, i64::MAX), 0);
        assert_eq!(c.generation(0, 0, 1_000_000), 0);
    }

    #[test]
    fn mix_is_stable() {
        assert_eq!(mix(0), 0xE220_A839_7B1D_CDAF);
        assert_ne!(mix(1), mix(2));
    }
}
