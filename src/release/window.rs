//! Deny windows, pure: whether a time lies in one, when it reopens and when
//! the next one begins. Nothing here reads the clock: callers pass `now`.
//!
//! A window begins at each time its cron `schedule` fires on the wall clock
//! of `timeZone` and lasts `duration`, whose days are calendar days in that
//! zone (over a clock change a day is 23 or 25 hours) and whose hours and
//! minutes are exact. So "0 16 * * FRI" for "2d16h" in Europe/Zurich reopens
//! at Monday 08:00 on the wall clock on every weekend, while "64h" would
//! reopen at 09:00 on the weekend the clocks go forward.
//!
//! A wall-clock time that does not exist or exists twice is read with jiff's
//! "compatible" disambiguation (RFC 5545's): a time in the spring-forward gap
//! moves forward by the gap (02:30 begins at 03:30), a time in the fall-back
//! hour is its earlier instant (the window does not begin twice).
//!
//! Cron: five fields, minute (0-59), hour (0-23), day-of-month (1-31), month
//! (1-12, JAN-DEC) and day-of-week (0-7, 0 and 7 are Sunday, SUN-SAT), each a
//! list of `*`, `a`, `a-b`, `*/n`, `a-b/n` or `a/n` (`a` to the end). As in
//! cron and Kubernetes CronJobs, when both day fields are restricted (neither
//! is `*`), a day matches if either does.
//!
//! The work is per civil day and per time the schedule names on it, never per
//! minute: `active` looks back a window's duration plus a day, and forward 32
//! days at most while windows chain; `next_begin` looks 32 days ahead.

use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Span, Timestamp};

use crate::api::DenyWindow;

/// The longest a window may last, in minutes (31 days of 24 hours).
const MAX_MINUTES: i64 = 31 * 24 * 60;
/// How far ahead windows are looked for (the controller wakes again then).
const LOOKAHEAD: SignedDuration = SignedDuration::from_hours(32 * 24);

/// A deny window holding a time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Active {
    /// The window holding the time that began first.
    pub name: String,
    /// When that window began.
    pub since: Timestamp,
    /// When releases may go on again: the end of the last window chained to
    /// it (one that begins before or as the hold ends extends it), as far as
    /// 32 days ahead (windows chaining on past that are seen then).
    pub reopens_at: Timestamp,
}

/// Whether the window is well-formed: a message saying what to change if not.
pub fn validate(w: &DenyWindow) -> Result<(), String> {
    Window::parse(w).map(|_| ())
}

/// The window holding `now` (one that began at or before `now` and has not
/// ended), if any. An invalid window is an error naming it.
pub fn active(windows: &[DenyWindow], now: Timestamp) -> Result<Option<Active>, String> {
    let windows = windows
        .iter()
        .map(|w| Window::parse(w).map_err(|e| format!("deny window \"{}\": {e}", w.name)))
        .collect::<Result<Vec<_>, _>>()?;
    let mut first: Option<(Timestamp, &str)> = None;
    let mut end: Option<Timestamp> = None;
    for w in &windows {
        let today = w.date_of(now);
        for back in (0..=w.days_back).rev() {
            let Some(date) = shifted(today, -back) else {
                continue;
            };
            for (begin, until) in w.occurrences(date) {
                if begin <= now && now < until {
                    if first.is_none_or(|(since, _)| begin < since) {
                        first = Some((begin, w.name));
                    }
                    end = end.max(Some(until));
                }
            }
        }
    }
    let (Some((since, name)), Some(end)) = (first, end) else {
        return Ok(None);
    };
    Ok(Some(Active {
        name: name.to_string(),
        since,
        reopens_at: chained(&windows, now, end),
    }))
}

/// The next time after `now`, 32 days ahead at most, that a window begins.
/// Invalid windows are skipped (`active` reports them).
pub fn next_begin(windows: &[DenyWindow], now: Timestamp) -> Option<Timestamp> {
    let horizon = now.checked_add(LOOKAHEAD).ok()?;
    windows
        .iter()
        .filter_map(|w| Window::parse(w).ok())
        .filter_map(|w| {
            std::iter::successors(Some(w.date_of(now)), |date| shifted(*date, 1))
                .take_while(|date| w.starts_by(*date, horizon))
                .find_map(|date| {
                    w.occurrences(date)
                        .map(|(begin, _)| begin)
                        .filter(|b| *b > now)
                        .min()
                })
        })
        .filter(|begin| *begin <= horizon)
        .min()
}

/// When a hold that lasts until `end` at `now` lets releases go on: occurrences
/// beginning after `now` extend it while they begin at or before its end (a
/// window beginning as another ends leaves no moment to release in). Days are
/// read in order per window; an occurrence not yet reached by the hold waits
/// in `pending`, since another window's may extend the hold up to it.
fn chained(windows: &[Window], now: Timestamp, mut end: Timestamp) -> Timestamp {
    let Ok(horizon) = now.checked_add(LOOKAHEAD) else {
        return end;
    };
    let mut next: Vec<Option<Date>> = windows.iter().map(|w| Some(w.date_of(now))).collect();
    let mut pending: Vec<(Timestamp, Timestamp)> = Vec::new();
    loop {
        for (w, day) in windows.iter().zip(&mut next) {
            while let Some(date) = *day
                && w.starts_by(date, end.min(horizon))
            {
                pending.extend(w.occurrences(date).filter(|(begin, _)| *begin > now));
                *day = shifted(date, 1);
            }
        }
        pending.sort();
        let before = end;
        pending.retain(|&(begin, until)| {
            let reached = begin <= end;
            if reached {
                end = end.max(until);
            }
            !reached
        });
        if end == before {
            return end;
        }
    }
}

fn shifted(date: Date, days: i64) -> Option<Date> {
    date.checked_add(Span::new().days(days)).ok()
}

/// A deny window, parsed.
struct Window<'a> {
    name: &'a str,
    schedule: Schedule,
    duration: Span,
    /// How many days before `now`'s date an occurrence holding `now` may
    /// have begun: the duration's whole days, one for the rest of it and one
    /// for a clock change.
    days_back: i64,
    tz: TimeZone,
}

impl<'a> Window<'a> {
    fn parse(w: &'a DenyWindow) -> Result<Self, String> {
        let schedule = Schedule::parse(&w.schedule)?;
        let (duration, minutes) = duration(&w.duration)?;
        let tz = TimeZone::get(&w.time_zone).map_err(|_| {
            format!(
                "timeZone \"{}\" is not a known IANA time zone: write one such as \
                 \"Europe/Zurich\", \"America/New_York\" or \"UTC\"",
                w.time_zone
            )
        })?;
        Ok(Self {
            name: &w.name,
            schedule,
            duration,
            days_back: minutes / (24 * 60) + 2,
            tz,
        })
    }

    /// `at`'s date on this window's wall clock.
    fn date_of(&self, at: Timestamp) -> Date {
        at.to_zoned(self.tz.clone()).date()
    }

    /// Whether `date` has begun by `at` (its first instant is not later).
    fn starts_by(&self, date: Date, at: Timestamp) -> bool {
        date.to_zoned(self.tz.clone())
            .is_ok_and(|start| start.timestamp() <= at)
    }

    /// The occurrences beginning on `date`'s wall clock: (begin, end).
    fn occurrences(&self, date: Date) -> impl Iterator<Item = (Timestamp, Timestamp)> + '_ {
        let s = &self.schedule;
        let hours = if s.fires_on(date) { s.hours } else { 0 };
        members(hours)
            .flat_map(move |hour| members(s.minutes).map(move |minute| date.at(hour, minute, 0, 0)))
            // Only times at the ends of jiff's range fail to convert.
            .filter_map(|at| {
                let begin = self.tz.to_zoned(at).ok()?;
                let end = begin.checked_add(self.duration).ok()?;
                Some((begin.timestamp(), end.timestamp()))
            })
    }
}

/// `duration` as a span (days on the calendar, hours and minutes exact) and
/// its length in minutes with days of 24 hours.
fn duration(text: &str) -> Result<(Span, i64), String> {
    let wrong = || {
        format!(
            "duration \"{text}\": write days, hours and minutes in that order, \
             e.g. \"64h\", \"2d16h\" or \"30m\""
        )
    };
    let too_long = || {
        format!(
            "duration \"{text}\" is longer than 31 days: write at most \"31d\" \
             (a ReleaseFreeze without windows holds until thawed)"
        )
    };
    // Days, hours, minutes; each unit at most once and in that order.
    let mut amounts = [0i64; 3];
    let mut first_unit = 0;
    let mut rest = text;
    if rest.is_empty() {
        return Err(wrong());
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(wrong)?;
        let unit = ["d", "h", "m"]
            .iter()
            .position(|u| rest[digits..].starts_with(u))
            .filter(|unit| digits > 0 && *unit >= first_unit)
            .ok_or_else(wrong)?;
        amounts[unit] = rest[..digits].parse().map_err(|_| too_long())?;
        first_unit = unit + 1;
        rest = &rest[digits + 1..];
    }
    let [days, hours, minutes] = amounts;
    let total = days
        .saturating_mul(24 * 60)
        .saturating_add(hours.saturating_mul(60))
        .saturating_add(minutes);
    if total == 0 {
        return Err(format!(
            "duration \"{text}\" is zero: a window lasts at least a minute (\"1m\")"
        ));
    }
    if total > MAX_MINUTES {
        return Err(too_long());
    }
    let span = Span::new().days(days).hours(hours).minutes(minutes);
    Ok((span, total))
}

/// A cron schedule: the values each field allows, as bit sets.
#[derive(Debug, PartialEq)]
struct Schedule {
    minutes: u64,
    hours: u64,
    days: u64,
    months: u64,
    /// Sunday is 0 (a 7 is read as 0).
    weekdays: u64,
    /// Day-of-month and day-of-week are not `*`: either may match a day.
    either_day: bool,
}

/// A cron field: its name, its range and the names of `min`, `min + 1`, ...
type Field = (&'static str, u8, u8, &'static [&'static str]);

const MONTHS: &[&str] = &[
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const WEEKDAYS: &[&str] = &["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];
const FIELDS: [Field; 5] = [
    ("minute", 0, 59, &[]),
    ("hour", 0, 23, &[]),
    ("day-of-month", 1, 31, &[]),
    ("month", 1, 12, MONTHS),
    ("day-of-week", 0, 7, WEEKDAYS),
];

impl Schedule {
    fn parse(line: &str) -> Result<Self, String> {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [minute, hour, day, month, weekday] = fields[..] else {
            return Err(format!(
                "schedule \"{line}\" has {} fields: write five, minute hour day-of-month \
                 month day-of-week, e.g. \"0 16 * * FRI\"",
                fields.len()
            ));
        };
        let set =
            |text, field| values(text, field).map_err(|e| format!("schedule \"{line}\": {e}"));
        let mut weekdays = set(weekday, FIELDS[4])?;
        if weekdays & 1 << 7 != 0 {
            weekdays = (weekdays | 1) & !(1 << 7);
        }
        let schedule = Self {
            minutes: set(minute, FIELDS[0])?,
            hours: set(hour, FIELDS[1])?,
            days: set(day, FIELDS[2])?,
            months: set(month, FIELDS[3])?,
            weekdays,
            either_day: day != "*" && weekday != "*",
        };
        // A day of the month no month named has (February 30th) would never
        // begin the window, silently.
        let longest = |month: i8| Date::new(2024, month, 1).map_or(31, |d| d.days_in_month());
        let reachable =
            members(schedule.months).any(|m| schedule.days & ((2 << longest(m)) - 1) > 0);
        if weekday == "*" && !reachable {
            return Err(format!(
                "schedule \"{line}\": no month named has day-of-month {day}, so the window \
                 would never begin: change the day or the month"
            ));
        }
        Ok(schedule)
    }

    fn fires_on(&self, date: Date) -> bool {
        let day = self.days & 1 << date.day() != 0;
        let weekday = self.weekdays & 1 << date.weekday().to_sunday_zero_offset() != 0;
        let days = if self.either_day {
            day || weekday
        } else {
            day && weekday
        };
        self.months & 1 << date.month() != 0 && days
    }
}

/// The values one field allows, as a bit set.
fn values(text: &str, field: Field) -> Result<u64, String> {
    let (name, min, max, names) = field;
    let mut set = 0u64;
    for item in text.split(',') {
        if item.is_empty() {
            return Err(format!(
                "{name} \"{text}\" has an empty list item: remove the extra comma"
            ));
        }
        let (range, step) = match item.split_once('/') {
            None => (item, None),
            Some((range, step)) => match step.parse::<u8>() {
                Ok(n) if n > 0 && step.bytes().all(|b| b.is_ascii_digit()) => (range, Some(n)),
                _ => {
                    return Err(format!(
                        "{name} step \"/{step}\" in \"{item}\" must be a number from 1, \
                         e.g. \"*/15\""
                    ));
                }
            },
        };
        let (low, high) = if range == "*" {
            (min, max)
        } else if let Some((low, high)) = range.split_once('-') {
            (value(low, field)?, value(high, field)?)
        } else {
            // "a/n" steps from `a` to the end, as Kubernetes CronJobs read it.
            let low = value(range, field)?;
            (low, if step.is_some() { max } else { low })
        };
        if low > high {
            // Split at the end of the cycle: "FRI-MON" is "FRI-SAT,SUN-MON"
            // (and "7-2" is "0-2": 7 is the Sunday 0 is).
            let last = names.len().checked_sub(1).map_or(max, |n| min + n as u8);
            let named = range.bytes().any(|b| b.is_ascii_alphabetic());
            let show = |v: u8| match names.get(usize::from(v - min)) {
                Some(name) if named => name.to_string(),
                _ => v.to_string(),
            };
            let tail = format!("{}-{}", show(min), show(high));
            let split = if low > last {
                tail
            } else {
                format!("{}-{},{tail}", show(low), show(last))
            };
            return Err(format!(
                "{name} range \"{range}\" runs backwards: write it from low to high, \
                 e.g. \"{split}\""
            ));
        }
        for v in (low..=high).step_by(usize::from(step.unwrap_or(1))) {
            set |= 1 << v;
        }
    }
    Ok(set)
}

/// One value of a field: a number or a name, case-insensitive.
fn value(text: &str, (name, min, max, names): Field) -> Result<u8, String> {
    if let Some(i) = names.iter().position(|n| n.eq_ignore_ascii_case(text)) {
        return Ok(min + i as u8);
    }
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        let named = match (names.first(), names.last()) {
            (Some(first), Some(last)) => format!(" or a name {first}-{last}"),
            _ => String::new(),
        };
        return Err(format!(
            "{name} \"{text}\" is not a number {min}-{max}{named}"
        ));
    }
    match text.parse::<u8>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(format!("{name} {text} is out of range {min}-{max}")),
    }
}

/// The members of a bit set, lowest first.
fn members(set: u64) -> impl Iterator<Item = i8> {
    (0..64i8).filter(move |bit| set & 1 << bit != 0)
}

#[cfg(test)]
mod tests;
