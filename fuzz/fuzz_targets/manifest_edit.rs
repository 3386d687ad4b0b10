#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ddpersist_fuzz::check_manifest_edit(data));
