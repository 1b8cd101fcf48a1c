//! Any text as a configuration file, plus one environment override built from the input.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let _ = ferroacs::config::Config::from_toml_and_env("fuzz.toml", s, std::iter::empty());
    // The same text as the value of an environment override.
    let env = [("FERROACS_CWMP_LISTEN".to_string(), s.to_string())];
    let _ = ferroacs::config::Config::from_toml_and_env("fuzz.toml", "", env);
});
