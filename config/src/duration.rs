//! Go's `time.ParseDuration`, which is what MetalLB uses for `hold-time` and `keepalive-time`.

/// Parse a Go duration (`90s`, `1m30s`, `1.5h`, `500ms`, `0`) into signed nanoseconds.
///
/// Accepts what Go accepts: an optional sign, then one or more `<decimal><unit>` groups
/// with units `ns`, `us`/`µs`/`μs`, `ms`, `s`, `m`, `h`; a bare `0` is allowed.
/// Returns `None` for anything else, including values beyond Go's ±292 years.
pub fn parse_go_duration(s: &str) -> Option<i128> {
    let (neg, mut rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if rest == "0" {
        return Some(0);
    }
    if rest.is_empty() {
        return None;
    }
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (int_part, after) = rest.split_at(int_len);
        let (frac_part, after) = match after.strip_prefix('.') {
            Some(a) => {
                let n = a.bytes().take_while(u8::is_ascii_digit).count();
                a.split_at(n)
            }
            None => ("", after),
        };
        if int_part.is_empty() && frac_part.is_empty() {
            return None;
        }
        let unit_len = after
            .char_indices()
            .find(|(_, c)| c.is_ascii_digit() || *c == '.')
            .map_or(after.len(), |(i, _)| i);
        let (unit, after) = after.split_at(unit_len);
        let scale: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return None,
        };
        let whole: u128 = if int_part.is_empty() {
            0
        } else {
            int_part.parse().ok()?
        };
        let mut value = whole.checked_mul(scale)?;
        if !frac_part.is_empty() {
            // Truncate like Go: only as many digits as can matter.
            let digits = &frac_part[..frac_part.len().min(30)];
            let f: u128 = digits.parse().ok()?;
            let denom = 10u128.checked_pow(digits.len() as u32)?;
            value = value.checked_add(f.checked_mul(scale)? / denom)?;
        }
        total = total.checked_add(value)?;
        if total > i64::MAX as u128 {
            return None;
        }
        rest = after;
    }
    let total = total as i128;
    Some(if neg { -total } else { total })
}

#[cfg(test)]
mod tests {
    use super::parse_go_duration as p;

    #[test]
    fn go_durations() {
        const S: i128 = 1_000_000_000;
        assert_eq!(p("90s"), Some(90 * S));
        assert_eq!(p("1m30s"), Some(90 * S));
        assert_eq!(p("3m"), Some(180 * S));
        assert_eq!(p("500ms"), Some(S / 2));
        assert_eq!(p("1.5h"), Some(5400 * S));
        assert_eq!(p(".5s"), Some(S / 2));
        assert_eq!(p("1h2m3s4ms5us6ns"), Some(3723 * S + 4_005_006));
        assert_eq!(p("10µs"), Some(10_000));
        assert_eq!(p("0"), Some(0));
        assert_eq!(p("0s"), Some(0));
        assert_eq!(p("-3s"), Some(-3 * S));
        assert_eq!(p("+3s"), Some(3 * S));
        for bad in [
            "",
            "90",
            "s",
            "1d",
            "1.s.",
            "3 s",
            " 3s",
            "-",
            ".s",
            "1m30",
            "9999999999h",
        ] {
            assert_eq!(p(bad), None, "{bad:?}");
        }
    }
}
