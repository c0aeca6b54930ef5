//! Binance's trade history: `GET /api/v3/historicalTrades?symbol=&fromId=&limit=`
//! (oldest first, at most 1000 a page, weight 25; no key needed on
//! binance.com, a key on Binance.US). Its `id` is the stream's `t`, so a
//! gap's missing ids are asked for exactly (`aggTrades` numbers aggregates
//! in another id space and is not used).

use serde::Deserialize;
use streamforge_model::Timestamp;

use crate::venue::HistoryRow;

/// Most trades Binance answers in one page.
const PAGE: u64 = 1_000;

/// One page from `cursor` (or the gap's first id) on.
pub(super) fn url(base: &str, native: &str, first: u64, last: u64, cursor: Option<u64>) -> String {
    let from = cursor.unwrap_or(first);
    let limit = (last.saturating_sub(from) + 1).clamp(1, PAGE);
    format!(
        "{}/api/v3/historicalTrades?symbol={native}&fromId={from}&limit={limit}",
        base.trim_end_matches('/')
    )
}

#[derive(Deserialize)]
struct Row {
    id: u64,
    price: String,
    qty: String,
    /// Epoch milliseconds.
    time: i64,
}

/// The rows of a page.
pub(super) fn rows(body: &[u8]) -> Result<Vec<HistoryRow>, String> {
    let rows: Vec<Row> =
        serde_json::from_slice(body).map_err(|e| format!("historicalTrades: {e}"))?;
    Ok(rows
        .into_iter()
        .map(|r| HistoryRow {
            id: r.id,
            price: r.price,
            size: r.qty,
            time: Timestamp::from_millis(r.time),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_are_asked_by_id_and_read_as_documented() {
        assert_eq!(
            url("https://api.binance.com/", "BTCUSDT", 100, 5_000, None),
            "https://api.binance.com/api/v3/historicalTrades?symbol=BTCUSDT&fromId=100&limit=1000"
        );
        assert_eq!(
            url("http://127.0.0.1:1", "BTCUSDT", 100, 120, Some(110)),
            "http://127.0.0.1:1/api/v3/historicalTrades?symbol=BTCUSDT&fromId=110&limit=11"
        );
        let got = rows(include_bytes!("test_data/historical_trades.json")).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].id, 28457);
        assert_eq!(got[0].price, "4.00000100");
        assert_eq!(got[0].size, "12.00000000");
        assert_eq!(got[0].time, Timestamp::from_millis(1_499_865_549_590));
        assert!(rows(br#"{"code":-1121,"msg":"Invalid symbol."}"#)
            .unwrap_err()
            .starts_with("historicalTrades:"));
    }
}
