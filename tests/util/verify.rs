//! An event verifier that shares no code with lt's, for checking what lt signs.

/// Verifies an event with code that shares nothing with lt's: serde_json for the id
/// pre-image, sha2 for the hash, k256 (RustCrypto) for BIP-340.
pub fn independent_verify(event: &serde_json::Value) -> Result<(), String> {
    use k256::schnorr::{Signature, VerifyingKey};
    use sha2::{Digest, Sha256};
    let pre = serde_json::to_string(&serde_json::json!([
        0,
        event["pubkey"],
        event["created_at"],
        event["kind"],
        event["tags"],
        event["content"]
    ]))
    .map_err(|e| e.to_string())?;
    let id = Sha256::digest(pre.as_bytes());
    let claimed = hex::decode(event["id"].as_str().ok_or("no id")?).map_err(|e| e.to_string())?;
    if claimed[..] != id[..] {
        return Err("id does not match the serialization".into());
    }
    let pk =
        hex::decode(event["pubkey"].as_str().ok_or("no pubkey")?).map_err(|e| e.to_string())?;
    let sig = hex::decode(event["sig"].as_str().ok_or("no sig")?).map_err(|e| e.to_string())?;
    let key = VerifyingKey::from_bytes(&pk).map_err(|e| e.to_string())?;
    let sig = Signature::try_from(sig.as_slice()).map_err(|e| e.to_string())?;
    key.verify_raw(&id, &sig).map_err(|e| e.to_string())
}
