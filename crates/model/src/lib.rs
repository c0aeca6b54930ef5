//! The StreamForge domain model.
//!
//! Everything that flows through the pipeline is described here: a validated
//! [`Tick`], its [`Symbol`], its deterministic [`TickId`], the [`Candle`]s
//! built from ticks, and the JSON wire form used on the bus. This crate does
//! no I/O and knows nothing of tokio, Kafka or SQL.
//!
//! # Layout
//! - [`time`] — [`Timestamp`], microseconds since the Unix epoch, UTC.
//! - [`symbol`] — [`Symbol`], an upper-case instrument name.
//! - [`tick`] — [`Tick`], [`TickInput`], [`TickRules`] and [`TickError`].
//! - [`tick_id`] — the deterministic id and the per-frame occurrence counter.
//! - [`candle`] — [`Candle`], [`Interval`], the mergeable [`CandlePart`] that
//!   rollups are kept in ([`rebucket`] folds them into coarser candles).
//! - [`gap`] — [`Gap`], a span in which a feed may have missed trades.
//! - [`ledger`] — [`Tally`], ingest's counts of a provider's symbol per
//!   minute, for the completeness ledger.
//! - [`wire`] — the JSON codec, which also reads the original tick format.
//! - [`schema`] — the JSON Schemas of the types the API answers with.
//! - [`settings`] — what every configuration section shares: durations as
//!   text, [`settings::Secret`], and [`settings::Invalid`] naming the setting.

pub mod candle;
pub mod gap;
pub mod ledger;
pub mod schema;
pub mod settings;
pub mod symbol;
pub mod tick;
pub mod tick_id;
pub mod time;
pub mod wire;

pub use candle::{rebucket, Candle, CandlePart, Interval, IntervalError, TradeKey};
pub use gap::{Gap, GapReason, GapStatus, Healing, GAP_CONTENT_TYPE};
pub use ledger::{Tally, TALLY_CONTENT_TYPE};
pub use symbol::{Symbol, SymbolInterner};
pub use tick::{Origin, Tick, TickError, TickInput, TickRules};
pub use tick_id::{OccurrenceCounter, TickId};
pub use time::{Timestamp, TimestampError};
