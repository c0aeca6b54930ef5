//! [`PgTime`]: a [`Timestamp`] as PostgreSQL's binary `timestamptz`
//! (microseconds since 2000-01-01), without going through chrono.

use std::error::Error;

use bytes::BytesMut;
use postgres_types::{accepts, to_sql_checked, FromSql, IsNull, ToSql, Type};
use streamforge_model::Timestamp;

/// Microseconds from the Unix epoch to PostgreSQL's epoch (2000-01-01).
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;
/// The finite range of `timestamptz`, relative to PostgreSQL's epoch.
const PG_MIN: i64 = -211_813_488_000_000_000;
const PG_MAX: i64 = 9_223_371_331_199_999_999;

/// A timestamp parameter or column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PgTime(pub Timestamp);

impl ToSql for PgTime {
    fn to_sql(
        &self,
        _ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        // Open bounds travel as -infinity / infinity; the rest is clamped
        // to what the type can hold.
        let v = match self.0 {
            Timestamp::MIN => i64::MIN,
            Timestamp::MAX => i64::MAX,
            t => t
                .as_micros()
                .saturating_sub(PG_EPOCH_MICROS)
                .clamp(PG_MIN, PG_MAX),
        };
        v.to_sql(&Type::INT8, out)
    }

    accepts!(TIMESTAMPTZ, TIMESTAMP);
    to_sql_checked!();
}

impl<'a> FromSql<'a> for PgTime {
    fn from_sql(_ty: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn Error + Sync + Send>> {
        let micros = i64::from_sql(&Type::INT8, raw)?;
        Ok(PgTime(Timestamp::from_micros(
            micros.saturating_add(PG_EPOCH_MICROS),
        )))
    }

    accepts!(TIMESTAMPTZ, TIMESTAMP);
}
