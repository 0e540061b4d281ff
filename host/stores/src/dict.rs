//! Trained zstd dictionaries for a DataDir (see `vt-datadir.5`).
//!
//! Blocks are compressed one by one so any block can be read alone; small
//! blocks then compress poorly, because each starts with an empty history.
//! A dictionary trained on the store's first few megabytes of blocks gives
//! small records (under [`DICT_BELOW`]: directory and indirect blocks,
//! groups sealed small) that history. Small data blocks are grouped
//! (`vtd.5`), and a group or a large block has history of its own; it is
//! given the dictionary too only when compressed above level 3
//! ([`Dictionaries::compress_at`], `effort.rs`), where the dictionary's
//! cost is small beside the compression's own.
//!
//! A DataDir without a dictionary collects samples from the blocks it adds
//! until it has [`SAMPLE_BYTES`], trains a dictionary, writes it durably to
//! `dicts/ID.zdict` (ID is the dictionary's own zstd ID, which each
//! compressed frame also records) and compresses later small records with
//! it.
//! Readers find a frame's dictionary by that ID.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use vt_core::{Error, Result};

/// Sample bytes collected before training.
pub const SAMPLE_BYTES: usize = 4 << 20;
/// At most this much of one block is used as a sample.
const SAMPLE_MAX: usize = 64 << 10;
/// Size of a trained dictionary.
const DICT_SIZE: usize = 112 << 10;
/// Inputs smaller than this are compressed with the dictionary; larger
/// ones (group records, blocks of 16 KiB or more) without: their own first
/// kilobytes give them the history a dictionary would. On kernel sources in
/// 256 KiB pieces the dictionary saved 1% of the bytes and cost a fifth of
/// the compression speed (its tables copied into the context for every
/// frame, matches searched in two buffers).
pub const DICT_BELOW: usize = 16 << 10;
/// zstd hash and chain table sizes (log2) for inputs without a dictionary:
/// level 3 picks 2^16-2^17 entries, which for inputs of at most 256 KiB
/// buys 0.3% fewer bytes for 13-25% more compression time (best of several
/// runs of kernel sources in 256 KiB pieces: 254 MB/s against 224 MB/s).
const TABLE_LOG: u32 = 15;

thread_local! {
    /// This thread's compressors, most recently used first: (level,
    /// dictionary ID or 0, context). A few: a DataDir compresses at one or
    /// two levels (`effort.rs`), with and without the dictionary.
    static COMPRESSORS: RefCell<Vec<(i32, u32, zstd::bulk::Compressor<'static>)>> =
        const { RefCell::new(Vec::new()) };
    /// This thread's decompressors by dictionary ID (0: none).
    static DECOMPRESSORS: RefCell<HashMap<u32, zstd::bulk::Decompressor<'static>>> =
        RefCell::new(HashMap::new());
}

/// A compression context at `level`, with dictionary `dict` (its ID and
/// bytes) or without.
fn compressor(
    level: i32,
    dict: Option<&(u32, Arc<Vec<u8>>)>,
) -> Result<zstd::bulk::Compressor<'static>> {
    use zstd::zstd_safe::{CParameter, DictAttachPref};
    let set = |z: &mut zstd::bulk::Compressor<'static>, p| {
        z.set_parameter(p)
            .map_err(|e| Error::io("configure zstd context", e))
    };
    match dict {
        Some((_, d)) => {
            let mut z = zstd::bulk::Compressor::with_dictionary(level, d)
                .map_err(|e| Error::io("create zstd context", e))?;
            // A small input refers to the dictionary's tables: copying
            // them into the context costs more than compressing it.
            set(
                &mut z,
                CParameter::ForceAttachDict(DictAttachPref::ForceAttach),
            )?;
            Ok(z)
        }
        None => {
            let mut z = zstd::bulk::Compressor::new(level)
                .map_err(|e| Error::io("create zstd context", e))?;
            if level <= crate::effort::BASE_LEVEL {
                set(&mut z, CParameter::HashLog(TABLE_LOG))?;
                set(&mut z, CParameter::ChainLog(TABLE_LOG))?;
            }
            Ok(z)
        }
    }
}

/// The dictionaries of one DataDir.
pub struct Dictionaries {
    dir: PathBuf,
    /// Every dictionary known, by ID.
    known: RwLock<HashMap<u32, Arc<Vec<u8>>>>,
    /// The dictionary new blocks are compressed with.
    active: RwLock<Option<(u32, Arc<Vec<u8>>)>>,
    /// Samples being collected, while there is no dictionary yet.
    samples: Mutex<Option<(Vec<Vec<u8>>, usize)>>,
}

fn dict_id(dict: &[u8]) -> Option<u32> {
    zstd::zstd_safe::get_dict_id_from_dict(dict).map(|n| n.get())
}

impl Dictionaries {
    /// Loads the dictionaries in `dir` (created if missing). The newest
    /// becomes active; with none, sample collection starts.
    pub fn open(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io(format!("create {}", dir.display()), e))?;
        let mut known = HashMap::new();
        let mut newest: Option<(std::time::SystemTime, u32)> = None;
        let rd =
            std::fs::read_dir(dir).map_err(|e| Error::io(format!("list {}", dir.display()), e))?;
        for ent in rd {
            let ent = ent.map_err(|e| Error::io(format!("list {}", dir.display()), e))?;
            let path = ent.path();
            if path.extension().is_none_or(|x| x != "zdict") {
                continue;
            }
            let bytes = std::fs::read(&path)
                .map_err(|e| Error::io(format!("read {}", path.display()), e))?;
            let Some(id) = dict_id(&bytes) else {
                tracing::warn!("{}: not a zstd dictionary; ignored", path.display());
                continue;
            };
            let mtime = ent
                .metadata()
                .and_then(|m| m.modified())
                .unwrap_or(std::time::UNIX_EPOCH);
            if newest.is_none_or(|(t, _)| mtime > t) {
                newest = Some((mtime, id));
            }
            known.insert(id, Arc::new(bytes));
        }
        let active = newest.and_then(|(_, id)| known.get(&id).map(|d| (id, d.clone())));
        let samples = active.is_none().then(|| (Vec::new(), 0));
        Ok(Dictionaries {
            dir: dir.to_path_buf(),
            known: RwLock::new(known),
            active: RwLock::new(active),
            samples: Mutex::new(samples),
        })
    }

    /// No dictionaries, and none to be found or trained: for readers of
    /// records that never use one (the packs of an S3 store, `vt-s3.5`),
    /// so that a frame naming a dictionary is refused, not looked up.
    pub fn none() -> Self {
        Dictionaries {
            dir: PathBuf::new(),
            known: RwLock::default(),
            active: RwLock::new(None),
            samples: Mutex::new(None),
        }
    }

    /// Offers a block as a training sample; trains once enough are in.
    pub fn sample(&self, data: &[u8]) {
        let Ok(mut g) = self.samples.lock() else {
            return;
        };
        let Some((samples, total)) = g.as_mut() else {
            return;
        };
        let s = &data[..data.len().min(SAMPLE_MAX)];
        samples.push(s.to_vec());
        *total += s.len();
        if *total < SAMPLE_BYTES {
            return;
        }
        let (samples, _) = g.take().unwrap_or_default();
        drop(g);
        if let Err(e) = self.train(&samples) {
            tracing::warn!("DataDir: no compression dictionary: {e}");
        }
    }

    fn train(&self, samples: &[Vec<u8>]) -> Result<()> {
        let dict = zstd::dict::from_samples(samples, DICT_SIZE)
            .map_err(|e| Error::io("train zstd dictionary", e))?;
        let id =
            dict_id(&dict).ok_or_else(|| Error::Store("trained dictionary has no ID".into()))?;
        let path = self.dir.join(format!("{id:08x}.zdict"));
        let tmp = self.dir.join(format!(".{id:08x}.zdict.tmp"));
        // Durable before any block compressed with it can be.
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&dict)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)?;
            std::fs::File::open(&self.dir)?.sync_all()
        };
        write().map_err(|e| Error::io(format!("write {}", path.display()), e))?;
        let dict = Arc::new(dict);
        if let Ok(mut k) = self.known.write() {
            k.insert(id, dict.clone());
        }
        if let Ok(mut a) = self.active.write() {
            *a = Some((id, dict));
        }
        tracing::info!("DataDir: trained compression dictionary {id:08x}");
        Ok(())
    }

    /// Compresses `data`; returns the frame and whether it needs a
    /// dictionary. Only inputs under [`DICT_BELOW`] use the dictionary.
    pub fn compress(&self, data: &[u8], level: i32) -> Result<(Vec<u8>, bool)> {
        self.compress_at(data, level, data.len() < DICT_BELOW)
    }

    /// Compresses `data` at `level`, with the active dictionary if
    /// `with_dict` and there is one; returns the frame and whether it
    /// needs the dictionary. Above the base level inputs of any size use
    /// it: there its cost is small beside the compression's own.
    pub fn compress_at(&self, data: &[u8], level: i32, with_dict: bool) -> Result<(Vec<u8>, bool)> {
        let active = if with_dict {
            self.active.read().ok().and_then(|a| a.clone())
        } else {
            None
        };
        let id = active.as_ref().map_or(0, |(id, _)| *id);
        COMPRESSORS.with(|c| {
            let mut c = c.borrow_mut();
            match c.iter().position(|(l, i, _)| *l == level && *i == id) {
                Some(0) => {}
                Some(at) => {
                    let z = c.remove(at);
                    c.insert(0, z);
                }
                None => {
                    c.truncate(3);
                    c.insert(0, (level, id, compressor(level, active.as_ref())?));
                }
            }
            let out = c[0]
                .2
                .compress(data)
                .map_err(|e| Error::io("compress block", e))?;
            Ok((out, id != 0))
        })
    }

    /// Decompresses a frame of `raw_len` bytes, loading its dictionary if
    /// it names one.
    pub fn decompress(&self, frame: &[u8], raw_len: usize) -> std::result::Result<Vec<u8>, String> {
        let id = zstd::zstd_safe::get_dict_id_from_frame(frame).map_or(0, |n| n.get());
        DECOMPRESSORS.with(|d| {
            let mut d = d.borrow_mut();
            let z = match d.entry(id) {
                std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
                std::collections::hash_map::Entry::Vacant(v) => {
                    let dict = if id == 0 {
                        Arc::new(Vec::new())
                    } else {
                        self.load(id)?
                    };
                    v.insert(
                        zstd::bulk::Decompressor::with_dictionary(&dict)
                            .map_err(|e| format!("cannot create zstd context: {e}"))?,
                    )
                }
            };
            z.decompress(frame, raw_len)
                .map_err(|e| format!("cannot decompress: {e}"))
        })
    }

    /// Fails, naming the file, if `frame` needs a dictionary that cannot
    /// be loaded.
    pub fn available_for(&self, frame: &[u8]) -> std::result::Result<(), String> {
        match zstd::zstd_safe::get_dict_id_from_frame(frame) {
            Some(id) => self.load(id.get()).map(|_| ()),
            None => Ok(()),
        }
    }

    /// Dictionary `id`, from memory or from `dicts/`.
    fn load(&self, id: u32) -> std::result::Result<Arc<Vec<u8>>, String> {
        if let Some(d) = self.known.read().ok().and_then(|k| k.get(&id).cloned()) {
            return Ok(d);
        }
        if self.dir.as_os_str().is_empty() {
            return Err(format!(
                "needs compression dictionary {id:08x}, and this store has none"
            ));
        }
        // Another process may have trained it since we opened.
        let path = self.dir.join(format!("{id:08x}.zdict"));
        let bytes = std::fs::read(&path)
            .map_err(|e| format!("needs compression dictionary {}: {e}", path.display()))?;
        let d = Arc::new(bytes);
        if let Ok(mut k) = self.known.write() {
            k.insert(id, d.clone());
        }
        Ok(d)
    }
}
