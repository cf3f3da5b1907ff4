//! Benchmarks of cohort. Every figure in `BENCHMARKS.md` comes from a target here.
