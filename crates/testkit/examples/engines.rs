//! Starts throwaway engines for benchmarks and manual runs, the same ones
//! the tests use: `cargo run --release -p streamforge-testkit --example
//! engines -- kafka postgres redis`. Prints one `NAME=URL` line per engine
//! (shell-sourceable), then `READY`, and keeps them until its standard input
//! closes or it gets SIGTERM/SIGINT; their data is removed then.

use std::io::Read;

use streamforge_testkit::engines::{Postgres, Redis};
use streamforge_testkit::kafka::Kafka;

fn main() {
    let wanted: Vec<String> = std::env::args().skip(1).collect();
    let wanted = if wanted.is_empty() {
        vec!["kafka".to_string(), "postgres".into(), "redis".into()]
    } else {
        wanted
    };
    let mut keep: Vec<Box<dyn std::any::Any>> = Vec::new();
    for name in &wanted {
        match name.as_str() {
            "kafka" => {
                let k = Kafka::start().unwrap_or_else(|e| fail(&e.to_string()));
                println!("KAFKA_URL={}", k.url());
                println!("KAFKA_BOOTSTRAP={}", k.bootstrap());
                println!("KAFKA_DIR={}", k.dir().display());
                keep.push(Box::new(k));
            }
            "postgres" => {
                let pg = Postgres::start().unwrap_or_else(|e| fail(&e.to_string()));
                let db = pg
                    .create_database()
                    .unwrap_or_else(|e| fail(&e.to_string()));
                println!("POSTGRES_URL={db}");
                keep.push(Box::new(pg));
            }
            "redis" => {
                let r = Redis::start().unwrap_or_else(|e| fail(&e.to_string()));
                println!("REDIS_URL={}", r.url());
                keep.push(Box::new(r));
            }
            other => fail(&format!(
                "unknown engine {other:?}: expected kafka, postgres or redis"
            )),
        }
    }
    println!("READY");
    // Until stdin closes (the caller is gone, or it closed it on purpose).
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    drop(keep);
}

fn fail(msg: &str) -> ! {
    eprintln!("engines: {msg}");
    std::process::exit(1)
}
