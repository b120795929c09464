# Sourced by the engine scripts: `program DIR CRATE_PATH NAME < main.rs` builds, in release
# with debug info, a binary crate NAME at DIR whose main.rs is read from standard input and
# which depends on ctxcore at CRATE_PATH. The binary is DIR/target/release/NAME.
program() {
  mkdir -p "$1/src"
  cat >"$1/Cargo.toml" <<TOML
[package]
name = "$3"
version = "0.0.0"
edition = "2021"
publish = false
[dependencies]
ctxcore = { path = "$2" }
[profile.release]
debug = true
[workspace]
TOML
  cat >"$1/src/main.rs"
  (cd "$1" && CARGO_TARGET_DIR="$1/target" cargo build -q --release)
}
