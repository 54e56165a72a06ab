# The menu of everyday commands; each is a plain cargo command underneath.

# Start the gateway in development mode with the bundled example catalog.
run:
    cargo run --release -p ithil -- serve --dev --catalog examples/placeholder.json

# Run every test (the README's second command).
test:
    cargo test --workspace

# What CI runs: formatting, lints, tests, and the benchmarks compiled but not timed.
check:
    cargo fmt --all --check
    cargo clippy --workspace --all-targets -- -D warnings
    cargo clippy -p ithil -p ithil-proxy --features ithil/bench --all-targets -- -D warnings
    cargo test -p ithil --features bench --bin ithil bench::
    cargo test --workspace
    cargo bench --workspace --no-run

# Run every benchmark (see docs/benchmarks.md for the figures and the machine).
bench:
    cargo bench --workspace

# Fuzz the token verifier for ten minutes (needs `cargo install cargo-fuzz`; see docs/fuzzing.md).
fuzz seconds="600":
    cd crates/ithil-token/fuzz && cargo fuzz run --sanitizer none verify -- -max_total_time={{seconds}}

# Tool calls per second and latency: the stub direct, through nginx, through Ithil (needs Debian's nginx; see docs/benchmarks.md).
bench-speed duration="5":
    cargo build --release -p ithil -p ithil-bench
    cargo run --release -p ithil-bench -- run --duration {{duration}}

# Tool calls per second with durable charging against charging off, in one run (a gateway build with the benchmark-only `bench` feature; see docs/benchmarks.md).
# The build goes to target/bench, so that the bench binary never stands where a deployment takes `ithil` from.
bench-charging duration="3" rounds="6":
    cargo build --release -p ithil --features bench -p ithil-bench --target-dir target/bench
    target/bench/release/ithil-bench run --targets ithil,ithil-per-call,ithil-uncharged --clients 16,64 --rounds {{rounds}} --duration {{duration}} --no-rate
