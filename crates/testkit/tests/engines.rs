//! The engines start, serve, stop and come back.

use std::process::Command;

use streamforge_testkit::engines::{psql, shared_postgres, Postgres, Redis};

#[test]
fn postgres_gives_fresh_databases_and_survives_a_restart() {
    let pg = shared_postgres();
    let a = pg.create_database().unwrap();
    let b = pg.create_database().unwrap();
    assert_ne!(a, b);
    assert_eq!(psql(&a, "SELECT 40 + 2"), "42");

    let mut own = Postgres::start().unwrap();
    let db = own.create_database().unwrap();
    psql(&db, "CREATE TABLE t (x int); INSERT INTO t VALUES (7)");
    own.stop();
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", own.port())).is_err(),
        "stopped"
    );
    own.resume().unwrap();
    assert_eq!(psql(&db, "SELECT x FROM t"), "7");
}

#[test]
fn redis_starts_and_restarts_empty() {
    let mut r = Redis::start().unwrap();
    let url = r.url();
    let port = url
        .trim_start_matches("redis://127.0.0.1:")
        .trim_end_matches('/')
        .to_string();
    let cli = |args: &[&str]| {
        let out = Command::new("redis-cli")
            .args(["-p", &port])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(cli(&["SET", "k", "v"]), "OK");
    assert_eq!(cli(&["GET", "k"]), "v");
    r.stop();
    r.resume().unwrap();
    assert_eq!(cli(&["GET", "k"]), "");
}

/// A server of another process on an engine's port is never taken for the
/// engine: `listens_on` looks at who owns the listening socket.
#[test]
fn a_port_held_by_another_process_is_not_mistaken_for_the_engine() {
    use streamforge_testkit::engines::listens_on;

    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().port();
    assert!(
        listens_on(std::process::id(), port),
        "this process holds it"
    );
    let mut other = Command::new("sleep").arg("30").spawn().unwrap();
    assert!(
        !listens_on(other.id(), port),
        "a process without the socket"
    );
    other.kill().unwrap();
    other.wait().unwrap();
    drop(held);
    assert!(!listens_on(std::process::id(), port), "closed");

    // Redis stopped; another process takes its port; starting it again
    // fails saying so, instead of "seeing" the other server.
    let mut r = Redis::start().unwrap();
    let port: u16 = r
        .url()
        .trim_start_matches("redis://127.0.0.1:")
        .trim_end_matches('/')
        .parse()
        .unwrap();
    r.stop();
    let squatter = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    let e = r.resume().expect_err("the port is taken");
    assert!(
        e.to_string()
            .to_lowercase()
            .contains("address already in use"),
        "{e}"
    );
    drop(squatter);
    r.resume().unwrap();
}
