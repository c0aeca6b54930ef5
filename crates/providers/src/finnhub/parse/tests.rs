use super::*;

/// The frames under `test_data/finnhub/frames.ndjson`, in order.
fn recorded() -> Vec<&'static str> {
    include_str!("../../../../../test_data/finnhub/frames.ndjson")
        .lines()
        .collect()
}

fn parse(raw: &str) -> Parsed {
    let now = Timestamp::from_millis(1_628_238_600_000);
    FrameParser::default().parse(raw.as_bytes(), &TickRules::default(), now, now)
}

fn trades(p: Parsed) -> (Vec<Tick>, Vec<Rejected>) {
    match p {
        Parsed::Trades { ticks, rejects } => (ticks, rejects),
        other => panic!("expected trades, got {other:?}"),
    }
}

#[test]
fn a_trade_frame_becomes_ticks_with_their_conditions() {
    let (ticks, rejects) = trades(parse(recorded()[0]));
    assert!(rejects.is_empty(), "{rejects:?}");
    assert_eq!(ticks.len(), 3);
    let t = &ticks[0];
    assert_eq!(t.symbol().as_str(), "AAPL");
    assert_eq!(t.price(), 146.76);
    assert_eq!(t.size(), 43.0);
    assert_eq!(t.ts(), Timestamp::from_millis(1_628_238_530_221));
    assert_eq!(t.conditions(), ["1", "24"]);
    assert_eq!(t.src_id(), "finnhub");
    assert_eq!(t.exchange(), "");
    assert_eq!(ticks[2].symbol().as_str(), "BINANCE:BTCUSDT");
    assert!(ticks[2].conditions().is_empty(), "null conditions are none");
}

#[test]
fn zero_volume_fx_updates_are_ticks() {
    let (ticks, rejects) = trades(parse(recorded()[2]));
    assert!(rejects.is_empty());
    assert_eq!(ticks[0].symbol().as_str(), "OANDA:EUR_USD");
    assert_eq!(ticks[0].size(), 0.0);
}

#[test]
fn identical_trades_in_one_frame_keep_distinct_ids_and_parse_the_same_again() {
    let (ticks, _) = trades(parse(recorded()[3]));
    assert_eq!(ticks.len(), 2);
    assert_ne!(ticks[0].tick_id(), ticks[1].tick_id());
    let (again, _) = trades(parse(recorded()[3]));
    let ids = |t: &[Tick]| t.iter().map(|t| t.tick_id()).collect::<Vec<_>>();
    assert_eq!(
        ids(&ticks),
        ids(&again),
        "a replayed frame has the same ids"
    );
}

#[test]
fn pings_and_errors_are_told_apart() {
    assert!(matches!(parse(recorded()[1]), Parsed::Ping));
    match parse(recorded()[4]) {
        Parsed::Error(m) => assert_eq!(m, "Subscribing to too many symbols"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(parse(recorded()[5]), Parsed::Error(m) if m.starts_with("Invalid symbol")));
}

#[test]
fn bad_trades_are_rejected_alone_with_the_field_named() {
    let (ticks, rejects) = trades(parse(recorded()[6]));
    assert_eq!(ticks.len(), 1, "the one good trade survives");
    assert_eq!(ticks[0].price(), 301.2);
    let reasons: Vec<&str> = rejects.iter().map(|r| r.reason).collect();
    assert_eq!(
        reasons,
        [
            "invalid_price",
            "invalid_size",
            "malformed_trade",
            "malformed_trade"
        ]
    );
    assert!(rejects[0].error.contains("price"), "{}", rejects[0].error);
    assert!(
        rejects[3].error.contains("missing field(s) p"),
        "{}",
        rejects[3].error
    );
    // The dead letter carries the trade as it was sent.
    assert_eq!(
        String::from_utf8_lossy(&rejects[2].raw),
        r#"{"p":"301.2","s":"MSFT","t":1628238531303,"v":5}"#
    );
}

#[test]
fn malformed_frames_are_rejected_with_their_raw_text() {
    for raw in &recorded()[7..] {
        match parse(raw) {
            Parsed::Malformed(r) => {
                assert_eq!(r.reason, "malformed_frame");
                assert_eq!(r.raw, raw.as_bytes());
            }
            other => panic!("{raw}: {other:?}"),
        }
    }
    assert!(matches!(parse("not json"), Parsed::Malformed(_)));
    assert!(matches!(parse(""), Parsed::Malformed(_)));
}

proptest::proptest! {
    #[test]
    fn parsing_never_panics(raw in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
        let now = Timestamp::now();
        let _ = FrameParser::default().parse(&raw, &TickRules::default(), now, now);
    }

    #[test]
    fn parsing_trade_shaped_json_never_panics(
        s in "[A-Za-z:_ ]{0,12}", p in proptest::num::f64::ANY, t in proptest::num::i64::ANY, v in proptest::num::f64::ANY,
    ) {
        let raw = format!(r#"{{"type":"trade","data":[{{"s":"{s}","p":{p},"t":{t},"v":{v}}}]}}"#);
        let now = Timestamp::now();
        let _ = FrameParser::default().parse(raw.as_bytes(), &TickRules::default(), now, now);
    }
}
