//! CronJob schedules and the CronJob controller's timing decisions.
//!
//! The parser is robfig/cron v3's `ParseStandard`, which Kubernetes 1.34 uses: five fields
//! (minute hour day-of-month month day-of-week) with `*`, `?`, lists, ranges, steps, month and
//! weekday names (Sunday is 0 only: `7` is out of range), the descriptors `@yearly`,
//! `@annually`, `@monthly`, `@weekly`, `@daily`, `@midnight`, `@hourly` and `@every <duration>`,
//! and a `TZ=`/`CRON_TZ=` prefix. A day restricted in both day fields matches either one. Errors
//! carry robfig's messages, which API validation reports verbatim. [`Schedule::next_after`]
//! reproduces robfig's `Next`, including Go's `time.Date` normalisation, so DST gaps and
//! overlaps behave as in Kubernetes: a time inside a spring-forward gap is skipped that day, and
//! one inside a fall-back overlap runs twice.
//!
//! The rest is `pkg/controller/cronjob/utils.go`: missed-schedule accounting, requeue delays, job
//! naming, the scheduled-timestamp annotation, finished jobs and history cleanup. Time is always
//! passed in; `now`'s time zone stands for the controller's local zone, in which schedules without
//! `spec.timeZone` run.

use std::collections::BTreeMap;

use jiff::civil::{Date, DateTime};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp, ToSpan, Zoned};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

/// Annotation on each Job: its scheduled time, RFC 3339, in the CronJob's time zone.
pub const CRON_JOB_SCHEDULED_TIMESTAMP_ANNOTATION: &str =
    "batch.kubernetes.io/cronjob-scheduled-timestamp";
/// Message of the Warning event `TooManyMissedTimes`.
pub const TOO_MANY_MISSED_TIMES_MESSAGE: &str =
    "too many missed start times. Set or decrease .spec.startingDeadlineSeconds or check clock skew";
/// More missed start times than this is reported as too many.
pub const MAX_MISSED_SCHEDULES: i64 = 100;
/// Slack added to every requeue, so clock skew never wakes the controller just before a slot.
pub const NEXT_SCHEDULE_DELTA: SignedDuration = SignedDuration::from_millis(100);

/// Seconds from the Unix epoch back to Go's zero time (January 1, year 1, UTC), which Kubernetes
/// uses for a missing timestamp and robfig returns for "never".
const GO_ZERO_TIME_SECONDS: i64 = -62_135_596_800;
const STAR_BIT: u64 = 1 << 63;
const NANOS_PER_SECOND: i128 = 1_000_000_000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CronError {
    #[error("empty spec string")]
    Empty,
    #[error("provided bad location {name}: {reason}")]
    BadLocation { name: String, reason: String },
    #[error("expected exactly 5 fields, found {found}: [{fields}]")]
    FieldCount { found: usize, fields: String },
    #[error("too many hyphens: {0}")]
    TooManyHyphens(String),
    #[error("too many slashes: {0}")]
    TooManySlashes(String),
    #[error("failed to parse int from {expr}: strconv.Atoi: parsing {expr:?}: {reason}")]
    NotAnInt { expr: String, reason: &'static str },
    #[error("negative number ({number}) not allowed: {expr}")]
    Negative { number: i64, expr: String },
    #[error("beginning of range ({start}) below minimum ({min}): {expr}")]
    BelowMinimum { start: u64, min: u64, expr: String },
    #[error("end of range ({end}) above maximum ({max}): {expr}")]
    AboveMaximum { end: u64, max: u64, expr: String },
    #[error("beginning of range ({start}) beyond end of range ({end}): {expr}")]
    StartBeyondEnd { start: u64, end: u64, expr: String },
    #[error("step of range should be a positive number: {0}")]
    ZeroStep(String),
    #[error("unrecognized descriptor: {0}")]
    UnknownDescriptor(String),
    #[error("failed to parse duration {descriptor}: {reason}")]
    BadDuration { descriptor: String, reason: String },
    /// Go's `time.LoadLocation` error for a name it cannot find.
    #[error("unknown time zone {0}")]
    UnknownTimeZone(String),
    #[error("time: invalid location name")]
    InvalidLocationName,
    /// The schedule never fires (such as February 30th).
    #[error("time difference between two schedules is less than 1 second")]
    SchedulesTooClose,
}

/// A parsed schedule. Without a time zone (no `TZ=` prefix or `spec.timeZone`) it runs in the
/// zone of the time it is asked about.
#[derive(Debug, Clone)]
pub struct Schedule {
    kind: Kind,
    location: Option<TimeZone>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Spec(Fields),
    Every(SignedDuration),
}

/// One bit per allowed value, plus [`STAR_BIT`] when the field was `*` or `?`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fields {
    second: u64,
    minute: u64,
    hour: u64,
    dom: u64,
    month: u64,
    dow: u64,
}

struct Bounds {
    min: u64,
    max: u64,
    names: &'static [(&'static str, u64)],
}

const MINUTES: Bounds = Bounds {
    min: 0,
    max: 59,
    names: &[],
};
const HOURS: Bounds = Bounds {
    min: 0,
    max: 23,
    names: &[],
};
const DOM: Bounds = Bounds {
    min: 1,
    max: 31,
    names: &[],
};
const MONTHS: Bounds = Bounds {
    min: 1,
    max: 12,
    names: &[
        ("jan", 1),
        ("feb", 2),
        ("mar", 3),
        ("apr", 4),
        ("may", 5),
        ("jun", 6),
        ("jul", 7),
        ("aug", 8),
        ("sep", 9),
        ("oct", 10),
        ("nov", 11),
        ("dec", 12),
    ],
};
const DOW: Bounds = Bounds {
    min: 0,
    max: 6,
    names: &[
        ("sun", 0),
        ("mon", 1),
        ("tue", 2),
        ("wed", 3),
        ("thu", 4),
        ("fri", 5),
        ("sat", 6),
    ],
};

/// Parses a schedule the way Kubernetes does (`cron.ParseStandard`).
pub fn parse_standard(spec: &str) -> Result<Schedule, CronError> {
    if spec.is_empty() {
        return Err(CronError::Empty);
    }
    let mut spec = spec;
    let mut location = None;
    if spec.starts_with("TZ=") || spec.starts_with("CRON_TZ=") {
        let eq = spec.find('=').unwrap_or(0);
        // robfig slices up to the first space and panics without one; refuse instead.
        let Some(space) = spec.find(' ') else {
            return Err(CronError::BadLocation {
                name: spec[eq + 1..].to_string(),
                reason: "no schedule follows the time zone".to_string(),
            });
        };
        let name = &spec[eq + 1..space];
        location = load_location(name).map_err(|e| CronError::BadLocation {
            name: name.to_string(),
            reason: e.to_string(),
        })?;
        spec = spec[space..].trim();
    }
    if spec.starts_with('@') {
        return parse_descriptor(spec, location);
    }
    let fields: Vec<&str> = spec.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(CronError::FieldCount {
            found: fields.len(),
            fields: fields.join(" "),
        });
    }
    let fields = Fields {
        second: 1,
        minute: get_field(fields[0], &MINUTES)?,
        hour: get_field(fields[1], &HOURS)?,
        dom: get_field(fields[2], &DOM)?,
        month: get_field(fields[3], &MONTHS)?,
        dow: get_field(fields[4], &DOW)?,
    };
    Ok(Schedule {
        kind: Kind::Spec(fields),
        location,
    })
}

/// Go's `time.LoadLocation`: `""` and `"UTC"` are UTC, `"Local"` is `None` (the zone of the time
/// at hand), anything else an IANA name, matched case-sensitively as Go's file lookup does.
pub fn load_location(name: &str) -> Result<Option<TimeZone>, CronError> {
    match name {
        "" | "UTC" => return Ok(Some(TimeZone::UTC)),
        "Local" => return Ok(None),
        _ => {}
    }
    if name.contains("..") || name.starts_with('/') || name.starts_with('\\') {
        return Err(CronError::InvalidLocationName);
    }
    let tz = TimeZone::get(name).map_err(|_| CronError::UnknownTimeZone(name.to_string()))?;
    // jiff finds names case-insensitively; Go reads a file and does not.
    if tz
        .iana_name()
        .is_some_and(|found| found != name && found.eq_ignore_ascii_case(name))
    {
        return Err(CronError::UnknownTimeZone(name.to_string()));
    }
    Ok(Some(tz))
}

fn parse_descriptor(descriptor: &str, location: Option<TimeZone>) -> Result<Schedule, CronError> {
    let all = |b: &Bounds| bits(b.min, b.max, 1) | STAR_BIT;
    let fields = |minute, hour, dom, month, dow| Fields {
        second: 1,
        minute,
        hour,
        dom,
        month,
        dow,
    };
    let spec = match descriptor {
        "@yearly" | "@annually" => fields(1, 1, 1 << 1, 1 << 1, all(&DOW)),
        "@monthly" => fields(1, 1, 1 << 1, all(&MONTHS), all(&DOW)),
        "@weekly" => fields(1, 1, all(&DOM), all(&MONTHS), 1),
        "@daily" | "@midnight" => fields(1, 1, all(&DOM), all(&MONTHS), all(&DOW)),
        "@hourly" => fields(1, all(&HOURS), all(&DOM), all(&MONTHS), all(&DOW)),
        _ => {
            let Some(duration) = descriptor.strip_prefix("@every ") else {
                return Err(CronError::UnknownDescriptor(descriptor.to_string()));
            };
            let nanos = parse_go_duration(duration).map_err(|reason| CronError::BadDuration {
                descriptor: descriptor.to_string(),
                reason,
            })?;
            // robfig runs @every at whole seconds, at least one apart.
            let nanos = nanos.max(1_000_000_000);
            let delay = SignedDuration::from_secs(nanos / 1_000_000_000);
            return Ok(Schedule {
                kind: Kind::Every(delay),
                location,
            });
        }
    };
    Ok(Schedule {
        kind: Kind::Spec(spec),
        location,
    })
}

fn get_field(field: &str, bounds: &Bounds) -> Result<u64, CronError> {
    field
        .split(',')
        .filter(|e| !e.is_empty())
        .try_fold(0, |acc, expr| Ok(acc | get_range(expr, bounds)?))
}

/// `number | number "-" number [ "/" number ]`, or `*`/`?` with an optional step.
fn get_range(expr: &str, bounds: &Bounds) -> Result<u64, CronError> {
    let range_and_step: Vec<&str> = expr.split('/').collect();
    let low_and_high: Vec<&str> = range_and_step[0].split('-').collect();
    let single = low_and_high.len() == 1;

    let (start, mut end, mut extra) = if low_and_high[0] == "*" || low_and_high[0] == "?" {
        (bounds.min, bounds.max, STAR_BIT)
    } else {
        let start = parse_int_or_name(low_and_high[0], bounds)?;
        let end = match low_and_high.len() {
            1 => start,
            2 => parse_int_or_name(low_and_high[1], bounds)?,
            _ => return Err(CronError::TooManyHyphens(expr.to_string())),
        };
        (start, end, 0)
    };
    let step = match range_and_step.len() {
        1 => 1,
        2 => {
            let step = must_parse_int(range_and_step[1])?;
            // "N/step" means "N-max/step".
            if single {
                end = bounds.max;
            }
            if step > 1 {
                extra = 0;
            }
            step
        }
        _ => return Err(CronError::TooManySlashes(expr.to_string())),
    };

    let expr = expr.to_string();
    if start < bounds.min {
        return Err(CronError::BelowMinimum {
            start,
            min: bounds.min,
            expr,
        });
    }
    if end > bounds.max {
        return Err(CronError::AboveMaximum {
            end,
            max: bounds.max,
            expr,
        });
    }
    if start > end {
        return Err(CronError::StartBeyondEnd { start, end, expr });
    }
    if step == 0 {
        return Err(CronError::ZeroStep(expr));
    }
    Ok(bits(start, end, step) | extra)
}

fn parse_int_or_name(expr: &str, bounds: &Bounds) -> Result<u64, CronError> {
    let lower = expr.to_lowercase();
    match bounds.names.iter().find(|(name, _)| *name == lower) {
        Some((_, value)) => Ok(*value),
        None => must_parse_int(expr),
    }
}

/// Go's `strconv.Atoi` (an optional sign, decimal digits, 64 bits), refusing negatives.
fn must_parse_int(expr: &str) -> Result<u64, CronError> {
    let number: i64 = expr
        .parse()
        .map_err(|e: std::num::ParseIntError| CronError::NotAnInt {
            expr: expr.to_string(),
            reason: match e.kind() {
                std::num::IntErrorKind::PosOverflow | std::num::IntErrorKind::NegOverflow => {
                    "value out of range"
                }
                _ => "invalid syntax",
            },
        })?;
    u64::try_from(number).map_err(|_| CronError::Negative {
        number,
        expr: expr.to_string(),
    })
}

fn bits(min: u64, max: u64, step: u64) -> u64 {
    let mut bits = 0;
    let mut i = min;
    while i <= max {
        bits |= 1 << i;
        match i.checked_add(step) {
            Some(next) => i = next,
            None => break,
        }
    }
    bits
}

fn has(bits: u64, value: i8) -> bool {
    bits & (1 << value) != 0
}

/// Go's `time.ParseDuration`, in nanoseconds; errors carry Go's messages.
fn parse_go_duration(orig: &str) -> Result<i64, String> {
    let invalid = || format!("time: invalid duration {orig:?}");
    const LIMIT: u64 = 1 << 63;
    let mut s = orig.as_bytes();
    let mut negative = false;
    if let Some(&c) = s.first() {
        if c == b'-' || c == b'+' {
            negative = c == b'-';
            s = &s[1..];
        }
    }
    if s == b"0" {
        return Ok(0);
    }
    if s.is_empty() {
        return Err(invalid());
    }
    let mut total: u64 = 0;
    while !s.is_empty() {
        if !(s[0] == b'.' || s[0].is_ascii_digit()) {
            return Err(invalid());
        }
        let digits = s.iter().take_while(|c| c.is_ascii_digit()).count();
        let mut value: u64 = 0;
        for &c in &s[..digits] {
            if value > LIMIT / 10 {
                return Err(invalid());
            }
            value = value * 10 + u64::from(c - b'0');
            if value > LIMIT {
                return Err(invalid());
            }
        }
        s = &s[digits..];
        let mut fraction: u64 = 0;
        let mut scale = 1.0f64;
        let mut fraction_digits = 0;
        if s.first() == Some(&b'.') {
            s = &s[1..];
            fraction_digits = s.iter().take_while(|c| c.is_ascii_digit()).count();
            let mut overflow = false;
            for &c in &s[..fraction_digits] {
                // Digits past 63 bits of precision are dropped, as Go does.
                if overflow || fraction > (LIMIT - 1) / 10 {
                    overflow = true;
                    continue;
                }
                let next = fraction * 10 + u64::from(c - b'0');
                if next > LIMIT {
                    overflow = true;
                    continue;
                }
                fraction = next;
                scale *= 10.0;
            }
            s = &s[fraction_digits..];
        }
        if digits == 0 && fraction_digits == 0 {
            return Err(invalid());
        }
        let unit_len = s
            .iter()
            .take_while(|&&c| !(c == b'.' || c.is_ascii_digit()))
            .count();
        if unit_len == 0 {
            return Err(format!("time: missing unit in duration {orig:?}"));
        }
        let unit_text = String::from_utf8_lossy(&s[..unit_len]).into_owned();
        s = &s[unit_len..];
        let unit: u64 = match unit_text.as_str() {
            "ns" => 1,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => {
                return Err(format!(
                    "time: unknown unit {unit_text:?} in duration {orig:?}"
                ))
            }
        };
        if value > LIMIT / unit {
            return Err(invalid());
        }
        value *= unit;
        if fraction > 0 {
            value += (fraction as f64 * (unit as f64 / scale)) as u64;
            if value > LIMIT {
                return Err(invalid());
            }
        }
        total += value;
        if total > LIMIT {
            return Err(invalid());
        }
    }
    if negative {
        return Ok((-(i128::from(total))) as i64);
    }
    i64::try_from(total).map_err(|_| invalid())
}

impl Schedule {
    /// The first activation strictly after `t`, in `t`'s time zone; `None` when the schedule
    /// does not fire within five years (it never will, like `0 0 30 2 *`).
    pub fn next_after(&self, t: &Zoned) -> Option<Zoned> {
        let zone = t.time_zone().clone();
        let next = match &self.kind {
            Kind::Every(delay) => {
                let subsec = t.timestamp().as_nanosecond().rem_euclid(NANOS_PER_SECOND) as i64;
                t.timestamp()
                    .checked_add(*delay - SignedDuration::from_nanos(subsec))
                    .ok()?
            }
            Kind::Spec(fields) => {
                let location = self.location.clone().unwrap_or_else(|| zone.clone());
                next_spec(fields, t.timestamp(), &location)?
            }
        };
        Some(next.to_zoned(zone))
    }

    fn next_timestamp(&self, t: Timestamp, zone: &TimeZone) -> Option<Timestamp> {
        self.next_after(&t.to_zoned(zone.clone()))
            .map(|z| z.timestamp())
    }
}

/// robfig's `SpecSchedule.Next` on Unix seconds: walk month, day, hour, minute and second forward
/// until all match, restarting from the month whenever a field wraps.
fn next_spec(f: &Fields, from: Timestamp, loc: &TimeZone) -> Option<Timestamp> {
    let mut t = i64::try_from(from.as_nanosecond().div_euclid(NANOS_PER_SECOND)).ok()? + 1;
    let mut added = false;
    let year_limit = civil(t, loc)?.year() as i32 + 5;

    'wrap: loop {
        let mut c = civil(t, loc)?;
        if c.year() as i32 > year_limit {
            return None;
        }

        while !has(f.month, c.month()) {
            if !added {
                added = true;
                t = go_date(c.year(), c.month(), 1, 0, loc)?;
                c = civil(t, loc)?;
            }
            t = go_date(c.year(), c.month() + 1, c.day(), seconds_of_day(&c), loc)?;
            c = civil(t, loc)?;
            if c.month() == 1 {
                continue 'wrap;
            }
        }

        while !day_matches(f, &c) {
            if !added {
                added = true;
                t = go_date(c.year(), c.month(), c.day(), 0, loc)?;
                c = civil(t, loc)?;
            }
            t = go_date(c.year(), c.month(), c.day() + 1, seconds_of_day(&c), loc)?;
            c = civil(t, loc)?;
            // Midnight may not exist (a DST change at 00:00): land back on the intended day.
            let hour = i64::from(c.hour());
            if hour != 0 {
                t += if hour > 12 {
                    (24 - hour) * 3600
                } else {
                    -hour * 3600
                };
                c = civil(t, loc)?;
            }
            if c.day() == 1 {
                continue 'wrap;
            }
        }

        while !has(f.hour, c.hour()) {
            if !added {
                added = true;
                t = go_date(
                    c.year(),
                    c.month(),
                    c.day(),
                    i64::from(c.hour()) * 3600,
                    loc,
                )?;
            }
            t += 3600;
            c = civil(t, loc)?;
            if c.hour() == 0 {
                continue 'wrap;
            }
        }

        while !has(f.minute, c.minute()) {
            if !added {
                added = true;
                // Go truncates absolute time, not the wall clock (they differ in zones with
                // sub-minute offsets).
                t -= t.rem_euclid(60);
            }
            t += 60;
            c = civil(t, loc)?;
            if c.minute() == 0 {
                continue 'wrap;
            }
        }

        while !has(f.second, c.second()) {
            added = true;
            t += 1;
            c = civil(t, loc)?;
            if c.second() == 0 {
                continue 'wrap;
            }
        }

        return Timestamp::from_second(t).ok();
    }
}

/// Day-of-month and day-of-week must both match when either is `*`, otherwise either may.
fn day_matches(f: &Fields, c: &DateTime) -> bool {
    let dom = has(f.dom, c.day());
    let dow = has(f.dow, c.weekday().to_sunday_zero_offset());
    if f.dom & STAR_BIT != 0 || f.dow & STAR_BIT != 0 {
        dom && dow
    } else {
        dom || dow
    }
}

fn civil(t: i64, loc: &TimeZone) -> Option<DateTime> {
    Some(loc.to_datetime(Timestamp::from_second(t).ok()?))
}

fn seconds_of_day(c: &DateTime) -> i64 {
    i64::from(c.hour()) * 3600 + i64::from(c.minute()) * 60 + i64::from(c.second())
}

/// Go's `time.Date` in `loc`, month and day allowed to overflow, as Unix seconds. A wall time
/// that does not exist or exists twice resolves as Go resolves it: through the offset in force
/// at the wall time read as UTC, corrected once.
fn go_date(year: i16, month: i8, day: i8, seconds_of_day: i64, loc: &TimeZone) -> Option<i64> {
    let months = i64::from(month) - 1;
    let year = i16::try_from(i64::from(year) + months.div_euclid(12)).ok()?;
    let month = (months.rem_euclid(12) + 1) as i8;
    let date = Date::new(year, month, 1)
        .ok()?
        .checked_add((i64::from(day) - 1).days())
        .ok()?;
    let local = TimeZone::UTC
        .to_timestamp(date.to_datetime(jiff::civil::Time::midnight()))
        .ok()?
        .as_second()
        + seconds_of_day;
    let offset_at = |secs: i64| -> Option<i64> {
        Some(i64::from(
            loc.to_offset(Timestamp::from_second(secs).ok()?).seconds(),
        ))
    };
    let guess = offset_at(local)?;
    Some(local - offset_at(local - guess)?)
}

// ---------------------------------------------------------------------------------------------
// CronJob controller

/// The CronJob's schedule as its controller reads it (`formatSchedule` + `ParseStandard`):
/// `spec.timeZone` applies unless the schedule itself names a zone (`TZ=`, allowed only on
/// objects created before validation forbade it; the controller then warns with an
/// `UnsupportedSchedule` event). An unknown `spec.timeZone` is [`CronError::UnknownTimeZone`]
/// (event `UnknownTimeZone`, `invalid timeZone: "<tz>": <error>`); a parse error is reported with
/// event `UnparseableSchedule`, `unparseable schedule: "<schedule>" : <error>`.
pub fn cron_job_schedule(cj: &CronJob) -> Result<Schedule, CronError> {
    let spec = cj.spec.as_ref();
    let schedule = spec.map_or("", |s| s.schedule.as_str());
    // The controller refuses an unknown zone before it looks at the schedule.
    let time_zone = match spec.and_then(|s| s.time_zone.as_deref()) {
        Some(name) => Some(load_location(name)?),
        None => None,
    };
    let mut parsed = parse_standard(schedule)?;
    if let Some(location) = time_zone.filter(|_| !schedule_mentions_tz(schedule)) {
        parsed.location = location;
    }
    Ok(parsed)
}

/// Kubernetes flags any schedule containing `TZ`, not only a leading `TZ=`.
pub fn schedule_mentions_tz(schedule: &str) -> bool {
    schedule.contains("TZ")
}

/// API validation of `spec.schedule` (a non-empty one; empty is a `Required` error): the messages
/// of its `Invalid` errors. `allow_tz_in_schedule` is true on updates of objects whose old schedule
/// already used `TZ`.
pub fn validate_schedule(
    schedule: &str,
    time_zone: Option<&str>,
    allow_tz_in_schedule: bool,
) -> Vec<String> {
    let mut errors = Vec::new();
    if let Err(e) = parse_standard(schedule) {
        errors.push(e.to_string());
    }
    if schedule_mentions_tz(schedule) {
        if !allow_tz_in_schedule {
            errors.push(
                "cannot use TZ or CRON_TZ in schedule, use timeZone field instead".to_string(),
            );
        } else if time_zone.is_some() {
            errors.push("cannot use both timeZone field and TZ or CRON_TZ in schedule".to_string());
        }
    }
    errors
}

/// API validation of `spec.timeZone`: the message of its `Invalid` error, if any.
pub fn validate_time_zone(time_zone: Option<&str>) -> Option<String> {
    let tz = time_zone?;
    if tz.is_empty() {
        return Some("timeZone must be nil or non-empty string".to_string());
    }
    let valid_part = |p: &str| {
        p != "."
            && p != ".."
            && !p.starts_with('-')
            && (1..=14).contains(&p.len())
            && p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".-_+".contains(&b))
    };
    if !tz.split('/').all(valid_part) {
        return Some(format!("unknown time zone {tz}"));
    }
    if tz.eq_ignore_ascii_case("Local") {
        return Some(
            "timeZone must be an explicit time zone as defined in https://www.iana.org/time-zones"
                .to_string(),
        );
    }
    load_location(tz).err().map(|e| e.to_string())
}

/// How many start times were missed since the last one, roughly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MissedSchedules {
    Zero,
    Few,
    /// More than [`MAX_MISSED_SCHEDULES`]: the controller warns (`TooManyMissedTimes`) but still
    /// runs the most recent one.
    TooMany,
}

/// The result of [`most_recent_schedule_time`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecentSchedule {
    /// Where the search started: the last schedule time, else the creation time, moved up to
    /// `now - startingDeadlineSeconds` when that was asked for and is later.
    pub earliest: Timestamp,
    /// The latest start time not after `now`, if any since `earliest`.
    pub most_recent: Option<Timestamp>,
    pub missed: MissedSchedules,
}

/// Kubernetes' `mostRecentScheduleTime`. The number of missed runs is estimated from the gap
/// between the first two start times, as Kubernetes does, so that a controller that was down for
/// years does not enumerate every slot.
pub fn most_recent_schedule_time(
    cj: &CronJob,
    schedule: &Schedule,
    now: &Zoned,
    include_starting_deadline: bool,
) -> Result<RecentSchedule, CronError> {
    let zone = now.time_zone();
    let now_ts = now.timestamp();
    let go_zero = Timestamp::from_second(GO_ZERO_TIME_SECONDS).unwrap_or(Timestamp::MIN);
    let mut earliest = cj
        .status
        .as_ref()
        .and_then(|s| s.last_schedule_time.as_ref())
        .or(cj.metadata.creation_timestamp.as_ref())
        .map_or(go_zero, |t| t.0);
    if include_starting_deadline {
        if let Some(deadline) = cj.spec.as_ref().and_then(|s| s.starting_deadline_seconds) {
            let cutoff = now_ts
                .saturating_sub(SignedDuration::from_secs(deadline))
                .unwrap_or(go_zero);
            earliest = earliest.max(cutoff);
        }
    }
    let recent = |most_recent, missed| {
        Ok(RecentSchedule {
            earliest,
            most_recent,
            missed,
        })
    };

    let t1 = schedule.next_timestamp(earliest, zone).unwrap_or(go_zero);
    let t2 = schedule.next_timestamp(t1, zone).unwrap_or(go_zero);
    if now_ts < t1 {
        return recent(None, MissedSchedules::Zero);
    }
    if now_ts < t2 {
        return recent(Some(t1), MissedSchedules::Zero);
    }

    let between = round_to_seconds(t2.duration_since(t1).as_nanos());
    if between < 1 {
        return Err(CronError::SchedulesTooClose);
    }
    let elapsed = (now_ts.duration_since(t1).as_nanos() / NANOS_PER_SECOND) as i64;
    let missed = elapsed / between + 1;

    // Start two intervals before the estimated last slot and let the schedule find the real
    // ones: irregular schedules (`30 6-16/4 * * 1-5`) are not evenly spaced.
    let back = SignedDuration::from_secs((missed - 2).saturating_mul(between));
    let mut most_recent = None;
    let mut t = t1
        .saturating_add(back)
        .ok()
        .and_then(|start| schedule.next_timestamp(start, zone));
    while let Some(slot) = t.filter(|slot| *slot <= now_ts) {
        most_recent = Some(slot);
        t = schedule.next_timestamp(slot, zone);
    }

    let missed = match missed {
        n if n > MAX_MISSED_SCHEDULES => MissedSchedules::TooMany,
        n if n > 0 => MissedSchedules::Few,
        _ => MissedSchedules::Zero,
    };
    recent(most_recent, missed)
}

/// `time.Duration.Round(time.Second)` in whole seconds: halves away from zero.
fn round_to_seconds(nanos: i128) -> i64 {
    let half = NANOS_PER_SECOND / 2;
    let rounded = if nanos >= 0 {
        (nanos + half) / NANOS_PER_SECOND
    } else {
        -((-nanos + half) / NANOS_PER_SECOND)
    };
    rounded.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
}

/// A start time that is due now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DueRun {
    pub scheduled: Timestamp,
    /// Warn with event `TooManyMissedTimes` ([`TOO_MANY_MISSED_TIMES_MESSAGE`]).
    pub too_many_missed: bool,
}

/// Kubernetes' `nextScheduleTime`: the start time to run now (the most recent unmet one, within
/// `startingDeadlineSeconds`), `None` when none is due. An error (event `InvalidSchedule`,
/// `invalid schedule: <schedule> : <error>`) means the schedule never fires.
pub fn next_schedule_time(
    cj: &CronJob,
    schedule: &Schedule,
    now: &Zoned,
) -> Result<Option<DueRun>, CronError> {
    let recent = most_recent_schedule_time(cj, schedule, now, true)?;
    Ok(recent
        .most_recent
        .filter(|t| *t <= now.timestamp())
        .map(|scheduled| DueRun {
            scheduled,
            too_many_missed: recent.missed == MissedSchedules::TooMany,
        }))
}

/// When to sync the CronJob again: just after its next start time (plus
/// [`NEXT_SCHEDULE_DELTA`]); `None` when the schedule never fires.
pub fn next_schedule_time_duration(
    cj: &CronJob,
    schedule: &Schedule,
    now: &Zoned,
) -> Option<SignedDuration> {
    let now_ts = now.timestamp();
    let base = match most_recent_schedule_time(cj, schedule, now, false) {
        Err(_) => now_ts,
        Ok(r) => r
            .most_recent
            .unwrap_or(if r.missed == MissedSchedules::Zero {
                r.earliest
            } else {
                now_ts
            }),
    };
    let next = schedule.next_timestamp(base, now.time_zone())?;
    Some(next.duration_since(now_ts) + NEXT_SCHEDULE_DELTA)
}

/// The due start time is older than `startingDeadlineSeconds`: skip it (Warning `MissSchedule`,
/// [`missed_schedule_message`]).
pub fn missed_starting_deadline(cj: &CronJob, scheduled: Timestamp, now: Timestamp) -> bool {
    cj.spec
        .as_ref()
        .and_then(|s| s.starting_deadline_seconds)
        .and_then(|d| scheduled.checked_add(SignedDuration::from_secs(d)).ok())
        .is_some_and(|deadline| deadline < now)
}

/// `Missed scheduled time to start a job: Mon, 02 Jan 2006 15:04:05 +0000`.
pub fn missed_schedule_message(scheduled: Timestamp) -> String {
    format!(
        "Missed scheduled time to start a job: {}",
        scheduled.strftime("%a, %d %b %Y %H:%M:%S +0000")
    )
}

/// `<cronjob>-<scheduled time in minutes since the epoch>`: one name per slot, so a retried
/// create cannot start a slot twice.
pub fn job_name(cron_job_name: &str, scheduled: Timestamp) -> String {
    format!("{cron_job_name}-{}", scheduled.as_second() / 60)
}

/// The scheduled-timestamp annotation value: RFC 3339 in `spec.timeZone` (UTC without one), with
/// `Z` for a zero offset as Go prints it.
pub fn scheduled_timestamp(cj: &CronJob, scheduled: Timestamp) -> Result<String, CronError> {
    let name = cj
        .spec
        .as_ref()
        .and_then(|s| s.time_zone.as_deref())
        .unwrap_or("");
    let zone = load_location(name)?.unwrap_or(TimeZone::UTC);
    let zoned = scheduled.to_zoned(zone);
    let offset = zoned.offset().seconds();
    let suffix = if offset == 0 {
        "Z".to_string()
    } else {
        let sign = if offset < 0 { '-' } else { '+' };
        let minutes = offset.abs() / 60;
        format!("{sign}{:02}:{:02}", minutes / 60, minutes % 60)
    };
    Ok(format!("{}{suffix}", zoned.strftime("%Y-%m-%dT%H:%M:%S")))
}

/// The Job for one start time: the template's labels, annotations and spec, the
/// scheduled-timestamp annotation, [`job_name`], and the CronJob as controller.
pub fn job_from_template(cj: &CronJob, scheduled: Timestamp) -> Result<Job, CronError> {
    let template = cj
        .spec
        .as_ref()
        .map(|s| s.job_template.clone())
        .unwrap_or_default();
    let meta = template.metadata.unwrap_or_default();
    let mut annotations = meta.annotations.unwrap_or_default();
    annotations.insert(
        CRON_JOB_SCHEDULED_TIMESTAMP_ANNOTATION.to_string(),
        scheduled_timestamp(cj, scheduled)?,
    );
    let name = cj.metadata.name.as_deref().unwrap_or("");
    Ok(Job {
        metadata: ObjectMeta {
            name: Some(job_name(name, scheduled)),
            namespace: cj.metadata.namespace.clone(),
            labels: meta.labels.filter(|l| !l.is_empty()),
            annotations: Some(annotations),
            owner_references: Some(vec![OwnerReference {
                api_version: "batch/v1".to_string(),
                kind: "CronJob".to_string(),
                name: name.to_string(),
                uid: cj.metadata.uid.clone().unwrap_or_default(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]),
            ..Default::default()
        },
        spec: template.spec,
        status: None,
    })
}

/// `Some("Complete")` or `Some("Failed")` once the Job has that condition True.
pub fn is_job_finished(job: &Job) -> Option<&str> {
    job.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
        .map(|c| c.type_.as_str())
}

/// Finished Jobs beyond `successfulJobsHistoryLimit` / `failedJobsHistoryLimit`, oldest start
/// first (Jobs that never started last), successful ones before failed ones. `jobs` are the Jobs
/// the CronJob controls.
pub fn jobs_to_clean_up<'a>(cj: &CronJob, jobs: &[&'a Job]) -> Vec<&'a Job> {
    let spec = cj.spec.as_ref();
    let mut by_outcome: BTreeMap<&str, Vec<&Job>> = BTreeMap::new();
    for job in jobs {
        if let Some(outcome) = is_job_finished(job) {
            by_outcome.entry(outcome).or_default().push(job);
        }
    }
    let limits = [
        (
            "Complete",
            spec.and_then(|s| s.successful_jobs_history_limit),
        ),
        ("Failed", spec.and_then(|s| s.failed_jobs_history_limit)),
    ];
    let mut doomed = Vec::new();
    for (outcome, limit) in limits {
        let (Some(limit), Some(finished)) = (limit, by_outcome.get_mut(outcome)) else {
            continue;
        };
        let excess = finished.len() as i64 - i64::from(limit);
        if excess <= 0 {
            continue;
        }
        finished.sort_by_key(|j| {
            let started = j
                .status
                .as_ref()
                .and_then(|s| s.start_time.as_ref())
                .map(|t| t.0);
            (started.is_none(), started, j.metadata.name.clone())
        });
        doomed.extend(finished.iter().take(excess as usize));
    }
    doomed
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// jiff carries its own copy of the IANA database (`tzdb-bundle-always`), so this cannot happen
    /// unless that feature is dropped.
    const NEEDS_TZDATA: &str = "the bundled IANA time zone database is missing";

    fn zoned(s: &str) -> Zoned {
        s.parse()
            .unwrap_or_else(|e| panic!("{s}: {e} ({NEEDS_TZDATA})"))
    }

    fn utc(s: &str) -> Zoned {
        s.parse::<Timestamp>().unwrap().to_zoned(TimeZone::UTC)
    }

    /// The next `n` activations after `from`, printed with their offsets.
    fn nexts(spec: &str, from: &Zoned, n: usize) -> Vec<String> {
        let schedule = parse_standard(spec).unwrap();
        let mut t = from.clone();
        (0..n)
            .map(|_| {
                t = schedule.next_after(&t).unwrap();
                t.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string()
            })
            .collect()
    }

    #[test]
    fn parse_errors_carry_robfig_messages() {
        let err = |spec: &str| parse_standard(spec).unwrap_err().to_string();
        assert_eq!(err(""), "empty spec string");
        assert_eq!(err("x"), "expected exactly 5 fields, found 1: [x]");
        assert_eq!(
            err("* * * * * *"),
            "expected exactly 5 fields, found 6: [* * * * * *]"
        );
        assert_eq!(err("* * * * 7"), "end of range (7) above maximum (6): 7");
        assert_eq!(
            err("60 * * * *"),
            "end of range (60) above maximum (59): 60"
        );
        assert_eq!(
            err("* * 0 * *"),
            "beginning of range (0) below minimum (1): 0"
        );
        assert_eq!(
            err("5-1 * * * *"),
            "beginning of range (5) beyond end of range (1): 5-1"
        );
        assert_eq!(err("1-2-3 * * * *"), "too many hyphens: 1-2-3");
        assert_eq!(err("*/2/3 * * * *"), "too many slashes: */2/3");
        assert_eq!(
            err("*/0 * * * *"),
            "step of range should be a positive number: */0"
        );
        assert_eq!(
            err("a * * * *"),
            "failed to parse int from a: strconv.Atoi: parsing \"a\": invalid syntax"
        );
        assert_eq!(
            err("* * * foo *"),
            "failed to parse int from foo: strconv.Atoi: parsing \"foo\": invalid syntax"
        );
        assert_eq!(
            err("99999999999999999999 * * * *"),
            "failed to parse int from 99999999999999999999: strconv.Atoi: parsing \"99999999999999999999\": value out of range"
        );
        assert_eq!(err("@fortnightly"), "unrecognized descriptor: @fortnightly");
        assert_eq!(
            err("@every 5x"),
            "failed to parse duration @every 5x: time: unknown unit \"x\" in duration \"5x\""
        );
        assert_eq!(
            err("@every 5"),
            "failed to parse duration @every 5: time: missing unit in duration \"5\""
        );
        assert_eq!(
            err("TZ=Nowhere/City * * * * *"),
            "provided bad location Nowhere/City: unknown time zone Nowhere/City"
        );
        for ok in [
            "*/5 * * * *",
            "1-10/2 0 ? JAN-mar Mon-FRI",
            "0 0 1,15 * sun",
            "@daily",
            "@every 1h30m",
            "5/15 * * * *",
        ] {
            assert!(parse_standard(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn next_times_for_common_schedules() {
        let from = utc("2024-01-31T10:07:30.5Z");
        assert_eq!(
            nexts("*/15 * * * *", &from, 3),
            [
                "2024-01-31T10:15:00+00:00",
                "2024-01-31T10:30:00+00:00",
                "2024-01-31T10:45:00+00:00"
            ]
        );
        assert_eq!(
            nexts("5/20 * * * *", &from, 2),
            ["2024-01-31T10:25:00+00:00", "2024-01-31T10:45:00+00:00"]
        );
        assert_eq!(
            nexts("1-10/4 9 * * *", &from, 3),
            [
                "2024-02-01T09:01:00+00:00",
                "2024-02-01T09:05:00+00:00",
                "2024-02-01T09:09:00+00:00"
            ]
        );
        // Month ends: the 31st skips short months; Feb 29 waits for a leap year.
        assert_eq!(
            nexts("0 0 31 * *", &from, 3),
            [
                "2024-03-31T00:00:00+00:00",
                "2024-05-31T00:00:00+00:00",
                "2024-07-31T00:00:00+00:00"
            ]
        );
        assert_eq!(
            nexts("0 12 29 2 *", &utc("2024-03-01T00:00:00Z"), 1),
            ["2028-02-29T12:00:00+00:00"]
        );
        assert_eq!(
            nexts(
                "0 0 L * *".replace('L', "28-31").as_str(),
                &utc("2023-02-27T00:00:00Z"),
                2
            ),
            ["2023-02-28T00:00:00+00:00", "2023-03-28T00:00:00+00:00"]
        );
        // Weekdays and names; Friday 2024-02-02 10:00 rolls over to Monday.
        assert_eq!(
            nexts("0 9 * * mon-fri", &utc("2024-02-02T10:00:00Z"), 2),
            ["2024-02-05T09:00:00+00:00", "2024-02-06T09:00:00+00:00"]
        );
        assert_eq!(
            nexts("0 0 * JUL sun", &from, 1),
            ["2024-07-07T00:00:00+00:00"]
        );
        // Both day fields restricted: either matches (the 13th, or any Friday).
        assert_eq!(
            nexts("0 0 13 * 5", &utc("2024-09-10T00:00:00Z"), 3),
            [
                "2024-09-13T00:00:00+00:00",
                "2024-09-20T00:00:00+00:00",
                "2024-09-27T00:00:00+00:00"
            ]
        );
        assert_eq!(
            nexts("0 0 13 * 5", &utc("2024-10-05T00:00:00Z"), 2),
            ["2024-10-11T00:00:00+00:00", "2024-10-13T00:00:00+00:00"]
        );
        // One restricted and the other `*` or `?`: both must match.
        assert_eq!(
            nexts("0 0 13 * ?", &utc("2024-09-14T00:00:00Z"), 1),
            ["2024-10-13T00:00:00+00:00"]
        );
        // `*` with a step is no star: 1-31/2 and Monday are ORed.
        assert_eq!(
            nexts("0 0 */2 * 1", &utc("2024-09-01T12:00:00Z"), 3),
            [
                "2024-09-02T00:00:00+00:00",
                "2024-09-03T00:00:00+00:00",
                "2024-09-05T00:00:00+00:00"
            ]
        );
    }

    /// robfig's `TestNext` cases, without the seconds field.
    #[test]
    fn robfig_next_cases() {
        let cases = [
            (
                "2012-07-09T14:45:00Z",
                "0/15 * * * *",
                "2012-07-09T15:00:00+00:00",
            ),
            (
                "2012-07-09T14:59:59Z",
                "0/15 * * * *",
                "2012-07-09T15:00:00+00:00",
            ),
            (
                "2012-07-09T15:45:00Z",
                "20-35/15 * * * *",
                "2012-07-09T16:20:00+00:00",
            ),
            (
                "2012-07-09T23:46:00Z",
                "*/15 * * * *",
                "2012-07-10T00:00:00+00:00",
            ),
            (
                "2012-07-09T23:45:00Z",
                "20-35/15 * * * *",
                "2012-07-10T00:20:00+00:00",
            ),
            (
                "2012-07-09T23:35:00Z",
                "0 0 9 Apr-Oct ?",
                "2012-08-09T00:00:00+00:00",
            ),
            // v3 (Kubernetes' version) counts a stepped `*` as a restriction: dom OR dow.
            (
                "2012-07-09T23:35:00Z",
                "0 0 */5 Apr,Aug,Oct Mon",
                "2012-08-01T00:00:00+00:00",
            ),
            (
                "2012-07-09T23:35:00Z",
                "0 0 */5 Oct Mon",
                "2012-10-01T00:00:00+00:00",
            ),
            (
                "2012-07-09T23:35:00Z",
                "0 0 * Feb Mon",
                "2013-02-04T00:00:00+00:00",
            ),
            (
                "2012-07-09T23:35:00Z",
                "0 0 * Feb Mon/2",
                "2013-02-01T00:00:00+00:00",
            ),
            (
                "2012-12-31T23:59:45Z",
                "* * * * *",
                "2013-01-01T00:00:00+00:00",
            ),
            (
                "2012-07-09T23:35:00Z",
                "0 0 29 Feb ?",
                "2016-02-29T00:00:00+00:00",
            ),
        ];
        for (from, spec, expected) in cases {
            assert_eq!(
                nexts(spec, &utc(from), 1),
                [expected],
                "{spec} after {from}"
            );
        }
        let new_york = TimeZone::get("America/New_York").expect(NEEDS_TZDATA);
        let ny = |s: &str| s.parse::<Timestamp>().unwrap().to_zoned(new_york.clone());
        assert_eq!(
            nexts("30 2 11 Mar ?", &ny("2012-03-11T05:00:00Z"), 1),
            ["2013-03-11T02:30:00-04:00"]
        );
        assert_eq!(
            nexts("30 2 04 Nov ?", &ny("2012-11-04T04:00:00Z"), 1),
            ["2012-11-04T02:30:00-05:00"]
        );
        assert_eq!(
            nexts("30 1 04 Nov ?", &ny("2012-11-04T05:45:00Z"), 1),
            ["2012-11-04T01:30:00-05:00"]
        );
    }

    #[test]
    fn descriptors() {
        let from = utc("2024-05-15T10:30:00Z");
        assert_eq!(nexts("@hourly", &from, 1), ["2024-05-15T11:00:00+00:00"]);
        assert_eq!(nexts("@daily", &from, 1), ["2024-05-16T00:00:00+00:00"]);
        assert_eq!(nexts("@midnight", &from, 1), ["2024-05-16T00:00:00+00:00"]);
        assert_eq!(nexts("@weekly", &from, 1), ["2024-05-19T00:00:00+00:00"]);
        assert_eq!(nexts("@monthly", &from, 1), ["2024-06-01T00:00:00+00:00"]);
        assert_eq!(nexts("@yearly", &from, 1), ["2025-01-01T00:00:00+00:00"]);
        assert_eq!(nexts("@annually", &from, 1), ["2025-01-01T00:00:00+00:00"]);
        assert_eq!(
            nexts("@every 1h30m", &utc("2024-05-15T10:30:00.25Z"), 2),
            ["2024-05-15T12:00:00+00:00", "2024-05-15T13:30:00+00:00"]
        );
        assert_eq!(
            nexts("@every 10ms", &from, 1),
            ["2024-05-15T10:30:01+00:00"],
            "at least a second"
        );
        assert_eq!(
            nexts("@every 1.5s", &from, 1),
            ["2024-05-15T10:30:01+00:00"],
            "whole seconds"
        );
    }

    #[test]
    fn never_firing_schedules_give_up() {
        let schedule = parse_standard("0 0 30 2 *").unwrap();
        assert!(schedule.next_after(&utc("2024-01-01T00:00:00Z")).is_none());
        assert!(parse_standard("0 0 31 4 *")
            .unwrap()
            .next_after(&utc("2024-01-01T00:00:00Z"))
            .is_none());
    }

    #[test]
    fn dst_gaps_are_skipped_and_overlaps_run_twice() {
        // New York springs forward at 02:00 on 2024-03-10: 02:30 does not exist that day.
        let ny = zoned("2024-03-09T12:00:00-05:00[America/New_York]");
        assert_eq!(
            nexts("30 2 * * *", &ny, 2),
            ["2024-03-11T02:30:00-04:00", "2024-03-12T02:30:00-04:00"]
        );
        assert_eq!(
            nexts(
                "0 * * * *",
                &zoned("2024-03-10T00:30:00-05:00[America/New_York]"),
                3
            ),
            [
                "2024-03-10T01:00:00-05:00",
                "2024-03-10T03:00:00-04:00",
                "2024-03-10T04:00:00-04:00"
            ]
        );
        // It falls back at 02:00 on 2024-11-03: 01:30 happens twice.
        let fall = zoned("2024-11-03T00:00:00-04:00[America/New_York]");
        assert_eq!(
            nexts("30 1 * * *", &fall, 3),
            [
                "2024-11-03T01:30:00-04:00",
                "2024-11-03T01:30:00-05:00",
                "2024-11-04T01:30:00-05:00"
            ]
        );
        assert_eq!(
            nexts("0 0 * * *", &fall, 2),
            ["2024-11-04T00:00:00-05:00", "2024-11-05T00:00:00-05:00"]
        );
        // Berlin springs forward at 02:00 on 2024-03-31 and falls back at 03:00 on 2024-10-27.
        let berlin = zoned("2024-03-30T12:00:00+01:00[Europe/Berlin]");
        assert_eq!(
            nexts("30 2 * * *", &berlin, 2),
            ["2024-04-01T02:30:00+02:00", "2024-04-02T02:30:00+02:00"]
        );
        let berlin_fall = zoned("2024-10-27T00:00:00+02:00[Europe/Berlin]");
        assert_eq!(
            nexts("30 2 * * *", &berlin_fall, 3),
            [
                "2024-10-27T02:30:00+02:00",
                "2024-10-27T02:30:00+01:00",
                "2024-10-28T02:30:00+01:00"
            ]
        );
        // Midnight that does not exist (Havana springs forward at 00:00 on 2024-03-10).
        let havana = zoned("2024-03-09T12:00:00-05:00[America/Havana]");
        assert_eq!(
            nexts("0 12 * * *", &havana, 2),
            ["2024-03-10T12:00:00-04:00", "2024-03-11T12:00:00-04:00"]
        );
    }

    #[test]
    fn schedule_time_zones() {
        // The schedule's zone (or spec.timeZone) wins over the caller's; results come back in
        // the caller's zone.
        let schedule = parse_standard("TZ=America/New_York 0 9 * * *").unwrap();
        let next = schedule.next_after(&utc("2024-07-01T00:00:00Z")).unwrap();
        assert_eq!(
            next.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string(),
            "2024-07-01T13:00:00+00:00"
        );
        let schedule = parse_standard("CRON_TZ=Asia/Tokyo 0 9 * * *").unwrap();
        assert_eq!(
            schedule
                .next_after(&utc("2024-07-01T00:00:00Z"))
                .unwrap()
                .timestamp(),
            "2024-07-01T00:00:00Z"
                .parse::<Timestamp>()
                .unwrap()
                .checked_add(SignedDuration::from_hours(24))
                .unwrap()
        );
        let cj = cron_job(
            json!({"schedule": "0 9 * * *", "timeZone": "America/New_York"}),
            json!({}),
        );
        let schedule = cron_job_schedule(&cj).unwrap();
        assert_eq!(
            schedule
                .next_after(&utc("2024-01-01T00:00:00Z"))
                .unwrap()
                .timestamp()
                .to_string(),
            "2024-01-01T14:00:00Z"
        );
        let bad = cron_job(
            json!({"schedule": "0 9 * * *", "timeZone": "Mars/Base"}),
            json!({}),
        );
        assert_eq!(
            cron_job_schedule(&bad).unwrap_err(),
            CronError::UnknownTimeZone("Mars/Base".into())
        );
        assert_eq!(
            load_location("america/new_york").unwrap_err(),
            CronError::UnknownTimeZone("america/new_york".into())
        );
        assert_eq!(
            load_location("../etc/passwd").unwrap_err(),
            CronError::InvalidLocationName
        );
        assert!(load_location("Local").unwrap().is_none());
        assert!(load_location("").unwrap().is_some());
    }

    #[test]
    fn validation_messages() {
        assert!(validate_schedule("*/5 * * * *", None, false).is_empty());
        assert_eq!(
            validate_schedule("bogus", None, false),
            ["expected exactly 5 fields, found 1: [bogus]"]
        );
        assert_eq!(
            validate_schedule("TZ=UTC 0 * * * *", None, false),
            ["cannot use TZ or CRON_TZ in schedule, use timeZone field instead"]
        );
        assert!(validate_schedule("TZ=UTC 0 * * * *", None, true).is_empty());
        assert_eq!(
            validate_schedule("TZ=UTC 0 * * * *", Some("UTC"), true),
            ["cannot use both timeZone field and TZ or CRON_TZ in schedule"]
        );
        assert_eq!(validate_time_zone(None), None);
        assert_eq!(validate_time_zone(Some("Europe/Paris")), None);
        assert_eq!(validate_time_zone(Some("Etc/GMT+5")), None);
        assert_eq!(
            validate_time_zone(Some("")).as_deref(),
            Some("timeZone must be nil or non-empty string")
        );
        assert_eq!(
            validate_time_zone(Some("Mars/Olympus_Mons")).as_deref(),
            Some("unknown time zone Mars/Olympus_Mons")
        );
        assert_eq!(
            validate_time_zone(Some("Europe/../Paris")).as_deref(),
            Some("unknown time zone Europe/../Paris")
        );
        assert_eq!(
            validate_time_zone(Some("America/Argentina_Buenos_Aires")).as_deref(),
            Some("unknown time zone America/Argentina_Buenos_Aires"),
            "parts are at most 14 characters"
        );
        assert!(validate_time_zone(Some("local"))
            .unwrap()
            .starts_with("timeZone must be an explicit time zone"));
    }

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("1h30m"), Ok(5_400_000_000_000));
        assert_eq!(parse_go_duration("1.5h"), Ok(5_400_000_000_000));
        assert_eq!(parse_go_duration(".5s"), Ok(500_000_000));
        assert_eq!(parse_go_duration("-2m"), Ok(-120_000_000_000));
        assert_eq!(parse_go_duration("0"), Ok(0));
        assert_eq!(parse_go_duration("1\u{b5}s"), Ok(1_000));
        assert_eq!(parse_go_duration("300ms2us"), Ok(300_002_000));
        assert_eq!(
            parse_go_duration(""),
            Err("time: invalid duration \"\"".into())
        );
        assert_eq!(
            parse_go_duration(".s"),
            Err("time: invalid duration \".s\"".into())
        );
        assert_eq!(
            parse_go_duration("3000000h"),
            Err("time: invalid duration \"3000000h\"".into())
        );
    }

    fn cron_job(spec: serde_json::Value, status: serde_json::Value) -> CronJob {
        let mut spec = spec;
        spec["jobTemplate"] = json!({"metadata": {"labels": {"app": "report"}, "annotations": {"a": "b"}},
                                     "spec": {"template": {"spec": {"containers": [{"name": "c"}]}}}});
        serde_json::from_value(json!({
            "metadata": {"name": "report", "namespace": "ns", "uid": "cj-uid", "creationTimestamp": "2016-05-19T10:00:00Z"},
            "spec": spec,
            "status": status
        }))
        .unwrap()
    }

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn hourly(status: serde_json::Value) -> CronJob {
        cron_job(json!({"schedule": "0 * * * *"}), status)
    }

    #[test]
    fn most_recent_schedule_times() {
        let recent = |cj: &CronJob, now: &str, deadline: bool| {
            let schedule = cron_job_schedule(cj).unwrap();
            most_recent_schedule_time(cj, &schedule, &utc(now), deadline)
        };
        let cj = hourly(json!({}));
        assert_eq!(
            recent(&cj, "2016-05-19T10:00:30Z", false),
            Ok(RecentSchedule {
                earliest: at("2016-05-19T10:00:00Z"),
                most_recent: None,
                missed: MissedSchedules::Zero
            })
        );
        let r = recent(&cj, "2016-05-19T11:01:00Z", false).unwrap();
        assert_eq!(
            (r.most_recent, r.missed),
            (Some(at("2016-05-19T11:00:00Z")), MissedSchedules::Zero)
        );
        let r = recent(&cj, "2016-05-19T15:01:00Z", false).unwrap();
        assert_eq!(
            (r.most_recent, r.missed),
            (Some(at("2016-05-19T15:00:00Z")), MissedSchedules::Few)
        );
        // Counting from the last schedule time.
        let cj = hourly(json!({"lastScheduleTime": "2016-05-19T14:00:00Z"}));
        let r = recent(&cj, "2016-05-19T15:00:00Z", false).unwrap();
        assert_eq!(
            (r.earliest, r.most_recent),
            (at("2016-05-19T14:00:00Z"), Some(at("2016-05-19T15:00:00Z")))
        );
        // A controller down for a year: too many, but the latest slot is still found.
        let cj = cron_job(json!({"schedule": "*/5 * * * *"}), json!({}));
        let r = recent(&cj, "2017-05-19T10:02:00Z", false).unwrap();
        assert_eq!(
            (r.most_recent, r.missed),
            (Some(at("2017-05-19T10:00:00Z")), MissedSchedules::TooMany)
        );
        // startingDeadlineSeconds moves the search window up when asked to.
        let cj = cron_job(
            json!({"schedule": "*/5 * * * *", "startingDeadlineSeconds": 600}),
            json!({}),
        );
        let r = recent(&cj, "2017-05-19T10:02:00Z", true).unwrap();
        assert_eq!(
            (r.earliest, r.most_recent, r.missed),
            (
                at("2017-05-19T09:52:00Z"),
                Some(at("2017-05-19T10:00:00Z")),
                MissedSchedules::Few
            )
        );
        // A schedule that never fires.
        let cj = cron_job(json!({"schedule": "59 23 31 2 *"}), json!({}));
        assert_eq!(
            recent(&cj, "2017-05-19T10:02:00Z", false),
            Err(CronError::SchedulesTooClose)
        );
    }

    /// The estimate lands on the true latest slot, or, when an irregular schedule makes it
    /// overshoot, on none at all, exactly as in Kubernetes.
    #[test]
    fn most_recent_matches_brute_force() {
        let regular = ["15 3 * * sun", "@every 25m", "0 */2 * * *"];
        for spec in regular.iter().chain(&[
            "30 6-16/4 * * 1-5",
            "0 0 13 * 5",
            "*/7 * * * *",
            "0 9 1 */2 *",
        ]) {
            let cj = cron_job(json!({"schedule": spec}), json!({}));
            let schedule = cron_job_schedule(&cj).unwrap();
            for now in [
                "2016-05-19T23:00:00Z",
                "2016-06-02T07:31:00Z",
                "2016-08-15T16:30:00Z",
                "2016-05-23T06:30:00Z",
            ] {
                let now = utc(now);
                let mut expected = None;
                let mut t = utc("2016-05-19T10:00:00Z");
                while let Some(next) = schedule
                    .next_after(&t)
                    .filter(|n| n.timestamp() <= now.timestamp())
                {
                    expected = Some(next.timestamp());
                    t = next;
                }
                let got = most_recent_schedule_time(&cj, &schedule, &now, false)
                    .unwrap()
                    .most_recent;
                if regular.contains(spec) {
                    assert_eq!(got, expected, "{spec} at {now}");
                } else {
                    assert!(
                        got.is_none() || got == expected,
                        "{spec} at {now}: {got:?} vs {expected:?}"
                    );
                }
            }
        }
        // Kubernetes' estimate starts at 18:30 (two 4h gaps after 10:30) and misses 14:30.
        let cj = cron_job(json!({"schedule": "30 6-16/4 * * 1-5"}), json!({}));
        let schedule = cron_job_schedule(&cj).unwrap();
        let r =
            most_recent_schedule_time(&cj, &schedule, &utc("2016-05-19T23:00:00Z"), false).unwrap();
        assert_eq!((r.most_recent, r.missed), (None, MissedSchedules::Few));
    }

    #[test]
    fn due_runs_and_requeue_delays() {
        let cj = hourly(json!({}));
        let schedule = cron_job_schedule(&cj).unwrap();
        assert_eq!(
            next_schedule_time(&cj, &schedule, &utc("2016-05-19T10:30:00Z")),
            Ok(None)
        );
        assert_eq!(
            next_schedule_time(&cj, &schedule, &utc("2016-05-19T11:00:05Z")),
            Ok(Some(DueRun {
                scheduled: at("2016-05-19T11:00:00Z"),
                too_many_missed: false
            }))
        );
        assert_eq!(
            next_schedule_time_duration(&cj, &schedule, &utc("2016-05-19T10:30:00Z")),
            Some(SignedDuration::from_secs(30 * 60) + NEXT_SCHEDULE_DELTA)
        );
        // After a missed run that was not recorded, wait for the slot after `now`.
        assert_eq!(
            next_schedule_time_duration(&cj, &schedule, &utc("2016-05-19T11:10:00Z")),
            Some(SignedDuration::from_secs(50 * 60) + NEXT_SCHEDULE_DELTA)
        );
        let never = cron_job(json!({"schedule": "0 0 30 2 *"}), json!({}));
        let schedule = cron_job_schedule(&never).unwrap();
        assert_eq!(
            next_schedule_time_duration(&never, &schedule, &utc("2016-05-19T10:30:00Z")),
            None
        );

        let late = cron_job(
            json!({"schedule": "0 * * * *", "startingDeadlineSeconds": 60}),
            json!({}),
        );
        assert!(!missed_starting_deadline(
            &late,
            at("2016-05-19T11:00:00Z"),
            at("2016-05-19T11:01:00Z")
        ));
        assert!(missed_starting_deadline(
            &late,
            at("2016-05-19T11:00:00Z"),
            at("2016-05-19T11:01:01Z")
        ));
        assert!(!missed_starting_deadline(
            &cj,
            at("2016-05-19T11:00:00Z"),
            at("2017-01-01T00:00:00Z")
        ));
        assert_eq!(
            missed_schedule_message(at("2016-05-19T11:00:00Z")),
            "Missed scheduled time to start a job: Thu, 19 May 2016 11:00:00 +0000"
        );
    }

    #[test]
    fn jobs_for_a_start_time() {
        let scheduled = at("2016-05-19T10:00:00Z");
        assert_eq!(job_name("report", scheduled), "report-24394200");
        let cj = cron_job(
            json!({"schedule": "0 * * * *", "timeZone": "America/New_York"}),
            json!({}),
        );
        assert_eq!(
            scheduled_timestamp(&cj, scheduled).unwrap(),
            "2016-05-19T06:00:00-04:00"
        );
        let job = job_from_template(&cj, scheduled).unwrap();
        assert_eq!(job.metadata.name.as_deref(), Some("report-24394200"));
        let annotations = job.metadata.annotations.unwrap();
        assert_eq!(annotations.get("a").map(String::as_str), Some("b"));
        assert_eq!(
            annotations
                .get(CRON_JOB_SCHEDULED_TIMESTAMP_ANNOTATION)
                .map(String::as_str),
            Some("2016-05-19T06:00:00-04:00")
        );
        assert_eq!(
            job.metadata.labels.unwrap().get("app").map(String::as_str),
            Some("report")
        );
        let owner = &job.metadata.owner_references.unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
            ("CronJob", "cj-uid", Some(true))
        );
        assert!(job.spec.is_some());
        let plain = hourly(json!({}));
        assert_eq!(
            scheduled_timestamp(&plain, scheduled).unwrap(),
            "2016-05-19T10:00:00Z"
        );
        let london = cron_job(
            json!({"schedule": "0 * * * *", "timeZone": "Europe/London"}),
            json!({}),
        );
        assert_eq!(
            scheduled_timestamp(&london, at("2016-01-19T10:00:00Z")).unwrap(),
            "2016-01-19T10:00:00Z"
        );
    }

    fn job(name: &str, outcome: Option<&str>, started: Option<&str>) -> Job {
        let conditions = match outcome {
            Some(t) => {
                json!([{"type": "SuccessCriteriaMet", "status": "True"}, {"type": t, "status": "True"}])
            }
            None => json!([{"type": "Failed", "status": "False"}]),
        };
        serde_json::from_value(json!({"metadata": {"name": name}, "status": {"conditions": conditions, "startTime": started}})).unwrap()
    }

    #[test]
    fn finished_jobs_and_history_limits() {
        assert_eq!(
            is_job_finished(&job("a", Some("Complete"), None)),
            Some("Complete")
        );
        assert_eq!(
            is_job_finished(&job("a", Some("Failed"), None)),
            Some("Failed")
        );
        assert_eq!(is_job_finished(&job("a", None, None)), None);

        let jobs = [
            job("ok-3", Some("Complete"), Some("2016-05-19T12:00:00Z")),
            job("ok-1", Some("Complete"), Some("2016-05-19T10:00:00Z")),
            job("ok-unstarted", Some("Complete"), None),
            job("ok-2", Some("Complete"), Some("2016-05-19T11:00:00Z")),
            job("bad-1", Some("Failed"), Some("2016-05-19T10:00:00Z")),
            job("bad-2", Some("Failed"), Some("2016-05-19T11:00:00Z")),
            job("running", None, Some("2016-05-19T09:00:00Z")),
        ];
        let refs: Vec<&Job> = jobs.iter().collect();
        let names = |cj: &CronJob| {
            jobs_to_clean_up(cj, &refs)
                .iter()
                .map(|j| j.metadata.name.clone().unwrap())
                .collect::<Vec<_>>()
        };
        let cj = cron_job(
            json!({"schedule": "@hourly", "successfulJobsHistoryLimit": 1, "failedJobsHistoryLimit": 1}),
            json!({}),
        );
        assert_eq!(names(&cj), ["ok-1", "ok-2", "ok-3", "bad-1"]);
        let cj = cron_job(
            json!({"schedule": "@hourly", "successfulJobsHistoryLimit": 3}),
            json!({}),
        );
        assert_eq!(names(&cj), ["ok-1"]);
        let cj = cron_job(json!({"schedule": "@hourly"}), json!({}));
        assert!(names(&cj).is_empty());
    }
}
