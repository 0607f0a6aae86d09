//! What a record is for the figures (its [`Class`]) and the bounds of every latency
//! histogram: the leaf that the tally and the timeline both build on.

use crate::capture::{Op, Role};

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
