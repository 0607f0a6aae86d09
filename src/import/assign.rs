//! What an imported event becomes in a trace: its connection (by author) and its role (by
//! kind). Pure functions of the event, so no map grows with the input.

use crate::capture::Role;

/// The connection an author's events go out on: the first 8 bytes of the pubkey, big-endian,
/// modulo the connections. One author always lands on the same one, as a real client keeps
/// one socket, and pubkeys are uniform so authors spread evenly without a table of them.
pub fn client_of(pubkey: &[u8; 32], clients: u32) -> u32 {
    let mut head = [0u8; 8];
    head.copy_from_slice(&pubkey[..8]);
    (u64::from_be_bytes(head) % u64::from(clients.max(1))) as u32
}

/// The platform role of an event by its kind (and, for 30079, its `t` tag), as a recording
/// classifies it. A 30078 is always a post: telling an edit (same `d` seen before) would
/// need a map of every `d`.
pub fn role_of(kind: u16, tags: &[Vec<String>]) -> Role {
    Role::of(kind, has_tag(tags, "t", "view"))
}

fn has_tag(tags: &[Vec<String>], name: &str, value: &str) -> bool {
    tags.iter().any(|t| {
        t.first().map(String::as_str) == Some(name) && t.get(1).map(String::as_str) == Some(value)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(head: u64) -> [u8; 32] {
        let mut k = [0xabu8; 32];
        k[..8].copy_from_slice(&head.to_be_bytes());
        k
    }

    #[test]
    fn an_author_keeps_one_connection() {
        // (first 8 bytes of the pubkey, clients, connection)
        let table = [
            (0, 100, 0),
            (99, 100, 99),
            (100, 100, 0),
            (12_345, 100, 45),
            (u64::MAX, 100, 15), // 18446744073709551615 % 100
            (7, 1, 0),
            (u64::MAX, u32::MAX, (u64::MAX % u64::from(u32::MAX)) as u32),
        ];
        for (head, clients, want) in table {
            assert_eq!(client_of(&key(head), clients), want, "{head} % {clients}");
        }
        // The rest of the key does not matter.
        let mut other = key(12_345);
        other[31] = 0;
        assert_eq!(client_of(&other, 100), 45);
    }

    #[test]
    fn random_authors_spread_evenly() {
        let clients = 10u32;
        let mut per = [0u32; 10];
        let mut k = [0u8; 32];
        for i in 0..10_000u32 {
            use sha2::Digest;
            k.copy_from_slice(&sha2::Sha256::digest(i.to_le_bytes()));
            per[client_of(&k, clients) as usize] += 1;
        }
        // 1,000 expected each; 5 standard deviations is about ±150.
        assert!(per.iter().all(|&n| (850..1150).contains(&n)), "{per:?}");
    }

    #[test]
    fn roles_by_kind() {
        let t = |a: &str, b: &str| vec![a.to_owned(), b.to_owned()];
        let view = vec![t("d", "x"), t("t", "view")];
        let table: [(u16, Vec<Vec<String>>, Role); 9] = [
            (30079, view.clone(), Role::View),
            (30079, vec![t("t", "video")], Role::Other), // a watch history, not a view
            (30079, vec![vec!["t".into()]], Role::Other),
            (30078, vec![], Role::VideoPost),
            (1063, vec![], Role::Nip94Mirror),
            (34235, vec![], Role::Nip71Mirror),
            (34236, vec![], Role::Nip71Mirror),
            (1, view, Role::Other),
            (65535, vec![], Role::Other),
        ];
        for (kind, tags, want) in table {
            assert_eq!(role_of(kind, &tags), want, "kind {kind} {tags:?}");
        }
    }
}
