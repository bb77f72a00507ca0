//! When scheduled jobs fire: a weekly slot ("sun 02:00", UTC) and the slot a moment falls in.
//! Pure time arithmetic, so it is tested without clocks.

use chrono::{DateTime, Datelike, Duration, NaiveTime, Utc, Weekday};

/// A weekly moment in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WeeklySlot {
    pub weekday: Weekday,
    pub time: NaiveTime,
}

impl WeeklySlot {
    /// Parses "DAY HH:MM" (DAY: mon..sun, any case); an empty text is no slot.
    pub fn parse(text: &str) -> Result<Option<WeeklySlot>, String> {
        let text = text.trim();
        if text.is_empty() {
            return Ok(None);
        }
        let expected = || format!("`{text}` is not \"DAY HH:MM\" (e.g. \"sun 02:00\")");
        let (day, time) = text.split_once(char::is_whitespace).ok_or_else(expected)?;
        let weekday = day.trim().parse::<Weekday>().map_err(|_| expected())?;
        let time = NaiveTime::parse_from_str(time.trim(), "%H:%M").map_err(|_| expected())?;
        Ok(Some(WeeklySlot { weekday, time }))
    }

    /// The latest occurrence of the slot at or before `now`.
    pub fn latest_at_or_before(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        let days_back =
            (7 + now.weekday().num_days_from_monday() - self.weekday.num_days_from_monday()) % 7;
        let candidate = (now.date_naive() - Duration::days(i64::from(days_back)))
            .and_time(self.time)
            .and_utc();
        if candidate > now {
            candidate - Duration::days(7)
        } else {
            candidate
        }
    }

    /// The slot to fire at `now`, if one is due: the latest occurrence, unless it is older
    /// than `grace` (missed while no scheduler was alive, long ago). Its name identifies it,
    /// so the database fires each slot once.
    pub fn due(&self, now: DateTime<Utc>, grace: Duration) -> Option<String> {
        let latest = self.latest_at_or_before(now);
        (now - latest <= grace).then(|| format!("train_all@{}", latest.format("%Y-%m-%dT%H:%MZ")))
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn at(day: u32, hour: u32, minute: u32) -> DateTime<Utc> {
        // November 2026: the 29th is a Sunday.
        Utc.with_ymd_and_hms(2026, 11, day, hour, minute, 0)
            .unwrap()
    }

    #[test]
    fn parses_day_and_time() {
        let slot = WeeklySlot::parse("Sun 02:00").unwrap().unwrap();
        assert_eq!(slot.weekday, Weekday::Sun);
        assert_eq!(slot.time, NaiveTime::from_hms_opt(2, 0, 0).unwrap());
        assert_eq!(WeeklySlot::parse("  ").unwrap(), None);
        for bad in ["sunday", "sun", "funday 02:00", "sun 25:00", "sun 2"] {
            let error = WeeklySlot::parse(bad).unwrap_err();
            assert!(error.contains(bad.trim()), "{error}");
        }
    }

    #[test]
    fn latest_occurrence_is_at_or_before_now() {
        let slot = WeeklySlot::parse("sun 02:00").unwrap().unwrap();
        assert_eq!(slot.latest_at_or_before(at(29, 2, 0)), at(29, 2, 0));
        assert_eq!(slot.latest_at_or_before(at(29, 1, 59)), at(22, 2, 0));
        assert_eq!(slot.latest_at_or_before(at(25, 12, 0)), at(22, 2, 0));
        let monday = WeeklySlot::parse("mon 00:00").unwrap().unwrap();
        assert_eq!(monday.latest_at_or_before(at(29, 23, 59)), at(23, 0, 0));
    }

    #[test]
    fn a_slot_is_due_within_its_grace_only() {
        let slot = WeeklySlot::parse("sun 02:00").unwrap().unwrap();
        let grace = Duration::hours(6);
        assert_eq!(
            slot.due(at(29, 2, 0), grace).as_deref(),
            Some("train_all@2026-11-29T02:00Z")
        );
        assert_eq!(
            slot.due(at(29, 7, 59), grace).as_deref(),
            Some("train_all@2026-11-29T02:00Z")
        );
        assert_eq!(slot.due(at(29, 8, 1), grace), None);
        assert_eq!(slot.due(at(29, 1, 0), grace), None);
    }
}
