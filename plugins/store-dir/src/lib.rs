//! `store-dir`: a vt store scheme as a WebAssembly component. Each block
//! is a file of its own under the directory the vtrc clause preopens
//! (`/store` to the plugin), named by the block's hash text, as the
//! reference's S3 store names its objects: `blocks/9f/sha3_256:9f86…`
//! (the first two hex digits make a level of directories, so that none
//! holds more than a few thousand files). Archives are files under
//! `archives/`, appended to.
//!
//! It sees nothing but that directory: the host grants no other file,
//! no network, no clock.

use std::fs;
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

use vt_sdk::store::{check_hash, BlockStore, StoreError, StoreInfo, StoreStats};

/// A store in a directory.
pub struct DirStore {
    blocks: PathBuf,
    archives: PathBuf,
}

fn io(what: &str, path: &Path, e: std::io::Error) -> StoreError {
    StoreError::Io(format!("{what} {}: {e}", path.display()))
}

/// The file of block `hash`, once [`check_hash`] says it is a hash's
/// text (then it is safe as a file name).
fn block_path(blocks: &Path, hash: &str) -> Result<PathBuf, StoreError> {
    check_hash(hash)?;
    let hex = hash.split_once(':').map_or("", |(_, h)| h);
    Ok(blocks.join(&hex[..2]).join(hash))
}

/// Checks that archive `name` is safe as a file name.
fn archive_path(archives: &Path, name: &str) -> Result<PathBuf, StoreError> {
    if name.is_empty() || name.starts_with('.') || name.contains(['/', '\0']) {
        return Err(StoreError::Unsupported(format!(
            "archive name {name:?}: store-dir keeps archives whose names are plain file names"
        )));
    }
    Ok(archives.join(name))
}

/// File `p`'s bytes, `None` if there is no such file.
fn read_file(p: &Path) -> Result<Option<Vec<u8>>, StoreError> {
    match fs::read(p) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io("read", p, e)),
    }
}

impl BlockStore for DirStore {
    fn info() -> StoreInfo {
        StoreInfo {
            name: "store-dir".into(),
            version: env!("CARGO_PKG_VERSION").into(),
        }
    }

    fn open(root: Option<&Path>, config: &[(String, String)]) -> Result<Self, StoreError> {
        for (k, _) in config {
            if k != "preopen" {
                return Err(StoreError::Config(format!(
                    "store-dir takes only preopen (the directory to keep blocks in), not {k:?}"
                )));
            }
        }
        let root = root.ok_or_else(|| {
            StoreError::Config(
                "store-dir needs a directory: set preopen = \"DIR\" in its clause".into(),
            )
        })?;
        let blocks = root.join("blocks");
        let archives = root.join("archives");
        for d in [&blocks, &archives] {
            fs::create_dir_all(d).map_err(|e| io("create", d, e))?;
        }
        // The 256 directories of blocks, made once here rather than
        // looked for at every put.
        for i in 0..256 {
            let d = blocks.join(format!("{i:02x}"));
            match fs::create_dir(&d) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
                Err(e) => return Err(io("create", &d, e)),
            }
        }
        Ok(DirStore { blocks, archives })
    }

    fn get(&self, hash: &str) -> Result<Option<Vec<u8>>, StoreError> {
        read_file(&block_path(&self.blocks, hash)?)
    }

    fn put(&self, hash: &str, data: &[u8]) -> Result<bool, StoreError> {
        let p = block_path(&self.blocks, hash)?;
        if p.exists() {
            return Ok(false);
        }
        let dir = p.parent().unwrap_or(&self.blocks);
        // Written aside and renamed: a block file is whole or absent.
        let tmp = dir.join(format!(".{hash}.tmp"));
        fs::write(&tmp, data)
            .and_then(|()| fs::rename(&tmp, &p))
            .map_err(|e| io("write", &p, e))?;
        Ok(true)
    }

    fn contains(&self, hash: &str) -> Result<bool, StoreError> {
        Ok(block_path(&self.blocks, hash)?.exists())
    }

    fn stats(&self) -> Result<StoreStats, StoreError> {
        let mut st = StoreStats::default();
        let top = fs::read_dir(&self.blocks).map_err(|e| io("list", &self.blocks, e))?;
        for d in top.flatten() {
            let Ok(files) = fs::read_dir(d.path()) else {
                continue;
            };
            for f in files.flatten() {
                if f.file_name().to_string_lossy().starts_with('.') {
                    continue;
                }
                let len = f.metadata().map(|m| m.len()).unwrap_or(0);
                st.blocks += 1;
                st.raw_bytes += len;
                st.stored_bytes += len;
            }
        }
        Ok(st)
    }

    fn archive_names(&self) -> Result<Vec<String>, StoreError> {
        let rd = fs::read_dir(&self.archives).map_err(|e| io("list", &self.archives, e))?;
        let mut names: Vec<String> = rd
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| !n.starts_with('.'))
            .collect();
        names.sort();
        Ok(names)
    }

    fn archive_read(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        read_file(&archive_path(&self.archives, name)?)
    }

    fn archive_append(&self, name: &str, lines: &[u8]) -> Result<(), StoreError> {
        let p = archive_path(&self.archives, name)?;
        fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&p)
            .and_then(|mut f| f.write_all(lines))
            .map_err(|e| io("append to", &p, e))
    }
}

vt_sdk::export_store!(DirStore);

#[cfg(test)]
mod tests {
    #[test]
    fn blocks_and_archives_round_trip_natively() {
        let d = std::env::temp_dir().join(format!("store-dir-test-{}", std::process::id()));
        vt_sdk::testing::store_round_trip::<super::DirStore>(&d, &[]);
        let _ = std::fs::remove_dir_all(&d);
    }
}
