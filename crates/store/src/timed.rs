//! [`Timed`]: a store whose every call has a deadline.
//!
//! A database that accepts connections but answers nothing (a frozen
//! server, a network black hole) would otherwise hold a caller forever;
//! with the deadline the call fails with [`StoreError::Timeout`], which is
//! retryable: persist retries the write, the API answers `503`, and both
//! recover by themselves once the database answers again.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use streamforge_model::{Candle, Gap, Symbol, Tally, Tick};

use crate::{
    CandleQuery, GapQuery, StoreError, SymbolInfo, TickBatch, TickQuery, TickStore, WriteOutcome,
};

/// `inner` with a deadline on every call.
pub struct Timed {
    inner: Arc<dyn TickStore>,
    after: Duration,
}

impl Timed {
    pub fn new(inner: Arc<dyn TickStore>, after: Duration) -> Self {
        Timed { inner, after }
    }

    async fn run<T>(
        &self,
        what: &'static str,
        call: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(self.after, call).await {
            Ok(r) => r,
            Err(_) => Err(StoreError::Timeout {
                what,
                after: self.after,
            }),
        }
    }
}

#[async_trait]
impl TickStore for Timed {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }

    async fn write_counted(
        &self,
        batch: TickBatch,
        tallies: &[Tally],
    ) -> Result<WriteOutcome, StoreError> {
        self.run("writing ticks", self.inner.write_counted(batch, tallies))
            .await
    }

    async fn ticks(&self, query: TickQuery) -> Result<Vec<Tick>, StoreError> {
        self.run("reading ticks", self.inner.ticks(query)).await
    }

    async fn candles(&self, query: CandleQuery) -> Result<Vec<Candle>, StoreError> {
        self.run("reading candles", self.inner.candles(query)).await
    }

    async fn symbols(&self) -> Result<Vec<SymbolInfo>, StoreError> {
        self.run("listing symbols", self.inner.symbols()).await
    }

    async fn symbol(&self, symbol: &Symbol) -> Result<Option<SymbolInfo>, StoreError> {
        self.run("reading a symbol", self.inner.symbol(symbol))
            .await
    }

    async fn latest(&self, symbol: &Symbol) -> Result<Option<Tick>, StoreError> {
        self.run("reading the latest tick", self.inner.latest(symbol))
            .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.run("ping", self.inner.ping()).await
    }

    async fn write_gaps(&self, gaps: &[Gap]) -> Result<(), StoreError> {
        self.run("writing gaps", self.inner.write_gaps(gaps)).await
    }

    async fn gaps(&self, query: GapQuery) -> Result<Vec<Gap>, StoreError> {
        self.run("reading gaps", self.inner.gaps(query)).await
    }

    async fn unhealed_gaps(&self, provider: &str, limit: usize) -> Result<Vec<Gap>, StoreError> {
        self.run(
            "reading unhealed gaps",
            self.inner.unhealed_gaps(provider, limit),
        )
        .await
    }

    async fn minute_counts(
        &self,
        symbol: &Symbol,
        from: streamforge_model::Timestamp,
        to: streamforge_model::Timestamp,
    ) -> Result<Vec<crate::MinuteCount>, StoreError> {
        self.run(
            "reading the ledger",
            self.inner.minute_counts(symbol, from, to),
        )
        .await
    }

    async fn housekeeping(&self) -> Result<(), StoreError> {
        // Upkeep may drop or compress large partitions: no deadline beyond
        // the server's own statement timeout.
        self.inner.housekeeping().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store that never answers, like a frozen database.
    struct Frozen;

    #[async_trait]
    impl TickStore for Frozen {
        fn kind(&self) -> &'static str {
            "frozen"
        }
        async fn write_counted(
            &self,
            _: TickBatch,
            _: &[Tally],
        ) -> Result<WriteOutcome, StoreError> {
            std::future::pending().await
        }
        async fn ticks(&self, _: TickQuery) -> Result<Vec<Tick>, StoreError> {
            std::future::pending().await
        }
        async fn candles(&self, _: CandleQuery) -> Result<Vec<Candle>, StoreError> {
            std::future::pending().await
        }
        async fn symbols(&self) -> Result<Vec<SymbolInfo>, StoreError> {
            std::future::pending().await
        }
        async fn symbol(&self, _: &Symbol) -> Result<Option<SymbolInfo>, StoreError> {
            std::future::pending().await
        }
        async fn latest(&self, _: &Symbol) -> Result<Option<Tick>, StoreError> {
            std::future::pending().await
        }
        async fn ping(&self) -> Result<(), StoreError> {
            std::future::pending().await
        }
        async fn write_gaps(&self, _: &[Gap]) -> Result<(), StoreError> {
            std::future::pending().await
        }
        async fn gaps(&self, _: GapQuery) -> Result<Vec<Gap>, StoreError> {
            std::future::pending().await
        }
        async fn unhealed_gaps(&self, _: &str, _: usize) -> Result<Vec<Gap>, StoreError> {
            std::future::pending().await
        }
        async fn minute_counts(
            &self,
            _: &Symbol,
            _: streamforge_model::Timestamp,
            _: streamforge_model::Timestamp,
        ) -> Result<Vec<crate::MinuteCount>, StoreError> {
            std::future::pending().await
        }
    }

    #[tokio::test]
    async fn a_store_that_never_answers_times_out_with_a_retryable_error() {
        let store = Timed::new(Arc::new(Frozen), Duration::from_millis(50));
        let e = store.ping().await.unwrap_err();
        assert!(e.is_retryable() && !e.is_data_error(), "{e}");
        assert!(
            e.to_string().contains("ping") && e.to_string().contains("50ms"),
            "{e}"
        );
        let e = store.write_batch(Arc::from(Vec::new())).await.unwrap_err();
        assert!(
            matches!(
                e,
                StoreError::Timeout {
                    what: "writing ticks",
                    ..
                }
            ),
            "{e}"
        );
        let e = store.symbols().await.unwrap_err();
        assert!(e.is_retryable(), "{e}");
    }

    /// Within the deadline every call gives what the store gives.
    #[tokio::test]
    async fn a_store_that_answers_is_passed_through() {
        use streamforge_model::{GapReason, Interval, Timestamp};

        let dir = tempfile::tempdir().unwrap();
        let inner = Arc::new(
            crate::SqliteStore::open(dir.path().join("t.db"))
                .await
                .unwrap(),
        );
        let store = Timed::new(inner.clone(), Duration::from_secs(30));
        assert_eq!(store.kind(), inner.kind());
        let t0 = 1_756_325_700_000;
        let ticks: Vec<Tick> = (0..3)
            .map(|i| streamforge_testkit::tick("AAPL", t0 + i * 1_000, 10.0 + i as f64, 1.0))
            .collect();
        let outcome = store.write_batch(Arc::from(ticks.clone())).await.unwrap();
        assert_eq!((outcome.inserted, outcome.duplicates), (3, 0));
        let aapl = Symbol::parse("AAPL").unwrap();
        let query = TickQuery {
            symbol: aapl.clone(),
            from: Timestamp::MIN,
            to: Timestamp::MAX,
            limit: 10,
            order: crate::Order::Asc,
        };
        assert_eq!(store.ticks(query).await.unwrap(), ticks);
        assert_eq!(store.latest(&aapl).await.unwrap(), Some(ticks[2].clone()));
        let candles = store
            .candles(CandleQuery {
                symbol: aapl.clone(),
                interval: Interval::M1,
                from: Timestamp::MIN,
                to: Timestamp::MAX,
                limit: 10,
            })
            .await
            .unwrap();
        assert_eq!(candles.len(), 1);
        assert_eq!(candles[0].trades, 3);
        assert_eq!(store.symbols().await.unwrap()[0].ticks, 3);
        assert_eq!(store.symbol(&aapl).await.unwrap().unwrap().ticks, 3);
        let gap = Gap {
            provider: "finnhub".into(),
            connection: 0,
            symbol: aapl.clone(),
            from: Timestamp::from_millis(t0),
            to: Timestamp::from_millis(t0 + 5_000),
            reason: GapReason::Disconnected,
            healing: streamforge_model::Healing::default(),
        };
        store.write_gaps(std::slice::from_ref(&gap)).await.unwrap();
        let gaps = store
            .gaps(GapQuery {
                symbol: Some(aapl),
                from: Timestamp::MIN,
                to: Timestamp::MAX,
                limit: 10,
            })
            .await
            .unwrap();
        assert_eq!(gaps, vec![gap]);
        store.ping().await.unwrap();
        store.housekeeping().await.unwrap();
    }
}
