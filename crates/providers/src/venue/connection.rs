//! One venue WebSocket connection: connect and subscribe, read frames
//! through the venue's parser, follow trade ids, renew before the venue's
//! lifetime runs out, and reconnect with backoff, recording every outage.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::{SinkExt, StreamExt};
use rand::Rng;
use streamforge_model::{Gap, GapReason, GapStatus, Healing, Symbol, TickRules, Timestamp};
use streamforge_telemetry::events::FrameKind;
use streamforge_telemetry::{Event, Health, Metrics};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::{self, Message as WsMessage};
use tokio_util::sync::CancellationToken;

use super::events::{
    ConnectFailed, Connected, Disconnected, FrameTooLarge, GapHealEnded, GapRecorded, Reconnecting,
    Renewing, SequenceGap, ServerError, WentSilent,
};
use super::sequence::{Missed, Seen, SequenceTracker};
use super::{symbol_check, Parsed, Venue, VenueConfig, VenueParser};
use crate::{ProviderError, ProviderFrame, Rejected};

/// How long a jump in trade ids may wait for the missing trades to come
/// late (out of order) before it is a gap.
const REORDER_GRACE: Duration = Duration::from_secs(1);

/// Longest wait for a connection (TCP, TLS, the upgrade and the subscription).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest WebSocket message taken from a venue: far above any trade
/// message, well below the bus's message limit. A larger one is refused
/// before it is buffered, dead-lettered (without its content), and the
/// connection is made again.
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Why reading a connection ended.
enum Ended {
    /// Shutdown: no gap.
    Cancelled,
    /// The feed was down from `since` (the last message received).
    Down { since: Timestamp, reason: GapReason },
    /// A successor, subscribed and overlapped, takes over.
    Replaced(Box<Socket>),
}

/// One connection and the symbols it carries.
pub(super) struct Connection<V: Venue> {
    pub id: u32,
    pub url: String,
    pub symbols: Vec<Symbol>,
    pub config: VenueConfig,
    pub rules: TickRules,
    pub metrics: Metrics,
    pub health: Health,
    /// Gaps whose missing trade ids are known go to the healer here.
    pub heal: mpsc::Sender<Gap>,
    /// Outages of an earlier run whose last missed id is not known yet.
    pub resume: Vec<Gap>,
    pub venue: PhantomData<V>,
}

fn closed<V: Venue>() -> ProviderError {
    ProviderError::OutputClosed { provider: V::ID }
}

impl<V: Venue> Connection<V> {
    pub async fn run(
        self,
        out: mpsc::Sender<ProviderFrame>,
        cancel: CancellationToken,
    ) -> Result<(), ProviderError> {
        let mut parser = V::Parser::default();
        let mut ids = SequenceTracker::default();
        let mut backoff = self.config.backoff_min;
        // Set while the feed is down: since when, and why.
        let mut down: Option<(Timestamp, GapReason)> = None;
        let mut successor: Option<Box<Socket>> = None;
        // Per symbol, the last outage whose missed ids are not known yet.
        let mut outages: HashMap<Symbol, Gap> = HashMap::new();
        for g in &self.resume {
            if let Some(first) = g.healing.first_id {
                ids.resume_at(&g.symbol, first.saturating_sub(1), g.from);
                outages.insert(g.symbol.clone(), g.clone());
            }
        }
        let mut attempts: u64 = 0;
        loop {
            if cancel.is_cancelled() {
                return self.close_gap(&out, down, &ids).await;
            }
            let ws = match successor.take() {
                Some(ws) => ws,
                None => {
                    if attempts > 0 {
                        Reconnecting { provider: V::ID }.emit(&self.metrics);
                    }
                    attempts += 1;
                    match self.open().await {
                        Ok(ws) => {
                            Connected {
                                provider: V::ID,
                                connection: self.id,
                                symbols: self.symbols.len(),
                                successor: false,
                            }
                            .emit(&self.metrics);
                            Box::new(ws)
                        }
                        Err(e) => {
                            down.get_or_insert((Timestamp::now(), GapReason::Disconnected));
                            ConnectFailed {
                                provider: V::ID,
                                connection: self.id,
                                error: &e,
                            }
                            .emit(&self.metrics);
                            let pause = next_backoff(&mut backoff, self.config.backoff_max);
                            tokio::select! {
                                _ = cancel.cancelled() => return self.close_gap(&out, down, &ids).await,
                                _ = tokio::time::sleep(pause) => continue,
                            }
                        }
                    }
                }
            };
            if let Some((from, reason)) = down.take() {
                for g in self
                    .send_gaps(&out, from, Timestamp::now(), reason, &ids, &outages)
                    .await?
                {
                    outages.insert(g.symbol.clone(), g);
                }
            }
            backoff = self.config.backoff_min;
            let ended = self
                .read(*ws, &mut parser, &mut ids, &mut outages, &out, &cancel)
                .await?;
            Disconnected {
                provider: V::ID,
                connection: self.id,
                reason: match &ended {
                    Ended::Down { reason, .. } => Some(*reason),
                    _ => None,
                },
            }
            .emit(&self.metrics);
            match ended {
                Ended::Cancelled => {
                    // Holes still open at shutdown are gaps too, and so is
                    // the time until the next run: from each symbol's last
                    // trade, closed (and healed) by its first trade then.
                    let holes = ids.reconnected(&self.symbols);
                    self.send_sequence_gaps(&out, holes).await?;
                    return self.send_downtime(&out, &ids, &outages).await;
                }
                Ended::Down { since, reason } => {
                    // Holes open now are gaps; what the outage takes is
                    // known when the first trade after it arrives.
                    let holes = ids.reconnected(&self.symbols);
                    self.send_sequence_gaps(&out, holes).await?;
                    down = Some((since, reason));
                }
                Ended::Replaced(next) => successor = Some(next),
            }
        }
    }

    /// Connects and subscribes, within [`CONNECT_TIMEOUT`].
    async fn open(&self) -> Result<Socket, String> {
        let limits = tungstenite::protocol::WebSocketConfig::default()
            .max_message_size(Some(MAX_MESSAGE_BYTES))
            .max_frame_size(Some(MAX_MESSAGE_BYTES));
        let url = &self.url;
        let attempt =
            async {
                let mut ws =
                    match tokio_tungstenite::connect_async_with_config(url, Some(limits), false)
                        .await
                    {
                        Ok((ws, _)) => ws,
                        Err(tungstenite::Error::Http(res)) => {
                            return Err(format!(
                                "{url} answered HTTP {} to the upgrade",
                                res.status()
                            ))
                        }
                        Err(e) => return Err(format!("{url}: {e}")),
                    };
                for msg in V::subscribe(&self.symbols) {
                    ws.feed(WsMessage::text(msg))
                        .await
                        .map_err(|e| format!("subscribing on {url}: {e}"))?;
                }
                ws.flush()
                    .await
                    .map_err(|e| format!("subscribing on {url}: {e}"))?;
                Ok(ws)
            };
        match tokio::time::timeout(CONNECT_TIMEOUT, attempt).await {
            Ok(r) => r,
            Err(_) => Err(format!("no connection to {url} within {CONNECT_TIMEOUT:?}")),
        }
    }

    /// Reads until the connection ends, goes silent, is replaced, or shutdown.
    async fn read(
        &self,
        mut ws: Socket,
        parser: &mut V::Parser,
        ids: &mut SequenceTracker,
        outages: &mut HashMap<Symbol, Gap>,
        out: &mpsc::Sender<ProviderFrame>,
        cancel: &CancellationToken,
    ) -> Result<Ended, ProviderError> {
        let feed = crate::feed_check(V::ID);
        let mut last = Timestamp::now();
        let mut renew_at = Instant::now() + self.config.max_lifetime;
        // A successor being made, then one subscribed and overlapping.
        let mut making: Option<BoxFuture<'_, Result<Socket, String>>> = None;
        let mut handover: Option<(Socket, Instant)> = None;
        let far = Instant::now() + Duration::from_secs(86_400 * 365);
        loop {
            let renewing = making.is_some() || handover.is_some();
            let handover_at = handover.as_ref().map_or(far, |h| h.1);
            let next = tokio::select! {
                _ = cancel.cancelled() => {
                    let _ = ws.close(None).await;
                    if let Some((mut next, _)) = handover.take() {
                        let _ = next.close(None).await;
                    }
                    return Ok(Ended::Cancelled);
                }
                _ = tokio::time::sleep_until(renew_at), if !renewing => {
                    Renewing { provider: V::ID, connection: self.id, why: "lifetime" }.emit(&self.metrics);
                    making = Some(Box::pin(self.open()));
                    continue;
                }
                made = async {
                    match making.as_mut() {
                        Some(f) => f.await,
                        None => std::future::pending().await,
                    }
                } => {
                    making = None;
                    match made {
                        Ok(next) => {
                            Connected {
                                provider: V::ID,
                                connection: self.id,
                                symbols: self.symbols.len(),
                                successor: true,
                            }
                            .emit(&self.metrics);
                            handover = Some((next, Instant::now() + self.config.overlap));
                        }
                        Err(e) => {
                            ConnectFailed { provider: V::ID, connection: self.id, error: &e }
                                .emit(&self.metrics);
                            // This connection still works: try again later.
                            renew_at = Instant::now() + self.config.backoff_max;
                        }
                    }
                    continue;
                }
                _ = tokio::time::sleep_until(handover_at), if handover.is_some() => {
                    let _ = ws.close(None).await;
                    return Ok(match handover.take() {
                        Some((next, _)) => Ended::Replaced(Box::new(next)),
                        None => Ended::Down { since: last, reason: GapReason::Disconnected },
                    });
                }
                n = tokio::time::timeout(self.config.silence, ws.next()) => n,
            };
            let msg = match next {
                Err(_) => {
                    WentSilent {
                        provider: V::ID,
                        connection: self.id,
                        silence: self.config.silence,
                    }
                    .emit(&self.metrics);
                    return Ok(self.lost(last, GapReason::Silent, handover));
                }
                Ok(None) => return Ok(self.lost(last, GapReason::Disconnected, handover)),
                Ok(Some(Err(tungstenite::Error::Capacity(e)))) => {
                    let error = format!(
                        "frame: the server sent a message over {MAX_MESSAGE_BYTES} bytes ({e}); the connection is made again"
                    );
                    FrameTooLarge {
                        provider: V::ID,
                        connection: self.id,
                        error: &error,
                    }
                    .emit(&self.metrics);
                    let frame = ProviderFrame {
                        provider: V::ID,
                        rejects: vec![Rejected::new(Vec::new(), "frame_too_large", error)],
                        ..ProviderFrame::default()
                    };
                    out.send(frame).await.map_err(|_| closed::<V>())?;
                    return Ok(self.lost(last, GapReason::Disconnected, handover));
                }
                Ok(Some(Err(e))) => {
                    tracing::debug!(provider = V::ID, connection = self.id, error = %e, "read failed");
                    return Ok(self.lost(last, GapReason::Disconnected, handover));
                }
                Ok(Some(Ok(m))) => m,
            };
            let received = Timestamp::now();
            last = received;
            self.health.set(&feed, true, "");
            self.health.seen(&feed);
            let raw: &[u8] = match &msg {
                WsMessage::Text(t) => t.as_bytes(),
                WsMessage::Binary(b) => b,
                // Pings are answered by the library; they show the
                // connection is alive. A close frame ends the stream next.
                _ => continue,
            };
            match parser.parse(raw, &self.rules, received, received) {
                Parsed::Trades { ticks, rejects } => {
                    self.metrics.provider_frame(V::ID, FrameKind::Trade);
                    let mut frame = self.trades(ticks, rejects, ids, outages, received);
                    frame
                        .gaps
                        .extend(self.sequence_gaps(ids.expired(received, REORDER_GRACE)));
                    let overflow = self.queue_heals(&frame.gaps);
                    frame.gaps.extend(overflow);
                    out.send(frame).await.map_err(|_| closed::<V>())?;
                    continue;
                }
                Parsed::Heartbeat {
                    symbol,
                    last_trade_id,
                } => {
                    self.metrics.provider_frame(V::ID, FrameKind::Control);
                    if self.symbols.contains(&symbol) {
                        ids.heartbeat(&symbol, last_trade_id, received);
                    }
                }
                Parsed::Control => self.metrics.provider_frame(V::ID, FrameKind::Control),
                Parsed::Shutdown => {
                    self.metrics.provider_frame(V::ID, FrameKind::Control);
                    if making.is_none() && handover.is_none() {
                        Renewing {
                            provider: V::ID,
                            connection: self.id,
                            why: "shutdown notice",
                        }
                        .emit(&self.metrics);
                        making = Some(Box::pin(self.open()));
                    }
                }
                Parsed::Error(message) => ServerError {
                    provider: V::ID,
                    connection: self.id,
                    message: &message,
                }
                .emit(&self.metrics),
                Parsed::Malformed(mut r) => {
                    self.metrics.provider_frame(V::ID, FrameKind::Malformed);
                    // Only this connection's symbols are counted per symbol.
                    if r.trade
                        .as_ref()
                        .is_some_and(|(s, _)| !self.symbols.contains(s))
                    {
                        r.trade = None;
                    }
                    let frame = ProviderFrame {
                        provider: V::ID,
                        rejects: vec![r],
                        ..ProviderFrame::default()
                    };
                    out.send(frame).await.map_err(|_| closed::<V>())?;
                }
            }
            let holes = ids.expired(received, REORDER_GRACE);
            self.send_sequence_gaps(out, holes).await?;
        }
    }

    /// The connection was lost; a successor already subscribed takes over
    /// without a gap.
    fn lost(
        &self,
        since: Timestamp,
        reason: GapReason,
        handover: Option<(Socket, Instant)>,
    ) -> Ended {
        match handover {
            Some((next, _)) => Ended::Replaced(Box::new(next)),
            None => Ended::Down { since, reason },
        }
    }

    /// A frame of trades: those of symbols not subscribed here are refused
    /// (per-symbol state downstream stays bounded by the configured
    /// universe), and jumps in trade ids become gaps.
    fn trades(
        &self,
        mut ticks: Vec<streamforge_model::Tick>,
        mut rejects: Vec<Rejected>,
        ids: &mut SequenceTracker,
        outages: &mut HashMap<Symbol, Gap>,
        received: Timestamp,
    ) -> ProviderFrame {
        if ticks.iter().any(|t| !self.symbols.contains(t.symbol())) {
            let (kept, foreign): (Vec<_>, Vec<_>) = ticks
                .into_iter()
                .partition(|t| self.symbols.contains(t.symbol()));
            ticks = kept;
            rejects.extend(foreign.into_iter().map(|t| {
                Rejected::new(
                    streamforge_model::wire::encode(&t),
                    "unsubscribed_symbol",
                    format!(
                        "symbol: {} is not subscribed on this connection",
                        t.symbol()
                    ),
                )
            }));
        }
        let mut seen: Vec<&Symbol> = Vec::new();
        let mut gaps = Vec::new();
        let mut duplicates = Vec::new();
        let at = received.as_micros() as f64 / 1e6;
        for t in &ticks {
            if let Some(id) = t.source_id().and_then(|s| s.parse::<u64>().ok()) {
                let known = ids.trade(t.symbol(), id, t.ts(), received);
                if known == Seen::Repeat {
                    duplicates.push((t.symbol().clone(), t.ts()));
                }
                if let Seen::Resumed { first, last } = known {
                    // The outage's missed ids are known now: it can heal.
                    if let Some(mut g) = outages.remove(t.symbol()) {
                        // It lasted until this trade came.
                        g.to = g.to.max(received);
                        if last >= first {
                            g.healing.first_id = Some(first);
                            g.healing.last_id = Some(last);
                        } else {
                            g.healing = Healing {
                                status: GapStatus::Healed,
                                detail: "no trade was missed".into(),
                                ..Healing::default()
                            };
                            GapHealEnded {
                                provider: V::ID,
                                gap: &g,
                            }
                            .emit(&self.metrics);
                        }
                        gaps.push(g);
                    }
                }
            }
            if !seen.contains(&t.symbol()) {
                seen.push(t.symbol());
                self.health.seen(&symbol_check(V::ID, t.symbol()));
                self.metrics
                    .provider_symbol_trade(V::ID, t.symbol().as_str(), at);
            }
        }
        ProviderFrame {
            provider: V::ID,
            ticks,
            rejects,
            gaps,
            duplicates,
        }
    }

    /// Hands the gaps whose missed ids are known to the healer; those it
    /// has no room for are answered here, as unrecoverable.
    fn queue_heals(&self, gaps: &[Gap]) -> Vec<Gap> {
        if !self.config.history {
            return Vec::new();
        }
        let mut given_up = Vec::new();
        for g in gaps {
            if g.healing.first_id.is_none()
                || g.healing.last_id.is_none()
                || g.healing.status.is_final()
            {
                continue;
            }
            if let Err(mpsc::error::TrySendError::Full(mut g)) = self.heal.try_send(g.clone()) {
                g.healing.status = GapStatus::Unrecoverable;
                g.healing.detail = format!(
                    "more than {} gaps were waiting to heal",
                    super::backfill::QUEUE
                );
                GapHealEnded {
                    provider: V::ID,
                    gap: &g,
                }
                .emit(&self.metrics);
                given_up.push(g);
            }
        }
        given_up
    }

    /// The gaps of missed trade ids, each logged and counted.
    fn sequence_gaps(&self, missed: Vec<Missed>) -> Vec<Gap> {
        missed
            .into_iter()
            .map(|m| {
                SequenceGap {
                    provider: V::ID,
                    connection: self.id,
                    symbol: &m.symbol,
                    first: m.first,
                    last: m.last,
                    from: m.since,
                    to: m.until,
                }
                .emit(&self.metrics);
                Gap {
                    provider: V::ID.to_string(),
                    connection: self.id,
                    symbol: m.symbol,
                    from: m.since,
                    to: m.until,
                    reason: GapReason::Sequence,
                    healing: Healing {
                        first_id: Some(m.first),
                        last_id: Some(m.last),
                        ..Healing::default()
                    },
                }
            })
            .collect()
    }

    async fn send_sequence_gaps(
        &self,
        out: &mpsc::Sender<ProviderFrame>,
        missed: Vec<Missed>,
    ) -> Result<(), ProviderError> {
        if missed.is_empty() {
            return Ok(());
        }
        let mut gaps = self.sequence_gaps(missed);
        let overflow = self.queue_heals(&gaps);
        gaps.extend(overflow);
        let frame = ProviderFrame {
            provider: V::ID,
            gaps,
            ..ProviderFrame::default()
        };
        out.send(frame).await.map_err(|_| closed::<V>())
    }

    /// At shutdown: a `downtime` gap per symbol, from its last trade (or
    /// now), with the first id it may miss; an outage still waiting for its
    /// last id stays as it is (the next run closes it).
    async fn send_downtime(
        &self,
        out: &mpsc::Sender<ProviderFrame>,
        ids: &SequenceTracker,
        outages: &HashMap<Symbol, Gap>,
    ) -> Result<(), ProviderError> {
        let now = Timestamp::now();
        let gaps: Vec<Gap> = self
            .symbols
            .iter()
            .filter(|s| !outages.contains_key(*s))
            .map(|s| Gap {
                provider: V::ID.to_string(),
                connection: self.id,
                symbol: s.clone(),
                from: ids.last_at(s).unwrap_or(now).min(now),
                to: now,
                reason: GapReason::Downtime,
                healing: Healing {
                    first_id: ids.last_id(s).map(|id| id.saturating_add(1)),
                    ..Healing::default()
                },
            })
            .collect();
        if gaps.is_empty() {
            return Ok(());
        }
        let frame = ProviderFrame {
            provider: V::ID,
            gaps,
            ..ProviderFrame::default()
        };
        out.send(frame).await.map_err(|_| closed::<V>())
    }

    /// At shutdown during an outage: the outage so far is a gap too.
    async fn close_gap(
        &self,
        out: &mpsc::Sender<ProviderFrame>,
        down: Option<(Timestamp, GapReason)>,
        ids: &SequenceTracker,
    ) -> Result<(), ProviderError> {
        match down {
            Some((from, reason)) => self
                .send_gaps(out, from, Timestamp::now(), reason, ids, &HashMap::new())
                .await
                .map(drop),
            None => Ok(()),
        }
    }

    /// One gap per symbol of this connection, from the trade id after the
    /// last one seen (when one was); returns them. A symbol whose earlier
    /// outage no trade has closed yet gets that gap again, widened (same
    /// start, so one row): both outages miss the same ids.
    async fn send_gaps(
        &self,
        out: &mpsc::Sender<ProviderFrame>,
        from: Timestamp,
        to: Timestamp,
        reason: GapReason,
        ids: &SequenceTracker,
        open: &HashMap<Symbol, Gap>,
    ) -> Result<Vec<Gap>, ProviderError> {
        let gaps: Vec<Gap> = self
            .symbols
            .iter()
            .map(|s| match open.get(s) {
                Some(earlier) => Gap {
                    to: to.max(earlier.to),
                    ..earlier.clone()
                },
                None => Gap {
                    provider: V::ID.to_string(),
                    connection: self.id,
                    symbol: s.clone(),
                    from,
                    to,
                    reason,
                    healing: Healing {
                        first_id: ids.last_id(s).map(|id| id.saturating_add(1)),
                        ..Healing::default()
                    },
                },
            })
            .collect();
        GapRecorded {
            provider: V::ID,
            connection: self.id,
            reason,
            from,
            to,
            symbols: gaps.len(),
        }
        .emit(&self.metrics);
        let frame = ProviderFrame {
            provider: V::ID,
            gaps: gaps.clone(),
            ..ProviderFrame::default()
        };
        out.send(frame).await.map_err(|_| closed::<V>())?;
        Ok(gaps)
    }
}

/// The current backoff with ±25% jitter; doubles `backoff` for next time.
pub(crate) fn next_backoff(backoff: &mut Duration, max: Duration) -> Duration {
    let jitter = rand::thread_rng().gen_range(0.75..1.25);
    let pause = backoff.mul_f64(jitter);
    *backoff = (*backoff * 2).min(max);
    pause
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_its_cap_with_jitter() {
        let mut b = Duration::from_millis(100);
        let first = next_backoff(&mut b, Duration::from_millis(300));
        assert!((75..=125).contains(&first.as_millis()));
        assert_eq!(b, Duration::from_millis(200));
        next_backoff(&mut b, Duration::from_millis(300));
        assert_eq!(b, Duration::from_millis(300));
    }
}
