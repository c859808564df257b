//! Persistent network state: address allocations, the spec each slice was attached with, and
//! the byte-budget counters. One JSON file (`net.json`) in the node's state dir, written
//! atomically, every read-modify-write under an exclusive flock on `net.lock`.
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use super::cidr::Ipv4Cidr;
use super::cmd::{NetError, Result};
use super::spec::NetSpec;
use crate::util::fs::{read_json, write_json_atomic, IoContext, PathError};

pub(crate) const STATE_FILE: &str = "net.json";
pub(crate) const LOCK_FILE: &str = "net.lock";

/// Byte-budget bookkeeping of one slice (outbound bytes in the current UTC day).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BudgetState {
    /// Start of the current period (seconds since the epoch, a UTC midnight).
    pub period_start: u64,
    /// Bytes sent by the slice in the current period.
    pub used_bytes: u64,
    /// The host veth's rx_bytes at the last observation.
    pub last_raw: u64,
    /// The host veth's ifindex at the last observation (a new veth restarts its counters).
    pub last_ifindex: u32,
    /// The throttled outbound rate in force, bits/s, if past the threshold.
    pub throttle_bps: Option<u64>,
}

/// One slice's allocation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SliceEntry {
    /// Host offset of the address in the subnet; also the tc class minor and u32 node id.
    pub id: u32,
    pub ip: Ipv4Addr,
    pub mac: String,
    /// Host end of the veth pair.
    pub veth: String,
    /// The spec in force.
    pub spec: NetSpec,
    /// Attached (veth, rules and classes present) as opposed to only holding its address.
    pub active: bool,
    #[serde(default)]
    pub budget: BudgetState,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct NetState {
    pub version: u32,
    /// The subnet the allocations were made in.
    pub subnet: Option<Ipv4Cidr>,
    pub slices: BTreeMap<String, SliceEntry>,
}

/// Saves of any net state by this process (see [`NetState::load_shared`]).
static SAVES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl NetState {
    pub fn load(dir: &Path) -> Result<NetState> {
        let path = dir.join(STATE_FILE);
        if !path.exists() {
            return Ok(NetState {
                version: 1,
                ..Default::default()
            });
        }
        Ok(read_json(&path)?)
    }

    /// [`NetState::load`] for readers (inspect, list, the flow log's attribution), shared:
    /// parsed again when this process saved the state since (a save counter: the file's
    /// times are coarser than two saves, and a freed inode number may come back at once) or
    /// the file changed otherwise (inode, size, mtime: another process's write-then-rename).
    /// Parsing the state of 1000 slices per `inspect` made an inspect cost O(slices).
    pub fn load_shared(dir: &Path) -> Result<std::sync::Arc<NetState>> {
        use std::os::unix::fs::MetadataExt;
        type Cache = Vec<(PathBuf, (u64, u64, u64, i64, i64), std::sync::Arc<NetState>)>;
        static CACHE: std::sync::Mutex<Cache> = std::sync::Mutex::new(Vec::new());
        let path = dir.join(STATE_FILE);
        let Ok(m) = std::fs::metadata(&path) else {
            return Ok(std::sync::Arc::new(NetState::load(dir)?));
        };
        let saves = SAVES.load(std::sync::atomic::Ordering::SeqCst);
        let key = (saves, m.ino(), m.len(), m.mtime(), m.mtime_nsec());
        let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, k, st)) = cache.iter().find(|(p, _, _)| *p == path) {
            if *k == key {
                return Ok(st.clone());
            }
        }
        let st = std::sync::Arc::new(NetState::load(dir)?);
        cache.retain(|(p, _, _)| *p != path);
        // A handful of state dirs at most (tests run several nodes in one process).
        if cache.len() >= 16 {
            cache.remove(0);
        }
        cache.push((path, key, st.clone()));
        Ok(st)
    }

    pub fn save(&self, dir: &Path) -> Result<()> {
        let saved = write_json_atomic(&dir.join(STATE_FILE), self);
        SAVES.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(saved?)
    }

    /// Check (or record) that the allocations belong to `subnet`.
    pub fn bind_subnet(&mut self, subnet: Ipv4Cidr) -> Result<()> {
        match self.subnet {
            Some(s) if s != subnet && !self.slices.is_empty() => Err(NetError::State(format!(
                "state holds addresses from subnet {s}, configured subnet is {subnet}: \
                 release the slices (or remove the state) before changing the subnet"
            ))),
            _ => {
                self.subnet = Some(subnet);
                Ok(())
            }
        }
    }

    /// The lowest free host offset (2 and up; 1 is the gateway).
    pub fn free_id(&self, subnet: &Ipv4Cidr) -> Option<u32> {
        let used: std::collections::BTreeSet<u32> = self.slices.values().map(|e| e.id).collect();
        (2..=subnet.host_count()).find(|id| !used.contains(id))
    }

    pub fn active(&self) -> impl Iterator<Item = (&String, &SliceEntry)> {
        self.slices.iter().filter(|(_, e)| e.active)
    }
}

/// The exclusive lock over the state dir, held for the duration of an operation.
pub(crate) struct StateLock {
    _lock: Flock<File>,
}

impl StateLock {
    pub fn acquire(dir: &Path) -> Result<StateLock> {
        std::fs::create_dir_all(dir).ctx("create", dir)?;
        let path: PathBuf = dir.join(LOCK_FILE);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .ctx("open", &path)?;
        let lock = Flock::lock(file, FlockArg::LockExclusive)
            .map_err(|(_, e)| PathError::new("flock", &path, e.into()))?;
        Ok(StateLock { _lock: lock })
    }
}
