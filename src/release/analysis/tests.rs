use proptest::prelude::*;
use serde_json::json;

use super::*;

fn at(second: i64) -> Time {
    Time(k8s_openapi::jiff::Timestamp::from_second(second).expect("time"))
}

fn query(success: Option<&str>, failure: Option<&str>) -> AnalysisQuery {
    AnalysisQuery {
        name: "error-rate".into(),
        query: "x".into(),
        success_condition: success.map(str::to_string),
        failure_condition: failure.map(str::to_string),
        on_empty: EmptyResult::Inconclusive,
    }
}

fn spec(count: i32, failure_limit: i32) -> Analysis {
    serde_json::from_value(json!({
        "prometheus": {"address": "http://127.0.0.1:9090"},
        "queries": [{"name": "error-rate", "query": "x", "successCondition": "result < 0.05"}],
        "intervalSeconds": 10, "initialDelaySeconds": 5,
        "count": count, "failureLimit": failure_limit, "errorLimit": 2
    }))
    .expect("analysis")
}

fn answer(values: &[&str]) -> Vec<u8> {
    let result: Vec<_> = values
        .iter()
        .map(|v| json!({"metric": {}, "value": [1.0, v]}))
        .collect();
    serde_json::to_vec(&json!({"status": "success",
        "data": {"resultType": "vector", "result": result}}))
    .expect("json")
}

#[test]
fn templates_name_the_group_and_its_pods() {
    let facts = Facts {
        namespace: "shop".into(),
        name: "demo".into(),
        revision: "demo-7b9c".into(),
        pod_revisions: vec!["d70a".into(), "39e2".into()],
        group: 1,
        cells: vec!["cell-a".into(), "cell-b".into()],
        pods: vec!["demo-cell-a-x1".into(), "demo-cell-b-y2".into()],
    };
    assert_eq!(
        fill(
            r#"sum(rate(errors{namespace="{{namespace}}",pod=~"{{pods}}",cell=~"{{cells}}"}[1m])) # {{name}} {{revision}} {{podRevisions}} g{{group}}"#,
            &facts
        ),
        r#"sum(rate(errors{namespace="shop",pod=~"demo-cell-a-x1|demo-cell-b-y2",cell=~"cell-a|cell-b"}[1m])) # demo demo-7b9c d70a|39e2 g1"#
    );
}

#[test]
fn answers_read_as_numbers_and_refusals_as_errors() {
    assert_eq!(parse_answer(&answer(&["0.5", "2"])), Ok(vec![0.5, 2.0]));
    assert!(parse_answer(&answer(&["NaN"])).expect("nan")[0].is_nan());
    let scalar = json!({"status": "success", "data": {"resultType": "scalar", "result": [1, "3"]}});
    assert_eq!(parse_answer(scalar.to_string().as_bytes()), Ok(vec![3.0]));
    let matrix = json!({"status": "success", "data": {"resultType": "matrix",
        "result": [{"metric": {}, "values": [[1, "1"], [2, "7"]]}]}});
    assert_eq!(parse_answer(matrix.to_string().as_bytes()), Ok(vec![7.0]));
    let refused = json!({"status": "error", "errorType": "bad_data", "error": "parse error"});
    let e = parse_answer(refused.to_string().as_bytes()).expect_err("refused");
    assert!(e.contains("bad_data") && e.contains("parse error"), "{e}");
    assert!(parse_answer(b"<html>proxy error</html>").is_err());
}

#[test]
fn an_empty_or_nan_result_counts_as_on_empty_never_a_pass_by_default() {
    let q = query(Some("result < 0.05"), None);
    let m = judge(&q, Ok(vec![]), &at(0));
    assert_eq!(m.phase, AnalysisPhase::Inconclusive);
    assert!(m.message.contains("no series"), "{}", m.message);
    let m = judge(&q, Ok(vec![0.01, f64::NAN]), &at(0));
    assert_eq!(m.phase, AnalysisPhase::Inconclusive);
    let fail_on_empty = AnalysisQuery {
        on_empty: EmptyResult::Failure,
        ..q.clone()
    };
    assert_eq!(
        judge(&fail_on_empty, Ok(vec![]), &at(0)).phase,
        AnalysisPhase::Failed
    );
}

#[test]
fn conditions_decide_per_series() {
    let both = query(Some("result < 0.05"), Some("result >= 0.2"));
    let phase = |values: Vec<f64>| judge(&both, Ok(values), &at(0)).phase;
    assert_eq!(phase(vec![0.01, 0.02]), AnalysisPhase::Successful);
    assert_eq!(
        phase(vec![0.01, 0.3]),
        AnalysisPhase::Failed,
        "any series fails"
    );
    assert_eq!(phase(vec![0.01, 0.1]), AnalysisPhase::Inconclusive);
    let only_success = query(Some("result < 0.05"), None);
    assert_eq!(
        judge(&only_success, Ok(vec![0.1]), &at(0)).phase,
        AnalysisPhase::Failed
    );
    let only_failure = query(None, Some("result > 1"));
    assert_eq!(
        judge(&only_failure, Ok(vec![0.5]), &at(0)).phase,
        AnalysisPhase::Successful
    );
    assert_eq!(
        judge(&only_failure, Ok(vec![2.0]), &at(0)).phase,
        AnalysisPhase::Failed
    );
}

#[test]
fn a_condition_that_is_not_boolean_or_not_cel_is_an_error_not_a_verdict() {
    let q = query(Some("result + 1.0"), None);
    let m = judge(&q, Ok(vec![0.5]), &at(0));
    assert_eq!(m.phase, AnalysisPhase::Error);
    assert!(m.message.contains("not true or false"), "{}", m.message);
    let broken = query(Some("result <"), None);
    let e = check_conditions(&broken).expect_err("does not compile");
    assert!(
        e.contains("error-rate") && e.contains("successCondition"),
        "{e}"
    );
    assert!(check_conditions(&query(Some("result < 0.05 && result >= 0"), None)).is_ok());
}

#[test]
fn a_measurement_stays_small_whatever_prometheus_returns() {
    let q = query(Some("result < 0.05"), None);
    let many: Vec<f64> = (0..1000).map(|_| 0.01).collect();
    let m = judge(&q, Ok(many), &at(0));
    assert_eq!(m.value, "[0.01, 0.01, 0.01, 0.01, 0.01, ... (1000 series)]");
    let m = judge(&q, Err("é".repeat(1000)), &at(0));
    assert!(m.message.len() <= 303, "{}", m.message.len());
}

#[test]
fn prometheus_down_is_an_error_measurement() {
    let m = judge(
        &query(Some("result < 1"), None),
        Err("connection refused".into()),
        &at(0),
    );
    assert_eq!(
        (m.phase, m.message.as_str()),
        (AnalysisPhase::Error, "connection refused")
    );
}

fn measure(
    spec: &Analysis,
    record: &AnalysisStatus,
    value: Result<f64, &str>,
    second: i64,
) -> AnalysisStatus {
    let q = &spec.queries[0];
    let m = judge(
        q,
        value.map(|v| vec![v]).map_err(str::to_string),
        &at(second),
    );
    super::record(spec, record, vec![m])
}

#[test]
fn a_single_bad_sample_under_the_failure_limit_does_not_fail_the_group() {
    let spec = spec(3, 1);
    let mut r = start(&spec, "demo-2", 1, &at(0));
    for (i, v) in [0.01, 0.9, 0.01].into_iter().enumerate() {
        assert_eq!(r.phase, AnalysisPhase::Running);
        r = measure(&spec, &r, Ok(v), 10 * i64::try_from(i).expect("small"));
    }
    assert_eq!(r.phase, AnalysisPhase::Successful, "{}", r.message);
    assert_eq!((r.queries[0].successful, r.queries[0].failed), (2, 1));
}

#[test]
fn failures_beyond_the_limit_fail_the_group_at_once_naming_the_rule() {
    let spec = spec(5, 1);
    let mut r = start(&spec, "demo-2", 1, &at(0));
    r = measure(&spec, &r, Ok(0.3), 5);
    assert_eq!(r.phase, AnalysisPhase::Running);
    r = measure(&spec, &r, Ok(0.4), 15);
    assert_eq!(r.phase, AnalysisPhase::Failed);
    assert!(
        r.message.contains("error-rate") && r.message.contains("0.4"),
        "{}",
        r.message
    );
    assert!(r.message.contains("result < 0.05"), "{}", r.message);
    // Concluded: nothing more is measured or counted.
    assert_eq!(due_in(&spec, &r, &at(100)), None);
    assert_eq!(measure(&spec, &r, Ok(0.01), 25), r);
}

#[test]
fn errors_back_off_and_only_errors_in_a_row_beyond_the_limit_conclude() {
    let spec = spec(3, 0);
    let mut r = start(&spec, "demo-2", 1, &at(0));
    assert_eq!(due_in(&spec, &r, &at(0)), Some(5), "initial delay");
    r = measure(&spec, &r, Err("connection refused"), 5);
    assert_eq!(due_in(&spec, &r, &at(5)), Some(10));
    r = measure(&spec, &r, Err("connection refused"), 15);
    assert_eq!(due_in(&spec, &r, &at(15)), Some(20), "doubled");
    // A good measurement resets the run of errors.
    r = measure(&spec, &r, Ok(0.01), 35);
    assert_eq!(
        (r.phase, r.queries[0].consecutive_errors),
        (AnalysisPhase::Running, 0)
    );
    assert_eq!(due_in(&spec, &r, &at(35)), Some(10));
    for s in [45, 55] {
        r = measure(&spec, &r, Err("timeout"), s);
        assert_eq!(r.phase, AnalysisPhase::Running);
    }
    r = measure(&spec, &r, Err("timeout"), 95);
    assert_eq!(r.phase, AnalysisPhase::Error, "3 in a row > errorLimit 2");
    assert!(r.message.contains("errorLimit 2"), "{}", r.message);
}

#[test]
fn inconclusive_beyond_its_limit_is_the_verdict() {
    let spec = spec(3, 0);
    let r = start(&spec, "demo-2", 1, &at(0));
    let m = judge(&spec.queries[0], Ok(vec![]), &at(5));
    let r = record(&spec, &r, vec![m]);
    assert_eq!(r.phase, AnalysisPhase::Inconclusive);
    assert!(r.message.contains("no series"), "{}", r.message);
}

fn outcome() -> impl Strategy<Value = Result<f64, &'static str>> {
    prop_oneof![
        (0.0f64..0.1).prop_map(Ok),
        Just(Ok(f64::NAN)),
        Just(Err("connection refused")),
    ]
}

proptest! {
    /// Whatever Prometheus answers: the tallies add up to the measurements
    /// made, status keeps at most MEASUREMENTS_KEPT, a verdict is final, and
    /// Successful never hides a failure beyond the limit.
    #[test]
    fn tallies_and_verdicts_stay_consistent(
        count in 1i32..5,
        failure_limit in 0i32..3,
        outcomes in prop::collection::vec(outcome(), 0..40),
    ) {
        let spec = spec(count, failure_limit);
        let mut r = start(&spec, "demo-2", 1, &at(0));
        let mut made = 0;
        for (i, o) in outcomes.into_iter().enumerate() {
            let before = r.clone();
            r = measure(&spec, &r, o, i64::try_from(i).expect("small"));
            if before.phase != AnalysisPhase::Running {
                prop_assert_eq!(&r, &before);
                continue;
            }
            made += 1;
            let t = &r.queries[0];
            prop_assert_eq!(t.successful + t.failed + t.inconclusive + t.errors, made);
            prop_assert!(r.measurements.len() <= MEASUREMENTS_KEPT);
            if r.phase == AnalysisPhase::Successful {
                prop_assert!(t.failed <= failure_limit);
                prop_assert!(t.successful + t.failed + t.inconclusive >= count);
            }
            if t.failed > failure_limit {
                prop_assert_eq!(r.phase, AnalysisPhase::Failed);
            }
        }
    }
}
