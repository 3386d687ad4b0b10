//! Timely / differential operators over the store (in progress; see DESIGN.md section 6).
