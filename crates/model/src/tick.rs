//! [`Tick`]: one trade, validated.
//!
//! The only way to make a `Tick` is [`Tick::new`] (or [`TickRules::check`]),
//! which validates every field, so the rest of StreamForge trusts a `Tick`
//! without checking it again.

use std::sync::Arc;
use std::time::Duration;

use crate::{Symbol, TickId, Timestamp};

/// Longest exchange code and provider id accepted.
pub const MAX_TAG_LEN: usize = 32;
/// Most condition codes on one trade, and the longest code.
pub const MAX_CONDITIONS: usize = 16;
pub const MAX_CONDITION_LEN: usize = 16;

/// 1990-01-01T00:00:00Z: nothing older is a plausible live or recorded trade.
pub const MIN_TICK_TIME: Timestamp = Timestamp::from_micros(631_152_000_000_000);

/// 9999-12-31T23:59:59.999999Z: the latest `ingested_at` (or gap end)
/// accepted. Every accepted time lies in `[MIN_TICK_TIME, MAX_TICK_TIME]`,
/// so the difference of any two is far inside `i64` microseconds.
pub const MAX_TICK_TIME: Timestamp = Timestamp::from_micros(253_402_300_799_999_999);

/// Longest venue trade id accepted.
pub const MAX_SOURCE_ID_LEN: usize = 64;

/// How a trade reached StreamForge.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// From the provider's live feed.
    #[default]
    Live,
    /// From the venue's history, filling a feed gap.
    Backfill,
}

impl Origin {
    pub const ALL: [Origin; 2] = [Origin::Live, Origin::Backfill];

    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Live => "live",
            Origin::Backfill => "backfill",
        }
    }

    pub fn parse(text: &str) -> Option<Origin> {
        Origin::ALL.into_iter().find(|o| o.as_str() == text)
    }

    /// Whether this is the default, live: the wire form leaves it out.
    pub fn is_live(&self) -> bool {
        *self == Origin::Live
    }
}

/// A validated trade. Fields are read through accessors.
#[derive(Clone, Debug, PartialEq)]
pub struct Tick {
    symbol: Symbol,
    ts: Timestamp,
    price: f64,
    size: f64,
    exchange: Arc<str>,
    src_id: Arc<str>,
    conditions: Vec<String>,
    tick_id: TickId,
    ingested_at: Timestamp,
    source_id: Option<Box<str>>,
    origin: Origin,
}

/// The raw parts of a trade, before validation.
#[derive(Clone, Debug)]
pub struct TickInput {
    pub symbol: Symbol,
    /// Exchange event time.
    pub ts: Timestamp,
    pub price: f64,
    /// 0 when the provider has no size.
    pub size: f64,
    /// Empty when unknown.
    pub exchange: Arc<str>,
    /// Provider id, e.g. `finnhub`.
    pub src_id: Arc<str>,
    pub conditions: Vec<String>,
    /// Index of this trade among identical trades in the same provider frame.
    pub occurrence: u32,
    /// An id already assigned at ingest (decoding from the bus); computed when `None`.
    pub tick_id: Option<TickId>,
    /// When StreamForge received the trade.
    pub ingested_at: Timestamp,
    /// The venue's own id of the trade, when it numbers trades (Binance
    /// `t`, Coinbase `trade_id`); the tick id then derives from it.
    pub source_id: Option<Box<str>>,
    /// Live feed or backfill.
    pub origin: Origin,
}

/// What is wrong with a trade; each variant names the field.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TickError {
    #[error("symbol: {reason} (got {value:?})")]
    Symbol { value: String, reason: &'static str },
    #[error("price: must be a finite number greater than 0 (got {0})")]
    Price(f64),
    #[error("size: must be a finite number of at least 0 (got {0})")]
    Size(f64),
    #[error("price: {value} is not below the limit {max} (ingest.max_price)")]
    PriceTooLarge { value: f64, max: f64 },
    #[error("size: {value} is not below the limit {max} (ingest.max_size)")]
    SizeTooLarge { value: f64, max: f64 },
    #[error("ts: {0} is before 1990-01-01")]
    TooOld(Timestamp),
    #[error("ts: {ts} is more than {skew:?} ahead of the clock ({now})")]
    InFuture {
        ts: Timestamp,
        now: Timestamp,
        skew: Duration,
    },
    #[error("ingested_at: {0} is outside 1990-01-01 to 9999-12-31")]
    IngestedAt(Timestamp),
    #[error("exchange: must be at most 32 printable ASCII characters (got {0:?})")]
    Exchange(String),
    #[error("src_id: must be 1 to 32 characters of a-z 0-9 _ - (got {0:?})")]
    SrcId(String),
    #[error("conditions: at most 16 codes of at most 16 printable ASCII characters each")]
    Conditions,
    #[error("source_id: must be 1 to 64 printable ASCII characters without spaces (got {0:?})")]
    SourceId(String),
}

impl TickError {
    /// The field that failed validation.
    pub fn field(&self) -> &'static str {
        match self {
            TickError::Symbol { .. } => "symbol",
            TickError::Price(_) | TickError::PriceTooLarge { .. } => "price",
            TickError::Size(_) | TickError::SizeTooLarge { .. } => "size",
            TickError::TooOld(_) | TickError::InFuture { .. } => "ts",
            TickError::IngestedAt(_) => "ingested_at",
            TickError::Exchange(_) => "exchange",
            TickError::SrcId(_) => "src_id",
            TickError::Conditions => "conditions",
            TickError::SourceId(_) => "source_id",
        }
    }

    /// A short fixed reason code, used as a metric label and DLQ header.
    pub fn reason(&self) -> &'static str {
        match self {
            TickError::Symbol { .. } => "invalid_symbol",
            TickError::Price(_) => "invalid_price",
            TickError::Size(_) => "invalid_size",
            TickError::PriceTooLarge { .. } => "price_too_large",
            TickError::SizeTooLarge { .. } => "size_too_large",
            TickError::TooOld(_) => "ts_too_old",
            TickError::InFuture { .. } => "ts_in_future",
            TickError::IngestedAt(_) => "invalid_ingested_at",
            TickError::Exchange(_) => "invalid_exchange",
            TickError::SrcId(_) => "invalid_src_id",
            TickError::Conditions => "invalid_conditions",
            TickError::SourceId(_) => "invalid_source_id",
        }
    }
}

/// Default bound on a price: far above any traded instrument.
pub const DEFAULT_MAX_PRICE: f64 = 1e9;
/// Default bound on a size.
pub const DEFAULT_MAX_SIZE: f64 = 1e12;

/// Validation settings that are configurable.
///
/// Prices and sizes are bounded so that everything computed from them
/// (notional `price × size`, sums over a candle or a day, VWAP) stays far
/// inside the range of `f64` and of the store's columns: a price of 1e200
/// is refused here instead of failing a store write.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TickRules {
    /// How far ahead of the wall clock an event time may be (clock skew).
    pub max_future_skew: Duration,
    /// Prices must be below this.
    pub max_price: f64,
    /// Sizes must be below this.
    pub max_size: f64,
}

impl Default for TickRules {
    fn default() -> Self {
        TickRules {
            max_future_skew: Duration::from_secs(300),
            max_price: DEFAULT_MAX_PRICE,
            max_size: DEFAULT_MAX_SIZE,
        }
    }
}

fn printable(s: &str) -> bool {
    s.bytes().all(|b| (0x20..0x7f).contains(&b))
}

impl TickRules {
    /// Validates `input` against these rules with `now` as the wall clock.
    pub fn check(&self, input: TickInput, now: Timestamp) -> Result<Tick, TickError> {
        let TickInput {
            symbol,
            ts,
            price,
            size,
            exchange,
            src_id,
            conditions,
            occurrence,
            tick_id,
            ingested_at,
            source_id,
            origin,
        } = input;
        if !(price.is_finite() && price > 0.0) {
            return Err(TickError::Price(price));
        }
        if !(size.is_finite() && size >= 0.0) {
            return Err(TickError::Size(size));
        }
        if price >= self.max_price {
            return Err(TickError::PriceTooLarge {
                value: price,
                max: self.max_price,
            });
        }
        if size >= self.max_size {
            return Err(TickError::SizeTooLarge {
                value: size,
                max: self.max_size,
            });
        }
        let size = if size == 0.0 { 0.0 } else { size };
        if ts < MIN_TICK_TIME {
            return Err(TickError::TooOld(ts));
        }
        let skew_micros = i64::try_from(self.max_future_skew.as_micros()).unwrap_or(i64::MAX);
        if ts > now.saturating_add_micros(skew_micros) {
            return Err(TickError::InFuture {
                ts,
                now,
                skew: self.max_future_skew,
            });
        }
        if !(MIN_TICK_TIME..=MAX_TICK_TIME).contains(&ingested_at) {
            return Err(TickError::IngestedAt(ingested_at));
        }
        if exchange.len() > MAX_TAG_LEN || !printable(&exchange) {
            return Err(TickError::Exchange(exchange.chars().take(64).collect()));
        }
        if src_id.is_empty()
            || src_id.len() > MAX_TAG_LEN
            || !src_id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
        {
            return Err(TickError::SrcId(src_id.chars().take(64).collect()));
        }
        if conditions.len() > MAX_CONDITIONS
            || conditions
                .iter()
                .any(|c| c.is_empty() || c.len() > MAX_CONDITION_LEN || !printable(c))
        {
            return Err(TickError::Conditions);
        }
        if let Some(id) = &source_id {
            if id.is_empty()
                || id.len() > MAX_SOURCE_ID_LEN
                || !id.bytes().all(|b| (0x21..0x7f).contains(&b))
            {
                return Err(TickError::SourceId(id.chars().take(80).collect()));
            }
        }
        let tick_id = tick_id.unwrap_or_else(|| match &source_id {
            Some(id) => TickId::from_source(&src_id, &symbol, id),
            None => TickId::compute(&src_id, &symbol, ts, price, size, &conditions, occurrence),
        });
        Ok(Tick {
            symbol,
            ts,
            price,
            size,
            exchange,
            src_id,
            conditions,
            tick_id,
            ingested_at,
            source_id,
            origin,
        })
    }
}

impl Tick {
    /// Validates `input` with the given rules against the current wall clock.
    pub fn new(input: TickInput, rules: &TickRules) -> Result<Tick, TickError> {
        rules.check(input, Timestamp::now())
    }

    pub fn symbol(&self) -> &Symbol {
        &self.symbol
    }
    /// Exchange event time.
    pub fn ts(&self) -> Timestamp {
        self.ts
    }
    pub fn price(&self) -> f64 {
        self.price
    }
    pub fn size(&self) -> f64 {
        self.size
    }
    pub fn exchange(&self) -> &str {
        &self.exchange
    }
    pub fn src_id(&self) -> &str {
        &self.src_id
    }
    pub fn conditions(&self) -> &[String] {
        &self.conditions
    }
    pub fn tick_id(&self) -> TickId {
        self.tick_id
    }
    /// When StreamForge received the trade.
    pub fn ingested_at(&self) -> Timestamp {
        self.ingested_at
    }
    /// The venue's id of the trade, when it numbers its trades.
    pub fn source_id(&self) -> Option<&str> {
        self.source_id.as_deref()
    }
    /// Live feed or backfill.
    pub fn origin(&self) -> Origin {
        self.origin
    }

    /// Gives this trade its occurrence index within its frame, which changes
    /// its id. Only meaningful for ticks whose id was computed (not decoded);
    /// a trade with a venue trade id keeps the id derived from it.
    pub fn set_occurrence(&mut self, occurrence: u32) {
        if self.source_id.is_some() {
            return;
        }
        self.tick_id = TickId::compute(
            &self.src_id,
            &self.symbol,
            self.ts,
            self.price,
            self.size,
            &self.conditions,
            occurrence,
        );
    }

    /// Assigns occurrence indexes to a frame of freshly built ticks, so that
    /// identical trades in one frame keep distinct ids.
    pub fn number_identical(frame: &mut [Tick], counter: &mut crate::OccurrenceCounter) {
        if frame.len() < 2 {
            return;
        }
        counter.reset();
        for tick in frame.iter_mut() {
            let n = counter.next(tick.tick_id);
            if n > 0 {
                tick.set_occurrence(n);
            }
        }
    }

    /// Orders ticks as candles and the cache do: by event time, then by the
    /// id as a signed integer (the order SQL `BIGINT` columns sort in).
    pub fn sort_key(&self) -> (Timestamp, i64) {
        (self.ts, self.tick_id.as_i64())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn input() -> TickInput {
        TickInput {
            symbol: Symbol::parse("AAPL").unwrap(),
            ts: Timestamp::from_millis(1_756_325_731_134),
            price: 231.42,
            size: 100.0,
            exchange: Arc::from(""),
            src_id: Arc::from("finnhub"),
            conditions: vec![],
            occurrence: 0,
            tick_id: None,
            ingested_at: Timestamp::from_millis(1_756_325_731_200),
            source_id: None,
            origin: Origin::Live,
        }
    }

    fn check(i: TickInput) -> Result<Tick, TickError> {
        TickRules::default().check(i, Timestamp::from_millis(1_756_325_731_200))
    }

    #[test]
    fn valid_input_makes_a_tick() {
        let t = check(input()).unwrap();
        assert_eq!(t.symbol().as_str(), "AAPL");
        assert_eq!(t.price(), 231.42);
    }

    #[test]
    fn prices_and_sizes_are_bounded_by_the_rules() {
        let t = |price: f64, size: f64| {
            check(TickInput {
                price,
                size,
                ..input()
            })
        };
        let e = t(1e200, 1.0).unwrap_err();
        assert_eq!((e.field(), e.reason()), ("price", "price_too_large"));
        assert!(e.to_string().contains("ingest.max_price"), "{e}");
        let e = t(1.0, 1e200).unwrap_err();
        assert_eq!((e.field(), e.reason()), ("size", "size_too_large"));
        assert!(
            t(DEFAULT_MAX_PRICE, 1.0).is_err(),
            "the bound itself is out"
        );
        assert!(t(DEFAULT_MAX_PRICE * 0.999, DEFAULT_MAX_SIZE * 0.999).is_ok());
        let tight = TickRules {
            max_price: 10.0,
            max_size: 5.0,
            ..TickRules::default()
        };
        let now = Timestamp::from_millis(1_756_325_731_200);
        assert!(tight
            .check(
                TickInput {
                    price: 10.5,
                    ..input()
                },
                now
            )
            .is_err());
        assert!(tight
            .check(
                TickInput {
                    price: 9.5,
                    size: 5.0,
                    ..input()
                },
                now
            )
            .is_err());
        // Within the bounds, notional sums of a million ticks stay finite.
        let notional = DEFAULT_MAX_PRICE * DEFAULT_MAX_SIZE * 1e6;
        assert!(notional.is_finite());
    }

    #[test]
    fn ingested_at_must_be_a_plausible_time() {
        for at in [
            Timestamp::from_micros(i64::MIN),
            Timestamp::from_micros(-1),
            Timestamp::from_micros(i64::MAX),
        ] {
            let e = check(TickInput {
                ingested_at: at,
                ..input()
            })
            .unwrap_err();
            assert_eq!(e.field(), "ingested_at", "{e}");
        }
    }

    #[test]
    fn each_bad_field_is_named() {
        let cases: Vec<(TickInput, &str)> = vec![
            (
                TickInput {
                    price: 0.0,
                    ..input()
                },
                "price",
            ),
            (
                TickInput {
                    price: -1.0,
                    ..input()
                },
                "price",
            ),
            (
                TickInput {
                    price: f64::NAN,
                    ..input()
                },
                "price",
            ),
            (
                TickInput {
                    price: f64::INFINITY,
                    ..input()
                },
                "price",
            ),
            (
                TickInput {
                    size: -0.5,
                    ..input()
                },
                "size",
            ),
            (
                TickInput {
                    size: f64::NAN,
                    ..input()
                },
                "size",
            ),
            (
                TickInput {
                    ts: Timestamp::from_millis(0),
                    ..input()
                },
                "ts",
            ),
            (
                TickInput {
                    ts: Timestamp::from_millis(1_756_325_731_200 + 301_000),
                    ..input()
                },
                "ts",
            ),
            (
                TickInput {
                    exchange: Arc::from("x\n"),
                    ..input()
                },
                "exchange",
            ),
            (
                TickInput {
                    src_id: Arc::from(""),
                    ..input()
                },
                "src_id",
            ),
            (
                TickInput {
                    src_id: Arc::from("Finnhub"),
                    ..input()
                },
                "src_id",
            ),
            (
                TickInput {
                    conditions: vec!["".into()],
                    ..input()
                },
                "conditions",
            ),
        ];
        for (i, field) in cases {
            let err = check(i.clone()).unwrap_err();
            assert_eq!(err.field(), field, "{i:?}");
            assert!(err.to_string().starts_with(field), "{err}");
        }
    }

    #[test]
    fn skew_is_configurable() {
        let now = Timestamp::from_millis(1_756_325_731_200);
        let ahead = TickInput {
            ts: now.saturating_add_micros(60_000_000),
            ..input()
        };
        let strict = TickRules {
            max_future_skew: Duration::from_secs(30),
            ..TickRules::default()
        };
        assert!(strict.check(ahead.clone(), now).is_err());
        assert!(TickRules::default().check(ahead, now).is_ok());
    }

    #[test]
    fn identical_trades_in_a_frame_get_distinct_ids() {
        let mut frame = vec![check(input()).unwrap(), check(input()).unwrap()];
        let mut counter = crate::OccurrenceCounter::default();
        Tick::number_identical(&mut frame, &mut counter);
        assert_ne!(frame[0].tick_id(), frame[1].tick_id());
        // The same frame numbered again gives the same ids: redelivery-safe.
        let mut again = vec![check(input()).unwrap(), check(input()).unwrap()];
        Tick::number_identical(&mut again, &mut counter);
        assert_eq!(frame, again);
    }

    #[test]
    fn three_identical_trades_in_a_frame_get_three_ids() {
        let mut frame = vec![check(input()).unwrap(); 3];
        let mut counter = crate::OccurrenceCounter::default();
        Tick::number_identical(&mut frame, &mut counter);
        let ids: std::collections::HashSet<_> = frame.iter().map(|t| t.tick_id()).collect();
        assert_eq!(ids.len(), 3);
        // One trade alone keeps the id its content gives.
        let mut one = vec![check(input()).unwrap()];
        Tick::number_identical(&mut one, &mut counter);
        assert_eq!(one[0].tick_id(), check(input()).unwrap().tick_id());
        assert_eq!(
            one[0].tick_id(),
            frame[0].tick_id(),
            "the first keeps its id"
        );
    }

    #[test]
    fn limits_are_inclusive_where_documented() {
        let now = Timestamp::from_millis(1_756_325_731_200);
        let rules = TickRules::default();
        // The earliest time accepted is MIN_TICK_TIME itself.
        let at_min = TickInput {
            ts: MIN_TICK_TIME,
            ..input()
        };
        assert!(rules.check(at_min, now).is_ok());
        let before_min = TickInput {
            ts: MIN_TICK_TIME.saturating_add_micros(-1),
            ..input()
        };
        assert!(matches!(
            rules.check(before_min, now),
            Err(TickError::TooOld(_))
        ));
        // Exactly `now + max_future_skew` is accepted, a microsecond more is not.
        let skew = rules.max_future_skew.as_micros() as i64;
        let at_skew = TickInput {
            ts: now.saturating_add_micros(skew),
            ..input()
        };
        assert!(rules.check(at_skew, now).is_ok());
        let past_skew = TickInput {
            ts: now.saturating_add_micros(skew + 1),
            ..input()
        };
        assert!(matches!(
            rules.check(past_skew, now),
            Err(TickError::InFuture { .. })
        ));
        // At most MAX_CONDITIONS condition codes, none empty.
        let codes = |n: usize| (0..n).map(|i| format!("C{i}")).collect::<Vec<_>>();
        let full = TickInput {
            conditions: codes(MAX_CONDITIONS),
            ..input()
        };
        assert!(rules.check(full, now).is_ok());
        let over = TickInput {
            conditions: codes(MAX_CONDITIONS + 1),
            ..input()
        };
        assert!(matches!(rules.check(over, now), Err(TickError::Conditions)));
        let one_empty = TickInput {
            conditions: vec!["1".into(), String::new()],
            ..input()
        };
        assert!(matches!(
            rules.check(one_empty, now),
            Err(TickError::Conditions)
        ));
        let too_long = TickInput {
            conditions: vec!["X".repeat(MAX_CONDITION_LEN + 1)],
            ..input()
        };
        assert!(matches!(
            rules.check(too_long, now),
            Err(TickError::Conditions)
        ));
        let longest = TickInput {
            conditions: vec!["X".repeat(MAX_CONDITION_LEN)],
            ..input()
        };
        assert!(rules.check(longest, now).is_ok());
    }
}
