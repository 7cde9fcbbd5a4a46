#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| hopfield_fuzz::csv(data));
