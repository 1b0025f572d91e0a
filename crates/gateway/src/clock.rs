//! The gateway's clock and the time formats AWS writes: milliseconds since the epoch
//! ([`now_ms`]), ISO-8601 (`connectedAt`, EventBridge's `time`), and API Gateway's
//! `requestTime`. Everything but [`now_ms`] is a pure function of its argument.

use std::time::{Duration, SystemTime};

/// Milliseconds since the epoch.
pub fn now_ms() -> i64 {
    epoch_ms(SystemTime::now())
}

fn epoch_ms(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn system_time(ms: i64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

/// ISO-8601 in UTC with milliseconds (`2024-02-09T15:30:00.123Z`).
pub fn iso8601(ms: i64) -> String {
    humantime::format_rfc3339_millis(system_time(ms)).to_string()
}

/// ISO-8601 in UTC, whole seconds (`2024-02-09T15:30:00Z`), as EventBridge writes `time`.
pub fn iso8601_seconds(ms: i64) -> String {
    humantime::format_rfc3339_seconds(system_time(ms)).to_string()
}

/// API Gateway's `requestTime`, in the common log format (`09/Feb/2024:15:30:00 +0000`).
pub fn request_time(ms: i64) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    // `YYYY-MM-DDTHH:MM:SSZ`
    let iso = iso8601_seconds(ms);
    let month = iso
        .get(5..7)
        .and_then(|m| m.parse::<usize>().ok())
        .and_then(|m| MONTHS.get(m.wrapping_sub(1)))
        .unwrap_or(&"Jan");
    let (Some(year), Some(day), Some(time)) = (iso.get(0..4), iso.get(8..10), iso.get(11..19))
    else {
        return iso;
    };
    format!("{day}/{month}/{year}:{time} +0000")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_have_api_gateway_shapes() {
        let ms = 1_707_492_600_123;
        assert_eq!(iso8601(ms), "2024-02-09T15:30:00.123Z");
        assert_eq!(iso8601_seconds(ms), "2024-02-09T15:30:00Z");
        assert_eq!(request_time(ms), "09/Feb/2024:15:30:00 +0000");
        assert_eq!(
            request_time(1_735_689_599_000),
            "31/Dec/2024:23:59:59 +0000"
        );
        assert!(now_ms() > ms);
    }
}
