//! SSH public keys: parsing one authorized_keys-format key, its SHA-256 fingerprint (the
//! `ssh-keygen -l` form), and the per-slice store. Keys are public data; the store is 0644 in
//! the slice's state directory so that it disappears with the slice.
use super::SshError;
use crate::proto::ssh::SshKey;
use crate::util::fs::{read_json, write_json_atomic};
use base64::Engine;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// Key types sshd accepts for user authentication (OpenSSH 9.2), and nothing else.
pub const KEY_TYPES: &[&str] = &[
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
];
/// Keys per slice.
pub const MAX_KEYS: usize = 64;
const MAX_BLOB: usize = 16 * 1024;
const MAX_COMMENT: usize = 256;
/// The store's file name in the slice directory.
pub const STORE_FILE: &str = "ssh-keys.json";

/// `SHA256:` + unpadded base64 of SHA-256(blob).
pub fn fingerprint(blob: &[u8]) -> String {
    format!(
        "SHA256:{}",
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(Sha256::digest(blob))
    )
}

/// Parse `TYPE BASE64 [COMMENT]` (no options: the daemon adds its own). `field` names the
/// request field in errors.
pub fn parse(line: &str, field: &str) -> Result<SshKey, SshError> {
    let line = line.trim();
    if line.contains(['\n', '\r', '\0']) {
        return Err(SshError::invalid(field, "must be one line"));
    }
    let mut parts = line.splitn(3, [' ', '\t']);
    let ktype = parts.next().unwrap_or("");
    if !KEY_TYPES.contains(&ktype) {
        return Err(SshError::invalid(
            field,
            format!(
                "{:?} is not a supported key type (authorized_keys options are not accepted); expected one of {}",
                ktype.chars().take(40).collect::<String>(),
                KEY_TYPES.join(", ")
            ),
        ));
    }
    let b64 = parts.next().unwrap_or("").trim();
    if b64.is_empty() || b64.len() > MAX_BLOB * 4 / 3 + 4 {
        return Err(SshError::invalid(field, "missing or oversized key data"));
    }
    let blob = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| SshError::invalid(field, format!("key data is not base64: {e}")))?;
    // The blob starts with its own type as an SSH string (uint32 length + bytes).
    let inner = blob
        .get(..4)
        .map(|l| u32::from_be_bytes([l[0], l[1], l[2], l[3]]) as usize)
        .and_then(|n| blob.get(4..4 + n));
    if inner != Some(ktype.as_bytes()) || blob.len() < 4 + ktype.len() + 8 {
        return Err(SshError::invalid(
            field,
            format!("key data is not a {ktype} public key"),
        ));
    }
    let comment = parts.next().unwrap_or("").trim().to_string();
    if comment.len() > MAX_COMMENT || comment.chars().any(char::is_control) {
        return Err(SshError::invalid(
            field,
            format!("comment must be at most {MAX_COMMENT} bytes of printable text"),
        ));
    }
    Ok(SshKey {
        fingerprint: fingerprint(&blob),
        key_type: ktype.to_string(),
        key: base64::engine::general_purpose::STANDARD.encode(&blob),
        comment,
        added_at: crate::audit::time::now_rfc3339(),
    })
}

/// The fingerprint of the public key in an ExposeAuthInfo file (`publickey TYPE BASE64`
/// lines; the last one is the key that completed authentication).
pub fn fingerprint_of_auth_info(info: &str) -> Option<String> {
    info.lines().rev().find_map(|l| {
        let rest = l.strip_prefix("publickey ")?;
        parse(rest, "auth_info").ok().map(|k| k.fingerprint)
    })
}

/// An authorized_keys line sshd gets for `key`: `restrict,pty` turns off everything a key
/// may do but a terminal (forwarding, user rc, X11), whatever the sshd config says.
pub fn authorized_line(key: &SshKey) -> String {
    format!("restrict,pty {} {} {}", key.key_type, key.key, key.comment)
        .trim_end()
        .to_string()
}

fn store_path(slice_dir: &Path) -> PathBuf {
    slice_dir.join(STORE_FILE)
}

/// The slice's keys (none if SSH access was never given).
pub fn load(slice_dir: &Path) -> Result<Vec<SshKey>, SshError> {
    let p = store_path(slice_dir);
    if !p.exists() {
        return Ok(Vec::new());
    }
    Ok(read_json(&p)?)
}

/// Whether SSH access was ever given to the slice (the store exists).
pub fn enabled(slice_dir: &Path) -> bool {
    store_path(slice_dir).exists()
}

/// Save the keys (atomically, fsynced: an acknowledged add or removal survives a crash).
pub fn save(slice_dir: &Path, keys: &[SshKey]) -> Result<(), SshError> {
    Ok(write_json_atomic(&store_path(slice_dir), &keys)?)
}

/// Add a key; refuses a duplicate and more than [`MAX_KEYS`].
pub fn add(slice_dir: &Path, key: SshKey) -> Result<SshKey, SshError> {
    let mut keys = load(slice_dir)?;
    if keys.iter().any(|k| k.fingerprint == key.fingerprint) {
        return Err(SshError::Duplicate(key.fingerprint));
    }
    if keys.len() >= MAX_KEYS {
        return Err(SshError::invalid(
            "key",
            format!("a slice may have at most {MAX_KEYS} keys"),
        ));
    }
    keys.push(key.clone());
    save(slice_dir, &keys)?;
    Ok(key)
}

/// Remove the key with `fingerprint`.
pub fn remove(slice_dir: &Path, fingerprint: &str) -> Result<SshKey, SshError> {
    let mut keys = load(slice_dir)?;
    let i = keys
        .iter()
        .position(|k| k.fingerprint == fingerprint)
        .ok_or_else(|| SshError::NoSuchKey(fingerprint.to_string()))?;
    let k = keys.remove(i);
    save(slice_dir, &keys)?;
    Ok(k)
}

#[cfg(test)]
mod tests {
    use super::*;

    // ssh-keygen -t ed25519 (a throwaway key); fingerprint from `ssh-keygen -lf`.
    const ED: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEMlK0aF0S8DreJn1pyxiP5nn4NagDp/csBnw9wLcm0p test@x";

    #[test]
    fn parses_and_fingerprints() {
        let k = parse(ED, "key").unwrap();
        assert_eq!(k.key_type, "ssh-ed25519");
        assert_eq!(k.comment, "test@x");
        assert_eq!(
            k.fingerprint,
            "SHA256:kARfHvbrAehKN049P822URguwJ9bWfHe0EVQ8GcXhC4"
        );
        let info = format!("publickey {}\n", ED);
        assert_eq!(fingerprint_of_auth_info(&info), Some(k.fingerprint.clone()));
        assert!(authorized_line(&k).starts_with("restrict,pty ssh-ed25519 AAAA"));
    }

    #[test]
    fn refuses_bad_keys() {
        for bad in [
            "",
            "command=\"x\" ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C8okWi0dh2l9GKJl",
            "ssh-ed25519 notbase64!!",
            "ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C8okWi0dh2l9GKJl",
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C8okWi0dh2l9GKJl a\nb",
        ] {
            let e = parse(bad, "key").unwrap_err();
            assert!(matches!(e, SshError::Invalid { ref field, .. } if field == "key"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn store_add_remove() {
        let d = tempfile::tempdir().unwrap();
        assert!(!enabled(d.path()));
        let k = add(d.path(), parse(ED, "key").unwrap()).unwrap();
        assert!(enabled(d.path()));
        assert!(matches!(
            add(d.path(), parse(ED, "key").unwrap()),
            Err(SshError::Duplicate(_))
        ));
        assert_eq!(load(d.path()).unwrap().len(), 1);
        remove(d.path(), &k.fingerprint).unwrap();
        assert!(load(d.path()).unwrap().is_empty());
        assert!(matches!(
            remove(d.path(), &k.fingerprint),
            Err(SshError::NoSuchKey(_))
        ));
    }
}
