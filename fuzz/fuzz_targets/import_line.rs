//! Any line of an event dump is a record or a reason, never a panic; a record's frame is an
//! EVENT message whose event parses. Run: `cargo fuzz run import_line`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lt::nostr::ClientMessage;

fuzz_target!(|data: &[u8]| {
    for verify in [false, true] {
        if let Ok(parsed) = lt::import::parse(data, 7, verify) {
            assert!(parsed.record.client < 7);
            match ClientMessage::parse(&parsed.record.frame) {
                Ok(ClientMessage::Event(raw)) => {
                    lt::nostr::Event::from_json(raw.get()).expect("the frame's event parses");
                }
                other => panic!("not an EVENT frame: {other:?}"),
            }
        }
    }
});
