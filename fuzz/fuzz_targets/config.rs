//! Config text, as `check`, `serve` and every reload parse it: any text,
//! no panic, and an error always names where.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Err(errors) = switchyard::config::Config::from_yaml(&text, "fuzz.yaml") {
        assert!(!errors.0.is_empty());
        for e in &errors.0 {
            assert!(!e.message.is_empty());
        }
    }
});
