//! [`MemoryCache`]: the latest tick per symbol in process memory.

use std::collections::HashMap;

use async_trait::async_trait;
use parking_lot::RwLock;
use streamforge_model::{Symbol, Tick};

use crate::{Cache, CacheError};

/// An in-process latest-quote cache (`memory://`).
#[derive(Debug, Default)]
pub struct MemoryCache {
    latest: RwLock<HashMap<Symbol, Tick>>,
}

impl MemoryCache {
    pub fn new() -> Self {
        Self::default()
    }
}

/// The newest tick per symbol within a batch, so the shared map is touched
/// once per symbol instead of once per tick.
pub fn newest_per_symbol(ticks: &[Tick]) -> HashMap<&Symbol, &Tick> {
    let mut newest: HashMap<&Symbol, &Tick> = HashMap::new();
    for t in ticks {
        newest
            .entry(t.symbol())
            .and_modify(|cur| {
                if t.sort_key() > cur.sort_key() {
                    *cur = t;
                }
            })
            .or_insert(t);
    }
    newest
}

#[async_trait]
impl Cache for MemoryCache {
    fn kind(&self) -> &'static str {
        "memory"
    }

    async fn update_latest(&self, ticks: &[Tick]) -> Result<usize, CacheError> {
        let newest = newest_per_symbol(ticks);
        let mut map = self.latest.write();
        let mut changed = 0;
        for (symbol, tick) in newest {
            match map.get_mut(symbol) {
                Some(cur) if cur.sort_key() >= tick.sort_key() => {}
                Some(cur) => {
                    *cur = tick.clone();
                    changed += 1;
                }
                None => {
                    map.insert(symbol.clone(), tick.clone());
                    changed += 1;
                }
            }
        }
        Ok(changed)
    }

    async fn latest(&self, symbol: &Symbol) -> Result<Option<Tick>, CacheError> {
        Ok(self.latest.read().get(symbol).cloned())
    }

    async fn ping(&self) -> Result<(), CacheError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tick(symbol: &str, ms: i64, price: f64) -> Tick {
        streamforge_testkit::tick(symbol, ms, price, 1.0)
    }

    #[tokio::test]
    async fn only_newer_ticks_replace_the_latest() {
        let c = MemoryCache::new();
        let t0 = 1_756_325_731_000;
        let aapl = Symbol::parse("AAPL").unwrap();
        assert_eq!(
            c.update_latest(&[tick("AAPL", t0 + 10, 2.0), tick("AAPL", t0, 1.0)])
                .await
                .unwrap(),
            1
        );
        assert_eq!(c.latest(&aapl).await.unwrap().unwrap().price(), 2.0);
        // Older data arriving late does not go back in time.
        assert_eq!(
            c.update_latest(&[tick("AAPL", t0 + 5, 3.0)]).await.unwrap(),
            0
        );
        assert_eq!(c.latest(&aapl).await.unwrap().unwrap().price(), 2.0);
        assert_eq!(
            c.update_latest(&[tick("AAPL", t0 + 20, 4.0), tick("MSFT", t0, 5.0)])
                .await
                .unwrap(),
            2
        );
        assert_eq!(c.latest(&aapl).await.unwrap().unwrap().price(), 4.0);
        assert!(c
            .latest(&Symbol::parse("NONE").unwrap())
            .await
            .unwrap()
            .is_none());
    }
}
