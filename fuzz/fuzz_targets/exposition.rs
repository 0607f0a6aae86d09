//! Any answer of a scraped endpoint reads as series or as an error naming its line, never a
//! panic; every series read has a name and sorted labels. Run: `cargo fuzz run exposition`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match lt::scrape::exposition::parse(text) {
        Ok(metrics) => {
            for m in metrics {
                assert!(!m.name.is_empty());
                assert!(m.labels.windows(2).all(|w| w[0] <= w[1]));
            }
        }
        Err(e) => assert!(e.contains("line "), "{e}"),
    }
});
