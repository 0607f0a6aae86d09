//! Keys from seed material, and the NIP-19 encodings the platform puts into URLs.

use bech32::{Bech32, Hrp};
use secp256k1::{Keypair, SECP256K1};
use sha2::{Digest, Sha256};

/// A keypair from 32 bytes of seed material. Bytes that are not a valid secret key (zero or
/// at least the group order, probability ~2^-128) are re-hashed until they are, so every
/// input gives a key and the result depends on nothing but the input.
pub fn keypair_from_material(mut material: [u8; 32]) -> Keypair {
    loop {
        if let Ok(kp) = Keypair::from_seckey_slice(SECP256K1, &material) {
            return kp;
        }
        material = Sha256::digest(material).into();
    }
}

/// The x-only public key bytes.
pub fn pubkey(kp: &Keypair) -> [u8; 32] {
    kp.x_only_public_key().0.serialize()
}

/// NIP-19 `npub1…`.
pub fn npub(pubkey: &[u8; 32]) -> String {
    encode("npub", pubkey)
}

/// NIP-19 `naddr1…` in the TLV order bitvid's nostr-tools emits: kind, author, identifier.
pub fn naddr(kind: u32, pubkey: &[u8; 32], identifier: &str) -> String {
    let mut tlv = Vec::with_capacity(42 + identifier.len());
    tlv.extend_from_slice(&[3, 4]);
    tlv.extend_from_slice(&kind.to_be_bytes());
    tlv.extend_from_slice(&[2, 32]);
    tlv.extend_from_slice(pubkey);
    // TLV lengths are one byte; identifiers lt generates are far shorter than 255.
    let id = &identifier.as_bytes()[..identifier.len().min(255)];
    tlv.extend_from_slice(&[0, id.len() as u8]);
    tlv.extend_from_slice(id);
    encode("naddr", &tlv)
}

fn encode(hrp: &str, data: &[u8]) -> String {
    // Both are constant, valid prefixes and NIP-19 payloads stay far below bech32's 1023-char
    // code length, so encoding cannot fail.
    let hrp = Hrp::parse(hrp).expect("valid constant hrp");
    bech32::encode::<Bech32>(hrp, data).expect("payload within bech32 code length")
}

#[cfg(test)]
mod tests {
    use super::*;

    const CREATOR: &str = "b6caad2daae51f6b6385657dda592d5199f5bf3b45734337c9cfc1853434a336";

    fn creator() -> [u8; 32] {
        let mut pk = [0u8; 32];
        hex::decode_to_slice(CREATOR, &mut pk).unwrap();
        pk
    }

    #[test]
    fn npub_matches_reference() {
        assert_eq!(
            npub(&creator()),
            "npub1km926td2u50kkcu9v47a5kfd2xvlt0emg4e5xd7felqc2dp55vmqww2z8v"
        );
    }

    #[test]
    fn naddr_matches_the_reference_watch_url() {
        assert_eq!(
            naddr(30078, &creator(), "1770000000123-k3j9x2m4qplw"),
            "naddr1qvzqqqr40cpzpdk245k64egldd3c2etamfvj65ve7klnk3tngvmunn7ps56rfgekqqdrzdehxqcrqvpsxqcrzv3n944nx63e0qex6dr3wpk8wvqeq5f"
        );
    }

    #[test]
    fn invalid_material_still_gives_a_key() {
        let kp = keypair_from_material([0xff; 32]);
        let again = keypair_from_material([0xff; 32]);
        assert_eq!(pubkey(&kp), pubkey(&again));
        keypair_from_material([0; 32]);
    }
}
