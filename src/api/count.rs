//! Integer-or-percentage fields (`batchSize`, `partition`, `unitReplicas`).

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// Resolves a count against `total`: an integer as is (never negative), a
/// percentage of `total` rounded down or up. The CRD rules already refuse
/// malformed values; one that slips through is an error, never a panic.
pub fn resolve(value: &IntOrString, total: usize, round_up: bool) -> Result<usize, String> {
    match value {
        IntOrString::Int(n) => usize::try_from(*n).map_err(|_| format!("{n} is negative")),
        IntOrString::String(s) => {
            let percent: usize = s
                .strip_suffix('%')
                .and_then(|p| p.parse().ok())
                .filter(|p| *p <= 100)
                .ok_or_else(|| format!("{s:?} is neither an integer nor a percentage 0%..100%"))?;
            let scaled = total * percent;
            Ok(if round_up {
                scaled.div_ceil(100)
            } else {
                scaled / 100
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_and_percentages() {
        let pct = |s: &str| IntOrString::String(s.into());
        assert_eq!(resolve(&IntOrString::Int(3), 10, false), Ok(3));
        assert_eq!(resolve(&pct("25%"), 10, false), Ok(2));
        assert_eq!(resolve(&pct("25%"), 10, true), Ok(3));
        assert_eq!(resolve(&pct("100%"), 7, false), Ok(7));
        assert!(resolve(&pct("abc"), 10, false).is_err());
        assert!(resolve(&pct("101%"), 10, false).is_err());
        assert!(resolve(&IntOrString::Int(-1), 10, false).is_err());
    }
}
