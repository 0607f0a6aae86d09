//! What a record is for the figures (its [`Class`]) and the bounds of every latency
//! histogram: the leaf that the tally and the timeline both build on.

use hdrhistogram::Histogram;

use crate::capture::{Op, Role};

/// Histograms hold microseconds from 1 µs to one hour, at 3 significant digits.
pub const HIST_MAX_US: u64 = 3_600_000_000;
/// What a record is in the platform's terms, for per-type figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Class {
    /// Kind 30079 view events.
    View,
    /// Kind 30078 video posts, edits and tombstones.
    VideoPost,
    /// NIP-94 and NIP-71 mirrors of a post.
    Mirror,
    /// Feed, view-count and channel REQs (completed by EOSE), other REQs and COUNTs.
    Read,
    /// CLOSE frames: nothing answers them, so they have no latency of their own.
    Close,
    /// Events of kinds the platform model does not name (recorded or imported traces).
    OtherEvent,
    /// Frames that are not requests: a recorded AUTH (never replayed) or a frame of
    /// another type, written and not answered, like a CLOSE.
    OtherFrame,
}

impl Class {
    pub const ALL: [Class; 7] = [
        Class::View,
        Class::VideoPost,
        Class::Mirror,
        Class::Read,
        Class::Close,
        Class::OtherEvent,
        Class::OtherFrame,
    ];

    pub fn of(op: Op) -> Class {
        match op {
            Op::Event { role, .. } => match role {
                Role::View => Class::View,
                Role::VideoPost | Role::VideoEdit | Role::Tombstone => Class::VideoPost,
                Role::Nip94Mirror | Role::Nip71Mirror => Class::Mirror,
                Role::Other => Class::OtherEvent,
            },
            Op::Req { .. } | Op::Count => Class::Read,
            Op::Close => Class::Close,
            Op::Auth | Op::Other => Class::OtherFrame,
        }
    }

    /// A request: something the relay answers, so it counts in totals, rates and latency.
    /// CLOSE and other frames are written and never answered.
    pub fn is_request(self) -> bool {
        !matches!(self, Class::Close | Class::OtherFrame)
    }

    pub fn label(self) -> &'static str {
        match self {
            Class::View => "view",
            Class::VideoPost => "video_post",
            Class::Mirror => "mirror",
            Class::Read => "read",
            Class::Close => "close",
            Class::OtherEvent => "other_event",
            Class::OtherFrame => "other_frame",
        }
    }

    /// Sent at its own time, not after an earlier record's reply: its schedule lag is lt's
    /// alone. A mirror waits for its post's OK and a CLOSE for its REQ's EOSE, so their
    /// "lag" is the relay's answer time.
    pub fn is_independent(self) -> bool {
        matches!(
            self,
            Class::View | Class::VideoPost | Class::Read | Class::OtherEvent
        )
    }

    pub(super) fn index(self) -> usize {
        self as usize
    }
}

pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIST_MAX_US, 3).expect("constant histogram bounds are valid")
}

/// Records `ns` as microseconds, clamped into the histogram's range.
pub fn record_ns(h: &mut Histogram<u64>, ns: u64) {
    let us = (ns / 1_000).clamp(1, HIST_MAX_US);
    // Saturating: the value is in range, so this cannot fail.
    h.saturating_record(us);
}
