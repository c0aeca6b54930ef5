//! Coinbase Exchange's trade history: `GET /products/{id}/trades?after=&limit=`
//! — newest first, at most 1000 a page, paged only by trade id: `after=N`
//! answers the trades older than N. A gap's ids `first..=last` are read
//! from `after=last+1` down until the page reaches `first`. Public limit:
//! 10 requests a second.

use serde::Deserialize;
use streamforge_model::Timestamp;

use crate::venue::HistoryRow;

/// One page of the trades older than `cursor` (first: older than `last + 1`).
pub(super) fn url(base: &str, native: &str, _first: u64, last: u64, cursor: Option<u64>) -> String {
    format!(
        "{}/products/{native}/trades?after={}&limit=1000",
        base.trim_end_matches('/'),
        cursor.unwrap_or(last.saturating_add(1))
    )
}

#[derive(Deserialize)]
struct Row {
    trade_id: u64,
    price: String,
    size: String,
    /// RFC 3339.
    time: String,
}

/// The rows of a page.
pub(super) fn rows(body: &[u8]) -> Result<Vec<HistoryRow>, String> {
    let rows: Vec<Row> = serde_json::from_slice(body).map_err(|e| format!("trades: {e}"))?;
    rows.into_iter()
        .map(|r| {
            Ok(HistoryRow {
                id: r.trade_id,
                time: Timestamp::parse(&r.time)
                    .map_err(|_| format!("trades: time {:?} of trade {}", r.time, r.trade_id))?,
                price: r.price,
                size: r.size,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_go_down_from_the_last_id_and_read_as_documented() {
        assert_eq!(
            url("https://api.exchange.coinbase.com", "BTC-USD", 10, 20, None),
            "https://api.exchange.coinbase.com/products/BTC-USD/trades?after=21&limit=1000"
        );
        assert_eq!(
            url("http://127.0.0.1:1/", "BTC-USD", 10, 20, Some(15)),
            "http://127.0.0.1:1/products/BTC-USD/trades?after=15&limit=1000"
        );
        let got = rows(include_bytes!("test_data/trades.json")).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!((got[0].id, got[1].id), (74, 73), "newest first");
        assert_eq!(
            got[0].time,
            Timestamp::parse("2014-11-07T22:19:28.578544Z").unwrap()
        );
        assert_eq!(got[1].price, "10.00000000");
        assert!(
            rows(br#"[{"trade_id":1,"price":"1","size":"1","time":"soon"}]"#)
                .unwrap_err()
                .contains("soon")
        );
        assert!(rows(br#"{"message":"NotFound"}"#).is_err());
    }
}
