//! Runnable examples of cohort. Run them from the workspace root, e.g.
//! `cargo run --example cluster`. This library holds nothing but this note.
