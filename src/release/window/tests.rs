use jiff::civil::date;
use proptest::prelude::*;

use super::*;

fn window(name: &str, schedule: &str, duration: &str, time_zone: &str) -> DenyWindow {
    let [name, schedule, duration, time_zone] =
        [name, schedule, duration, time_zone].map(str::to_string);
    DenyWindow {
        name,
        schedule,
        duration,
        time_zone,
    }
}

fn zurich(y: i16, mo: i8, d: i8, h: i8, mi: i8) -> Timestamp {
    let at = date(y, mo, d).at(h, mi, 0, 0).in_tz("Europe/Zurich");
    at.expect("Zurich").timestamp()
}

fn utc(text: &str) -> Timestamp {
    text.parse().expect("an RFC 3339 time")
}

fn held(windows: &[DenyWindow], now: Timestamp) -> Option<Active> {
    active(windows, now).expect("valid windows")
}

fn hold(name: &str, since: Timestamp, reopens_at: Timestamp) -> Option<Active> {
    let name = name.to_string();
    Some(Active {
        name,
        since,
        reopens_at,
    })
}

#[test]
fn the_zurich_weekend_holds_from_friday_1600_to_monday_0800_on_the_wall_clock() {
    let weekend = [window("weekend", "0 16 * * FRI", "2d16h", "Europe/Zurich")];
    // A plain weekend, then the clocks going forward (Sunday 2026-03-29)
    // and back (Sunday 2026-10-25): 64, 63 and 65 hours.
    for (month, friday, hours) in [(3, 13, 64), (3, 27, 63), (10, 23, 65)] {
        let at = |days: i8, h, m| zurich(2026, month, friday + days, h, m);
        assert_eq!(held(&weekend, at(0, 15, 59)), None, "{month}-{friday}");
        let weekend_hold = hold("weekend", at(0, 16, 0), at(3, 8, 0));
        for now in [at(0, 16, 0), at(2, 2, 30), at(2, 12, 0), at(3, 7, 59)] {
            assert_eq!(held(&weekend, now), weekend_hold, "{now}");
        }
        let length = at(3, 8, 0).duration_since(at(0, 16, 0));
        assert_eq!(
            length,
            SignedDuration::from_hours(hours),
            "{month}-{friday}"
        );
        assert_eq!(held(&weekend, at(3, 8, 0)), None, "{month}-{friday}");
    }
}

#[test]
fn a_year_end_freeze_holds_across_the_new_year() {
    let freeze = [window("year-end", "0 0 20 12 *", "14d", "Europe/Zurich")];
    let (begins, ends) = (zurich(2026, 12, 20, 0, 0), zurich(2027, 1, 3, 0, 0));
    assert_eq!(held(&freeze, zurich(2026, 12, 19, 23, 59)), None);
    assert_eq!(held(&freeze, begins), hold("year-end", begins, ends));
    assert_eq!(
        held(&freeze, zurich(2027, 1, 1, 0, 0)),
        hold("year-end", begins, ends)
    );
    assert_eq!(held(&freeze, ends), None);
}

#[test]
fn a_window_set_in_the_spring_forward_gap_begins_after_it() {
    // 2026-03-29 02:00 CET is 03:00 CEST in Zurich: 02:30 does not happen,
    // and the window begins at 03:30 CEST (01:30Z).
    let gap = [window("gap", "30 2 29 3 *", "1h", "Europe/Zurich")];
    let begin = utc("2026-03-29T01:30:00Z");
    assert_eq!(next_begin(&gap, utc("2026-03-28T00:00:00Z")), Some(begin));
    assert_eq!(held(&gap, utc("2026-03-29T01:29:59Z")), None);
    assert_eq!(
        held(&gap, begin),
        hold("gap", begin, utc("2026-03-29T02:30:00Z"))
    );
}

#[test]
fn a_window_set_in_the_repeated_fall_back_hour_begins_once_at_the_first() {
    // 2026-10-25 03:00 CEST is 02:00 CET: 02:30 happens at 00:30Z and 01:30Z.
    let fold = [window("fold", "30 2 25 10 *", "1h", "Europe/Zurich")];
    let (begin, end) = (utc("2026-10-25T00:30:00Z"), utc("2026-10-25T01:30:00Z"));
    assert_eq!(next_begin(&fold, utc("2026-10-24T00:00:00Z")), Some(begin));
    assert_eq!(
        held(&fold, utc("2026-10-25T01:29:59Z")),
        hold("fold", begin, end)
    );
    assert_eq!(held(&fold, end), None);
    assert_eq!(next_begin(&fold, begin), None);
}

#[test]
fn with_both_day_fields_restricted_a_day_matches_if_either_does() {
    let holds = |schedule, day| {
        let w = [window("w", schedule, "1h", "UTC")];
        held(&w, utc(&format!("2026-01-{day}T00:30:00Z"))).is_some()
    };
    // Tuesday the 13th, Wednesday the 14th, Friday the 16th of January 2026.
    let days = |schedule| [13, 14, 16].map(|day| holds(schedule, day));
    assert_eq!(days("0 0 13 * FRI"), [true, false, true]);
    assert_eq!(days("0 0 13 * *"), [true, false, false]);
    assert_eq!(days("0 0 * * 5"), [false, false, true]);
}

fn bits(values: &[u8]) -> u64 {
    values.iter().fold(0, |set, v| set | 1 << v)
}

#[test]
fn ranges_steps_names_and_lists_parse() {
    assert_eq!(
        Schedule::parse("*/15  9-17/2 1,15\tjan-MAR,Dec mon-fri"),
        Ok(Schedule {
            minutes: bits(&[0, 15, 30, 45]),
            hours: bits(&[9, 11, 13, 15, 17]),
            days: bits(&[1, 15]),
            months: bits(&[1, 2, 3, 12]),
            weekdays: bits(&[1, 2, 3, 4, 5]),
            either_day: true,
        })
    );
    let fields = |line| Schedule::parse(line).map(|s| (s.minutes, s.weekdays, s.either_day));
    assert_eq!(
        fields("5/20 0 * * 5-7"),
        Ok((bits(&[5, 25, 45]), bits(&[0, 5, 6]), false))
    );
    assert_eq!(fields("0 0 * * SUN,7"), Ok((bits(&[0]), bits(&[0]), false)));
}

#[test]
fn bad_schedules_name_the_field_and_the_fix() {
    for (schedule, message) in [
        ("0 25 * * *", "hour 25 is out of range 0-23"),
        ("0 0 0 * *", "day-of-month 0 is out of range 1-31"),
        ("0 0 * 13 *", "month 13 is out of range 1-12"),
        (
            "0 16 * * FRY",
            "day-of-week \"FRY\" is not a number 0-7 or a name SUN-SAT",
        ),
        ("x 16 * * *", "minute \"x\" is not a number 0-59"),
        (
            "*/0 * * * *",
            "minute step \"/0\" in \"*/0\" must be a number from 1, e.g. \"*/15\"",
        ),
        (
            "0 0 1,,15 * *",
            "day-of-month \"1,,15\" has an empty list item: remove the extra comma",
        ),
        (
            "0 16 * * FRI-MON",
            "day-of-week range \"FRI-MON\" runs backwards: write it from low to high, \
                 e.g. \"FRI-SAT,SUN-MON\"",
        ),
        (
            "0 22-2 * * *",
            "hour range \"22-2\" runs backwards: write it from low to high, e.g. \
                 \"22-23,0-2\"",
        ),
        (
            "0 0 * * 7-2",
            "day-of-week range \"7-2\" runs backwards: write it from low to high, e.g. \"0-2\"",
        ),
        (
            "0 0 30 2 *",
            "no month named has day-of-month 30, so the window would never begin: change \
                 the day or the month",
        ),
    ] {
        let message = format!("schedule \"{schedule}\": {message}");
        assert_eq!(validate(&window("w", schedule, "1h", "UTC")), Err(message));
    }
    let message = "schedule \"0 16 * *\" has 4 fields: write five, minute hour day-of-month \
                       month day-of-week, e.g. \"0 16 * * FRI\"";
    let w = window("w", "0 16 * *", "1h", "UTC");
    assert_eq!(validate(&w), Err(message.to_string()));
}

#[test]
fn durations_are_days_hours_and_minutes_up_to_31_days_in_a_known_time_zone() {
    let checked = |duration| validate(&window("w", "0 0 * * *", duration, "Europe/Zurich"));
    for duration in ["64h", "2d16h", "30m", "14d", "31d", "744h", "0d0h1m"] {
        assert_eq!(checked(duration), Ok(()), "{duration}");
    }
    for duration in ["", "2w", "16h2d", "1h1h", "h", "16", "2d 16h", "-1h"] {
        let message = format!(
            "duration \"{duration}\": write days, hours and minutes in that order, e.g. \
                 \"64h\", \"2d16h\" or \"30m\""
        );
        assert_eq!(checked(duration), Err(message));
    }
    for duration in ["32d", "31d1m", "99999999999999999999h"] {
        let message = format!(
            "duration \"{duration}\" is longer than 31 days: write at most \"31d\" (a \
                 ReleaseFreeze without windows holds until thawed)"
        );
        assert_eq!(checked(duration), Err(message));
    }
    let zero = "duration \"0m\" is zero: a window lasts at least a minute (\"1m\")";
    assert_eq!(checked("0m"), Err(zero.to_string()));
    let misspelt = window("weekend", "0 16 * * FRI", "2d16h", "Europe/Zurch");
    let message = "timeZone \"Europe/Zurch\" is not a known IANA time zone: write one such \
                       as \"Europe/Zurich\", \"America/New_York\" or \"UTC\"";
    assert_eq!(validate(&misspelt), Err(message.to_string()));
    // `active` names the window.
    let windows = [window("ok", "0 0 * * *", "1h", "UTC"), misspelt];
    let named = format!("deny window \"weekend\": {message}");
    assert_eq!(active(&windows, utc("2026-01-01T00:00:00Z")), Err(named));
}

#[test]
fn overlapping_and_touching_windows_chain_until_the_last_one_ends() {
    let weekend = window("weekend", "0 16 * * FRI", "2d16h", "Europe/Zurich");
    // Begins as the weekend ends: no moment to release in between.
    let monday = window("monday", "0 8 * * MON", "2h", "Europe/Zurich");
    // 16:30 in Shanghai is 09:30 in Zurich in January.
    let shanghai = window("shanghai", "30 16 * * MON", "4h", "Asia/Shanghai");
    // Begins after the others end: not chained.
    let afternoon = window("afternoon", "0 14 * * MON", "1h", "Europe/Zurich");
    let (saturday, monday_0945) = (zurich(2026, 1, 10, 12, 0), zurich(2026, 1, 12, 9, 45));
    let reopens = zurich(2026, 1, 12, 13, 30);
    for windows in [
        [
            weekend.clone(),
            monday.clone(),
            shanghai.clone(),
            afternoon.clone(),
        ],
        [afternoon, shanghai.clone(), weekend.clone(), monday],
    ] {
        let since = zurich(2026, 1, 9, 16, 0);
        assert_eq!(held(&windows, saturday), hold("weekend", since, reopens));
        let since = zurich(2026, 1, 12, 8, 0);
        assert_eq!(held(&windows, monday_0945), hold("monday", since, reopens));
        assert_eq!(held(&windows, reopens), None);
    }
    let apart = held(&[weekend, shanghai], saturday).map(|hold| hold.reopens_at);
    assert_eq!(apart, Some(zurich(2026, 1, 12, 8, 0)));
}

#[test]
fn the_next_window_to_begin_is_looked_for_32_days_ahead() {
    let weekend = window("weekend", "0 16 * * FRI", "2d16h", "Europe/Zurich");
    let freeze = window("year-end", "0 0 20 12 *", "14d", "Europe/Zurich");
    let broken = window("broken", "0 25 * * *", "1h", "UTC");
    let windows = [freeze.clone(), broken.clone(), weekend.clone()];
    let (wednesday, friday) = (zurich(2026, 12, 16, 12, 0), zurich(2026, 12, 18, 16, 0));
    assert_eq!(next_begin(&windows, wednesday), Some(friday));
    assert_eq!(
        next_begin(&[weekend], friday),
        Some(zurich(2026, 12, 25, 16, 0))
    );
    let freeze = [freeze];
    let begins = zurich(2026, 12, 20, 0, 0);
    assert_eq!(
        next_begin(&freeze, zurich(2026, 11, 18, 0, 0)),
        Some(begins)
    );
    assert_eq!(next_begin(&freeze, zurich(2026, 11, 17, 23, 59)), None);
    assert_eq!(next_begin(&[broken], wednesday), None);
}

fn list(values: std::ops::Range<u8>, size: std::ops::Range<usize>) -> BoxedStrategy<String> {
    let values = proptest::sample::subsequence(values.collect::<Vec<_>>(), size);
    let joined = values.prop_map(|v| v.iter().map(u8::to_string).collect::<Vec<_>>().join(","));
    joined.boxed()
}

/// Windows named w0, w1, ... lasting 1 minute to `longest` minutes.
fn windows(longest: i64) -> impl Strategy<Value = Vec<DenyWindow>> {
    let zones = ["Europe/Zurich", "America/New_York", "Asia/Shanghai", "UTC"];
    let any_or = |list: BoxedStrategy<String>| prop_oneof![Just("*".to_string()), list];
    let one = (
        (list(0..60, 1..4), list(0..24, 1..4)),
        (any_or(list(1..32, 1..4)), any_or(list(0..8, 1..3))),
        // Mostly shorter than a day or two, so that holds end within the lookahead.
        prop_oneof![
            1..=longest.min(12 * 60),
            1..=longest.min(3 * 24 * 60),
            1..=longest
        ],
        (any::<bool>(), proptest::sample::select(zones.to_vec())),
    )
        .prop_map(
            |((minutes, hours), (days, weekdays), length, (in_days, zone))| {
                let duration = if in_days {
                    format!("{}d{}h{}m", length / 1440, length / 60 % 24, length % 60)
                } else {
                    format!("{length}m")
                };
                window(
                    "",
                    &format!("{minutes} {hours} {days} * {weekdays}"),
                    &duration,
                    zone,
                )
            },
        );
    proptest::collection::vec(one, 1..4).prop_map(|windows| {
        let named = windows.into_iter().enumerate();
        named
            .map(|(i, w)| DenyWindow {
                name: format!("w{i}"),
                ..w
            })
            .collect()
    })
}

/// A time in 2026-2027, half of them within three days of a clock change
/// in Zurich or New York.
fn now() -> impl Strategy<Value = Timestamp> {
    let changes = [
        "2026-03-08T07",
        "2026-03-29T01",
        "2026-10-25T01",
        "2026-11-01T06",
    ]
    .into_iter()
    .chain([
        "2027-03-14T07",
        "2027-03-28T01",
        "2027-10-31T01",
        "2027-11-07T06",
    ])
    .map(|change| utc(&format!("{change}:00:00Z")).as_second())
    .collect::<Vec<_>>();
    let (start, end) = (utc("2026-01-01T00:00:00Z"), utc("2028-01-01T00:00:00Z"));
    let near = (proptest::sample::select(changes), -3 * 86400..3 * 86400i64);
    prop_oneof![
        start.as_second()..end.as_second(),
        near.prop_map(|(at, off)| at + off)
    ]
    .prop_map(|second| Timestamp::from_second(second).expect("a time"))
}

/// Every occurrence holding `now` (begin, end, window), found by reading
/// each wall-clock minute from the duration and a clock change before
/// `now` to a clock change after it.
fn scanned(windows: &[DenyWindow], now: Timestamp) -> Vec<(Timestamp, Timestamp, usize)> {
    let mut found = Vec::new();
    for (i, w) in windows.iter().enumerate() {
        let parsed = Window::parse(w).expect("a valid window");
        let (_, minutes) = duration(&w.duration).expect("a valid duration");
        let wall = now.to_zoned(parsed.tz.clone()).datetime();
        let wall = wall.date().at(wall.hour(), wall.minute(), 0, 0);
        for back in -120..=minutes + 120 {
            let at = wall.checked_sub(Span::new().minutes(back)).expect("a time");
            let s = &parsed.schedule;
            let fires = s.fires_on(at.date())
                && s.hours & 1 << at.hour() != 0
                && s.minutes & 1 << at.minute() != 0;
            let Some(begin) = fires.then(|| parsed.tz.to_zoned(at).expect("a time")) else {
                continue;
            };
            let end = begin
                .checked_add(parsed.duration)
                .expect("a time")
                .timestamp();
            if begin.timestamp() <= now && now < end {
                found.push((begin.timestamp(), end, i));
            }
        }
    }
    found
}

proptest! {
    #[test]
    fn a_hold_holds_now_and_nothing_holds_where_it_reopens(
        windows in windows(MAX_MINUTES),
        now in now(),
    ) {
        match held(&windows, now) {
            Some(hold) => {
                prop_assert!(hold.since <= now && now < hold.reopens_at, "{:?}", hold);
                // Unless the windows chain on past the lookahead.
                if hold.reopens_at <= now.checked_add(LOOKAHEAD).expect("a time") {
                    prop_assert_eq!(held(&windows, hold.reopens_at), None);
                }
            }
            // Nothing begins before the next begin, so a hold begins then.
            None => if let Some(begin) = next_begin(&windows, now) {
                prop_assert!(begin > now);
                prop_assert_eq!(held(&windows, begin).map(|hold| hold.since), Some(begin));
            }
        }
    }

    #[test]
    fn a_hold_is_what_a_minute_by_minute_scan_finds(
        windows in windows(12 * 60),
        now in now(),
    ) {
        let found = scanned(&windows, now);
        let first = found.iter().min_by_key(|(begin, _, i)| (*begin, *i));
        match (held(&windows, now), first) {
            (None, None) => {}
            (Some(hold), Some(&(since, _, i))) => {
                prop_assert_eq!(hold.since, since);
                prop_assert_eq!(&hold.name, &windows[i].name);
                prop_assert!(found.iter().all(|(_, end, _)| *end <= hold.reopens_at));
            }
            (hold, _) => {
                let message = format!("held {hold:?}, the scan found {found:?}");
                return Err(TestCaseError::fail(message));
            }
        }
    }
}
