//! Any frame a relay sends parses or is an error, never a panic; a parsed frame re-encodes
//! to something that parses to the same message. Run: `cargo fuzz run relay_message`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lt::nostr::RelayMessage;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(msg) = RelayMessage::parse(text) {
        let frame = msg.to_frame();
        let again = RelayMessage::parse(&frame).expect("re-encoded frame parses");
        assert_eq!(again, msg);
    }
});
