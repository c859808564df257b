//! Reading an OCI image offline: an OCI image layout directory, the same as a tar
//! (oci-archive), or a `docker save` tar. Every JSON document is size-capped and every blob is
//! checked against its digest (and size) from the document that names it; each layer's
//! uncompressed stream is checked against the config's `diff_ids`. Layers are applied by
//! [`super::layer::Applier`] while they stream (nothing is unpacked twice); a digest that does
//! not match fails the import after the fact, and the caller ([`super::store`]) throws the
//! half-built tree away.
use super::layer::{Applier, LayerError};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// Largest index.json / manifest.json / image manifest accepted.
pub const MAX_MANIFEST_BYTES: u64 = 1 << 20;
/// Largest image config accepted (history can make them long).
pub const MAX_CONFIG_BYTES: u64 = 4 << 20;
/// Most entries read from an archive's table of contents, and most layers.
const MAX_ARCHIVE_ENTRIES: usize = 100_000;
const MAX_LAYERS: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{}: {source}", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{0}")]
    Format(String),
    #[error("{what}: {reason}")]
    Json { what: String, reason: String },
    #[error("{what}: digest mismatch: expected {expected}, got {actual}")]
    Digest {
        what: String,
        expected: String,
        actual: String,
    },
    #[error("layer {index} ({digest}): {source}")]
    Layer {
        index: usize,
        digest: String,
        #[source]
        source: LayerError,
    },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
}

fn format_err(s: impl Into<String>) -> ImportError {
    ImportError::Format(s.into())
}

/// Where the blobs come from.
enum Source {
    Dir(File),
    /// A tar file and the (offset, size) of each regular file in it.
    Tar {
        path: PathBuf,
        index: HashMap<String, (u64, u64)>,
        /// Symlinks between members (docker archives link `<id>/layer.tar` to a blob).
        links: HashMap<String, String>,
    },
}

impl Source {
    fn open(path: &Path) -> Result<Source, ImportError> {
        let open_err = |source| ImportError::Open {
            path: path.to_path_buf(),
            source,
        };
        let md = std::fs::metadata(path).map_err(open_err)?;
        if md.is_dir() {
            return Ok(Source::Dir(File::open(path).map_err(open_err)?));
        }
        if !md.is_file() {
            return Err(format_err(format!(
                "{}: neither a directory (OCI image layout) nor a regular file (tar)",
                path.display()
            )));
        }
        let f = File::open(path).map_err(open_err)?;
        let mut ar = tar::Archive::new(f);
        let mut index = HashMap::new();
        let mut links = HashMap::new();
        let bad = |e: io::Error| format_err(format!("{}: not a tar archive: {e}", path.display()));
        for entry in ar.entries_with_seek().map_err(bad)? {
            let entry = entry.map_err(bad)?;
            if index.len() >= MAX_ARCHIVE_ENTRIES {
                return Err(format_err(format!(
                    "{}: more than {MAX_ARCHIVE_ENTRIES} entries",
                    path.display()
                )));
            }
            let kind = entry.header().entry_type();
            let name = entry.path().map_err(bad)?;
            let name = name.to_string_lossy();
            let name = name.trim_start_matches("./").to_string();
            if kind == tar::EntryType::Symlink {
                if let Some(t) = entry.link_name().map_err(bad)? {
                    links.insert(name, t.to_string_lossy().into_owned());
                }
            } else if kind == tar::EntryType::Regular {
                index.insert(name, (entry.raw_file_position(), entry.size()));
            }
        }
        Ok(Source::Tar {
            path: path.to_path_buf(),
            index,
            links,
        })
    }

    fn has(&self, rel: &str) -> bool {
        match self {
            Source::Dir(d) => {
                super::layer::clean_path(Path::new(rel)).is_ok_and(|c| open_in_dir(d, &c).is_ok())
            }
            Source::Tar { index, links, .. } => index.contains_key(&member(index, links, rel)),
        }
    }

    /// A file of the image (`rel` relative to its top) and its size.
    fn read(&self, rel: &str) -> Result<(Box<dyn Read>, u64), ImportError> {
        let what = |source| ImportError::Io {
            what: rel.to_string(),
            source,
        };
        match self {
            Source::Dir(d) => {
                let comps = super::layer::clean_path(Path::new(rel))
                    .map_err(|r| format_err(format!("{rel}: {r}")))?;
                let f = open_in_dir(d, &comps).map_err(what)?;
                let md = f.metadata().map_err(what)?;
                if !md.is_file() {
                    return Err(format_err(format!("{rel}: not a regular file")));
                }
                Ok((Box::new(f), md.len()))
            }
            Source::Tar { path, index, links } => {
                let &(off, size) = index
                    .get(&member(index, links, rel))
                    .ok_or_else(|| format_err(format!("{rel}: not in the archive")))?;
                let mut f = File::open(path).map_err(what)?;
                f.seek(SeekFrom::Start(off)).map_err(what)?;
                Ok((Box::new(f.take(size)), size))
            }
        }
    }
}

/// The regular member `rel` names, following symlinks between members (a few hops; names
/// are only keys of the archive's table, never host paths).
fn member(
    index: &HashMap<String, (u64, u64)>,
    links: &HashMap<String, String>,
    rel: &str,
) -> String {
    let mut cur = rel.to_string();
    for _ in 0..8 {
        if index.contains_key(&cur) {
            break;
        }
        let Some(t) = links.get(&cur) else { break };
        let mut parts: Vec<&str> = if t.starts_with('/') {
            Vec::new()
        } else {
            cur.rsplit_once('/')
                .map(|(d, _)| d.split('/').collect())
                .unwrap_or_default()
        };
        for c in t.split('/') {
            match c {
                "" | "." => {}
                ".." => {
                    parts.pop();
                }
                c => parts.push(c),
            }
        }
        cur = parts.join("/");
    }
    cur
}

/// Open `comps` under the layout directory without following symlinks (the layout is the
/// operator's, but its blobs are hashed as they are, not through links to elsewhere).
fn open_in_dir(dir: &File, comps: &[std::ffi::OsString]) -> io::Result<File> {
    use std::os::fd::{AsRawFd, FromRawFd};
    use std::os::unix::ffi::OsStrExt;
    let rel: PathBuf = comps.iter().collect();
    let c = std::ffi::CString::new(rel.as_os_str().as_bytes())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: open_how is plain data; zeroed is a valid value.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (libc::O_RDONLY | libc::O_CLOEXEC) as u64;
    how.resolve = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS;
    loop {
        // SAFETY: valid fd, C string and open_how.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                dir.as_raw_fd(),
                c.as_ptr(),
                &how as *const libc::open_how,
                std::mem::size_of::<libc::open_how>(),
            )
        };
        if fd >= 0 {
            // SAFETY: the kernel just returned this descriptor to us.
            return Ok(unsafe { File::from_raw_fd(fd as i32) });
        }
        let e = io::Error::last_os_error();
        if !matches!(e.raw_os_error(), Some(libc::EAGAIN) | Some(libc::EINTR)) {
            return Err(e);
        }
    }
}

/// A content descriptor.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Descriptor {
    #[serde(default)]
    media_type: String,
    digest: String,
    size: u64,
    #[serde(default)]
    platform: Option<Platform>,
    #[serde(default)]
    annotations: HashMap<String, String>,
}

#[derive(Debug, Clone, Deserialize)]
struct Platform {
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    os: String,
}

#[derive(Debug, Deserialize)]
struct Index {
    #[serde(default)]
    manifests: Vec<Descriptor>,
}

#[derive(Debug, Deserialize)]
struct Manifest {
    config: Descriptor,
    #[serde(default)]
    layers: Vec<Descriptor>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerManifest {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    #[serde(default)]
    layers: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
struct ConfigFile {
    #[serde(default)]
    config: Option<RunConfig>,
    rootfs: RootFs,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RunConfig {
    #[serde(default)]
    env: Option<Vec<String>>,
    #[serde(default)]
    working_dir: Option<String>,
    #[serde(default)]
    entrypoint: Option<Vec<String>>,
    #[serde(default)]
    cmd: Option<Vec<String>>,
    #[serde(default)]
    user: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct RootFs {
    #[serde(default)]
    diff_ids: Vec<String>,
}

/// The hex of a `sha256:` digest, or why it is not one.
fn sha256_hex(digest: &str) -> Result<&str, ImportError> {
    let hex = digest.strip_prefix("sha256:").ok_or_else(|| {
        format_err(format!(
            "digest {digest:?}: only sha256 digests are supported"
        ))
    })?;
    if hex.len() != 64
        || !hex
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    {
        return Err(format_err(format!(
            "digest {digest:?}: not 64 lowercase hex digits"
        )));
    }
    Ok(hex)
}

/// A reader that hashes what passes through it.
struct HashRead<R> {
    inner: R,
    hash: Sha256,
    n: u64,
}

impl<R: Read> HashRead<R> {
    fn new(inner: R) -> Self {
        HashRead {
            inner,
            hash: Sha256::new(),
            n: 0,
        }
    }
    /// Read to the end, then `sha256:<hex>` and the byte count.
    fn finish(mut self) -> io::Result<(String, u64)> {
        io::copy(&mut self, &mut io::sink())?;
        Ok((
            format!("sha256:{}", hex::encode(self.hash.finalize())),
            self.n,
        ))
    }
}

impl<R: Read> Read for HashRead<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        self.n += n as u64;
        Ok(n)
    }
}

/// Read a JSON document of at most `cap` bytes; when `digest` is given, check it.
fn read_json<T: serde::de::DeserializeOwned>(
    src: &Source,
    rel: &str,
    what: &str,
    cap: u64,
    expect: Option<(&str, u64)>,
) -> Result<T, ImportError> {
    let (r, size) = src.read(rel)?;
    if size > cap {
        return Err(ImportError::Json {
            what: what.to_string(),
            reason: format!("{size} bytes, more than the {cap} accepted"),
        });
    }
    if let Some((_, want)) = expect {
        if want != size {
            return Err(format_err(format!(
                "{what}: size {size} differs from the descriptor's {want}"
            )));
        }
    }
    let mut buf = Vec::new();
    let mut h = HashRead::new(r.take(cap + 1));
    h.read_to_end(&mut buf).map_err(|source| ImportError::Io {
        what: what.to_string(),
        source,
    })?;
    let (actual, _) = h.finish().map_err(|source| ImportError::Io {
        what: what.to_string(),
        source,
    })?;
    if let Some((expected, _)) = expect {
        if actual != expected {
            return Err(ImportError::Digest {
                what: what.to_string(),
                expected: expected.to_string(),
                actual,
            });
        }
    }
    serde_json::from_slice(&buf).map_err(|e| ImportError::Json {
        what: what.to_string(),
        reason: e.to_string(),
    })
}

fn blob_path(digest: &str) -> Result<String, ImportError> {
    Ok(format!("blobs/sha256/{}", sha256_hex(digest)?))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Compression {
    None,
    Gzip,
    Zstd,
    /// Look at the first bytes (docker archives do not say).
    Sniff,
}

fn compression_of(media_type: &str) -> Result<Compression, ImportError> {
    let t = media_type;
    if t.ends_with("+gzip") || t.ends_with(".tar.gzip") {
        Ok(Compression::Gzip)
    } else if t.ends_with("+zstd") {
        Ok(Compression::Zstd)
    } else if t.ends_with(".tar") || t.ends_with(".tar.diff") || t.is_empty() {
        Ok(Compression::None)
    } else {
        Err(format_err(format!(
            "layer media type {t:?} is not supported"
        )))
    }
}

/// One layer to apply.
struct LayerRef {
    rel: String,
    /// Digest and size of the blob as stored, when the format gives them.
    blob: Option<(String, u64)>,
    compression: Compression,
    diff_id: String,
}

/// Progress of an import, reported after each layer and every few MiB.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    /// 1-based layer number and the number of layers.
    pub layer: usize,
    pub layers: usize,
    /// Bytes of this layer's blob read so far, and its size.
    pub read: u64,
    pub total: u64,
}

/// What [`unpack`] found and did.
#[derive(Debug)]
pub struct Unpacked {
    pub format: &'static str,
    pub config_digest: String,
    pub layers: usize,
    pub entries: u64,
    pub bytes: u64,
    pub env: Vec<String>,
    pub working_dir: Option<String>,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub user: Option<String>,
    /// The image's own name for itself (ref.name annotation or first RepoTag), if any.
    pub reference: Option<String>,
}

/// The architecture name OCI uses for this machine.
fn oci_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// Pick the manifest for this machine from an index (following a nested index once).
fn choose_manifest(src: &Source, index: Index, depth: usize) -> Result<Descriptor, ImportError> {
    let usable: Vec<Descriptor> = index
        .manifests
        .into_iter()
        .filter(|d| {
            d.platform.as_ref().is_none_or(|p| {
                (p.os.is_empty() || p.os == "linux")
                    && (p.architecture.is_empty() || p.architecture == oci_arch())
            })
        })
        .collect();
    let d = match usable.as_slice() {
        [] => {
            return Err(format_err(format!(
                "index.json lists no manifest for linux/{}",
                oci_arch()
            )))
        }
        [one] => one.clone(),
        _ => {
            return Err(format_err(format!(
                "index.json lists {} manifests for linux/{}; import one image at a time",
                usable.len(),
                oci_arch()
            )))
        }
    };
    if d.media_type.ends_with("image.index.v1+json")
        || d.media_type.ends_with("manifest.list.v2+json")
    {
        if depth > 0 {
            return Err(format_err("nested image indexes deeper than one level"));
        }
        let inner: Index = read_json(
            src,
            &blob_path(&d.digest)?,
            "nested image index",
            MAX_MANIFEST_BYTES,
            Some((&d.digest, d.size)),
        )?;
        let mut chosen = choose_manifest(src, inner, depth + 1)?;
        if chosen.annotations.is_empty() {
            chosen.annotations = d.annotations;
        }
        return Ok(chosen);
    }
    Ok(d)
}

/// Read the image at `path` and apply its layers onto the empty directory `rootfs`.
pub fn unpack(
    path: &Path,
    rootfs: &Path,
    progress: &mut dyn FnMut(Progress),
) -> Result<Unpacked, ImportError> {
    let src = Source::open(path)?;
    let (format, config_rel, config_expect, layers, reference) = if src.has("index.json")
        && src.has("oci-layout")
    {
        let format = if matches!(src, Source::Dir(_)) {
            "oci-layout"
        } else {
            "oci-archive"
        };
        let index: Index = read_json(&src, "index.json", "index.json", MAX_MANIFEST_BYTES, None)?;
        let desc = choose_manifest(&src, index, 0)?;
        let reference = desc
            .annotations
            .get("org.opencontainers.image.ref.name")
            .cloned();
        let m: Manifest = read_json(
            &src,
            &blob_path(&desc.digest)?,
            "image manifest",
            MAX_MANIFEST_BYTES,
            Some((&desc.digest, desc.size)),
        )?;
        let layers = m
            .layers
            .iter()
            .map(|l| {
                Ok(LayerRef {
                    rel: blob_path(&l.digest)?,
                    blob: Some((l.digest.clone(), l.size)),
                    compression: compression_of(&l.media_type)?,
                    diff_id: String::new(),
                })
            })
            .collect::<Result<Vec<_>, ImportError>>()?;
        (
            format,
            blob_path(&m.config.digest)?,
            Some((m.config.digest.clone(), m.config.size)),
            layers,
            reference,
        )
    } else if src.has("manifest.json") {
        let list: Vec<DockerManifest> = read_json(
            &src,
            "manifest.json",
            "manifest.json",
            MAX_MANIFEST_BYTES,
            None,
        )?;
        let [m] = <[DockerManifest; 1]>::try_from(list).map_err(|l| {
            format_err(format!(
                "manifest.json lists {} images; import one image at a time",
                l.len()
            ))
        })?;
        // The config's name is its digest (`<hex>.json` or `blobs/sha256/<hex>`).
        let stem = m
            .config
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .trim_end_matches(".json");
        let digest = format!("sha256:{stem}");
        sha256_hex(&digest).map_err(|_| {
            format_err(format!(
                "manifest.json: config {:?} is not named by its sha256 digest",
                m.config
            ))
        })?;
        let layers = m
            .layers
            .iter()
            .map(|l| LayerRef {
                rel: l.clone(),
                blob: None,
                compression: Compression::Sniff,
                diff_id: String::new(),
            })
            .collect();
        let reference = m.repo_tags.and_then(|t| t.into_iter().next());
        // The size is not recorded; the digest check covers it.
        (
            "docker-archive",
            m.config.clone(),
            Some((digest, u64::MAX)),
            layers,
            reference,
        )
    } else {
        return Err(format_err(format!(
                "{}: neither an OCI image layout (oci-layout + index.json) nor a docker archive (manifest.json)",
                path.display()
            )));
    };
    let (cdigest, csize) = config_expect.unwrap_or_default();
    let config: ConfigFile = {
        let (_, size) = src.read(&config_rel)?;
        let size = if csize == u64::MAX { size } else { csize };
        read_json(
            &src,
            &config_rel,
            "image config",
            MAX_CONFIG_BYTES,
            Some((&cdigest, size)),
        )?
    };
    let mut layers = layers;
    if layers.len() > MAX_LAYERS {
        return Err(format_err(format!("more than {MAX_LAYERS} layers")));
    }
    if layers.len() != config.rootfs.diff_ids.len() {
        return Err(format_err(format!(
            "the manifest lists {} layers but the config's rootfs.diff_ids has {}",
            layers.len(),
            config.rootfs.diff_ids.len()
        )));
    }
    for (l, d) in layers.iter_mut().zip(&config.rootfs.diff_ids) {
        sha256_hex(d)?;
        l.diff_id = d.clone();
    }

    let mut applier = Applier::new(rootfs).map_err(|source| ImportError::Io {
        what: rootfs.display().to_string(),
        source,
    })?;
    let (mut entries, mut bytes) = (0, 0);
    let n = layers.len();
    for (i, l) in layers.iter().enumerate() {
        let io_err = |source| ImportError::Io {
            what: format!("layer {} ({})", i + 1, l.rel),
            source,
        };
        let (r, size) = src.read(&l.rel)?;
        if let Some((want, want_size)) = &l.blob {
            if *want_size != size {
                return Err(format_err(format!(
                    "layer {} ({}): size {size} differs from the manifest's {want_size}",
                    i + 1,
                    l.rel
                )));
            }
            // Verify the blob before any decompressor or tar parser sees it: a second read,
            // but hostile bytes that do not match the manifest never reach the parsers.
            let (digest, _) = HashRead::new(r).finish().map_err(io_err)?;
            if digest != *want {
                return Err(ImportError::Digest {
                    what: format!("layer {} blob", i + 1),
                    expected: want.clone(),
                    actual: digest,
                });
            }
        }
        let (r, _) = src.read(&l.rel)?;
        let mut outer = Counting {
            inner: r,
            read: 0,
            total: size,
            last: 0,
            layer: i + 1,
            layers: n,
            progress: &mut *progress,
        };
        let mut compression = l.compression;
        let mut head = [0u8; 4];
        let mut got = 0;
        if compression == Compression::Sniff {
            while got < 4 {
                let k = outer.read(&mut head[got..]).map_err(io_err)?;
                if k == 0 {
                    break;
                }
                got += k;
            }
            compression = match head[..got] {
                [0x1f, 0x8b, ..] => Compression::Gzip,
                [0x28, 0xb5, 0x2f, 0xfd] => Compression::Zstd,
                _ => Compression::None,
            };
        }
        let stats = {
            let chained = io::Cursor::new(head[..got].to_vec()).chain(&mut outer);
            let decoded: Box<dyn Read + '_> = match compression {
                Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(chained)),
                Compression::Zstd => Box::new(zstd::Decoder::new(chained).map_err(io_err)?),
                _ => Box::new(chained),
            };
            let mut inner = HashRead::new(decoded);
            let stats =
                applier
                    .apply(ZeroPad::new(&mut inner))
                    .map_err(|source| ImportError::Layer {
                        index: i + 1,
                        digest: l.diff_id.clone(),
                        source,
                    })?;
            let (diff, _) = inner.finish().map_err(io_err)?;
            if diff != l.diff_id {
                return Err(ImportError::Digest {
                    what: format!("layer {} uncompressed (diff_id)", i + 1),
                    expected: l.diff_id.clone(),
                    actual: diff,
                });
            }
            stats
        };
        io::copy(&mut outer, &mut io::sink()).map_err(io_err)?;
        entries += stats.entries;
        bytes += stats.bytes;
    }
    let rc = config.config.unwrap_or_default();
    Ok(Unpacked {
        format,
        config_digest: cdigest,
        layers: n,
        entries,
        bytes,
        env: rc.env.unwrap_or_default(),
        working_dir: rc.working_dir.filter(|w| !w.is_empty()),
        entrypoint: rc.entrypoint.unwrap_or_default(),
        cmd: rc.cmd.unwrap_or_default(),
        user: rc.user.filter(|u| !u.is_empty()),
        reference,
    })
}

/// Counts bytes read from a blob and reports progress every 4 MiB and at its end.
struct Counting<'a, R> {
    inner: R,
    read: u64,
    total: u64,
    last: u64,
    layer: usize,
    layers: usize,
    progress: &'a mut dyn FnMut(Progress),
}

impl<R: Read> Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        if self.read - self.last >= 4 << 20 || (n == 0 && self.last != self.read) {
            self.last = self.read;
            (self.progress)(Progress {
                layer: self.layer,
                layers: self.layers,
                read: self.read,
                total: self.total,
            });
        }
        Ok(n)
    }
}

/// Ends a tar stream cleanly if its writer did not: zeros up to the next 512-byte block and
/// two empty blocks after the real end. umoci 0.4 writes layers without the end-of-archive
/// blocks and without padding the last member's data (Go's reader and containerd accept
/// them; the tar crate would stop with "unexpected EOF"). The padding is not hashed: the
/// diff_id is computed on what the image really contains.
struct ZeroPad<R> {
    inner: R,
    n: u64,
    pad: Option<u64>,
}

impl<R: Read> ZeroPad<R> {
    fn new(inner: R) -> Self {
        ZeroPad {
            inner,
            n: 0,
            pad: None,
        }
    }
}

impl<R: Read> Read for ZeroPad<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pad.is_none() {
            let k = self.inner.read(buf)?;
            if k > 0 || buf.is_empty() {
                self.n += k as u64;
                return Ok(k);
            }
            self.pad = Some((512 - self.n % 512) % 512 + 1024);
        }
        let left = self.pad.unwrap_or(0);
        let k = (left as usize).min(buf.len());
        buf[..k].fill(0);
        self.pad = Some(left - k as u64);
        Ok(k)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_members_follow_links_between_members() {
        let mut index = HashMap::new();
        index.insert("abc.tar".to_string(), (0, 1));
        let mut links = HashMap::new();
        links.insert("id/layer.tar".to_string(), "../abc.tar".to_string());
        links.insert("loop".to_string(), "loop".to_string());
        assert_eq!(member(&index, &links, "id/layer.tar"), "abc.tar");
        assert_eq!(member(&index, &links, "abc.tar"), "abc.tar");
        assert_eq!(member(&index, &links, "loop"), "loop");
        assert_eq!(member(&index, &links, "missing"), "missing");
    }

    #[test]
    fn unterminated_tars_are_padded_not_hashed() {
        let mut out = Vec::new();
        ZeroPad::new(&b"abc"[..]).read_to_end(&mut out).unwrap();
        assert_eq!(out.len(), 512 + 1024);
        assert_eq!(&out[..3], b"abc");
        assert!(out[3..].iter().all(|b| *b == 0));
        let mut out = Vec::new();
        ZeroPad::new(&[1u8; 512][..]).read_to_end(&mut out).unwrap();
        assert_eq!(out.len(), 512 + 1024);
    }

    #[test]
    fn digests_are_sha256_lowercase_hex() {
        let ok = format!("sha256:{}", "0a".repeat(32));
        assert!(sha256_hex(&ok).is_ok());
        for bad in [
            "sha512:00".to_string(),
            format!("sha256:{}", "0A".repeat(32)),
            "sha256:../../etc/passwd".to_string(),
            format!("sha256:{}", "0".repeat(63)),
        ] {
            assert!(sha256_hex(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn layer_media_types() {
        use Compression as C;
        for (t, c) in [
            ("application/vnd.oci.image.layer.v1.tar", C::None),
            ("application/vnd.oci.image.layer.v1.tar+gzip", C::Gzip),
            ("application/vnd.oci.image.layer.v1.tar+zstd", C::Zstd),
            ("application/vnd.docker.image.rootfs.diff.tar.gzip", C::Gzip),
            (
                "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
                C::Gzip,
            ),
        ] {
            assert_eq!(compression_of(t).unwrap(), c, "{t}");
        }
        assert!(compression_of("application/vnd.oci.image.layer.v1.tar+bzip2").is_err());
    }
}
