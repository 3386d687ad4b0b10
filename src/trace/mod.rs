//! Differential-dataflow trace over persisted batches (in progress; see DESIGN.md section 6).
