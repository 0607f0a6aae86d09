//! The traffic model: view events, video bundles and playback-adjacent reads, planned from a
//! seed and signed into trace records.

pub mod model;
mod options;
mod plan;
pub mod video;

pub use options::{default_creators, Options, DEFAULT_EPOCH, DEFAULT_RATE_EPS};
pub use plan::{Body, Draft, Planner};

use secp256k1::Keypair;

use crate::capture::{Completion, Op, Record, Role};
use crate::nostr::{keys, message, SignedFrame, Unsigned};

/// Signs a draft into its record. Pure: the same draft gives the same bytes on any thread.
pub fn finish(draft: Draft, creators: &[Keypair]) -> Record {
    let (op, frame, completes) = match draft.body {
        Body::View {
            secret,
            aux,
            coord,
            created_at,
        } => {
            let kp = keys::keypair_from_material(secret);
            let event = video::view(keys::pubkey(&kp), &coord, created_at);
            event_parts(Role::View, &event, event.sign_frame(&kp, &aux))
        }
        Body::Creator {
            creator,
            aux,
            role,
            event,
        } => {
            let signed = event.sign_frame(&creators[creator as usize], &aux);
            event_parts(role, &event, signed)
        }
        Body::Req { query, sub, filter } => (
            Op::Req { query },
            message::req_frame(&sub, &[&filter]),
            Completion::Eose { sub },
        ),
        Body::Close { sub } => (Op::Close, message::close_frame(&sub), Completion::Sent),
    };
    Record {
        offset_us: draft.offset_us,
        client: draft.client,
        op,
        frame,
        completes,
        after: draft.after,
        recorded: None,
    }
}

fn event_parts(role: Role, event: &Unsigned, signed: SignedFrame) -> (Op, String, Completion) {
    (
        Op::Event {
            kind: event.kind,
            role,
        },
        signed.frame,
        Completion::Ok {
            id: hex::encode(signed.id),
        },
    )
}
