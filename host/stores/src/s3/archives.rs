//! Named archives in an S3 store (`vt-s3.5`): one object per append,
//! `archives/NAME/NANOS-RAND.lines`, so that two clients appending at
//! once never overwrite each other's lines — without the conditional
//! writes that not every S3-compatible server has. A replace (`vt
//! forget`) writes a `.base` object holding the whole text and deletes
//! the objects before it; a read starts at the newest `.base`.

use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use futures::StreamExt;
use tokio::runtime::Handle;

use vt_core::{archive, Error, Result};

use super::bucket::Bucket;

/// Concurrent GETs of one archive's objects.
const FETCHES: usize = 8;

/// Characters object_store would escape in a key (so the key would not
/// be the name): refused in archive names.
const ESCAPED: &str = "\\{^}%`]\"><[~#|*?";

/// Checks that `name` can name an archive in an S3 store: what every
/// store accepts ([`archive::check_name`]), not starting with `.`, and
/// none of the characters that cannot appear in a key as they are.
pub fn check_name(name: &str) -> Result<()> {
    archive::check_name(name)?;
    if name.starts_with('.') {
        return Err(Error::decode(
            "archive name",
            format!("{name:?}: an archive name in an S3 store may not start with '.'"),
        ));
    }
    if let Some(c) = name.chars().find(|&c| ESCAPED.contains(c)) {
        return Err(Error::decode(
            "archive name",
            format!("{name:?}: an archive name in an S3 store may not hold {c:?} (nor any of {ESCAPED})"),
        ));
    }
    Ok(())
}

/// The archives of one store.
pub struct Archives<'a> {
    /// The bucket.
    pub bucket: &'a Bucket,
    /// The store's runtime.
    pub rt: &'a Handle,
    /// The last timestamp used, so that one client's objects sort in the
    /// order it wrote them even if the clock stands still or steps back.
    pub clock: &'a AtomicU64,
}

impl Archives<'_> {
    /// A new object name under `name`'s directory with extension `ext`:
    /// nanoseconds since the epoch (20 digits) and 16 random hex digits.
    fn new_key(&self, name: &str, ext: &str) -> String {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let mut prev = self.clock.load(Ordering::SeqCst);
        let t = loop {
            let t = now.max(prev + 1);
            match self
                .clock
                .compare_exchange(prev, t, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) => break t,
                Err(p) => prev = p,
            }
        };
        let rand = uuid::Uuid::new_v4().simple().to_string();
        format!("archives/{name}/{t:020}-{}.{ext}", &rand[..16])
    }

    /// The object names (file names) of archive `name`, sorted.
    fn objects(&self, name: &str) -> Result<Vec<String>> {
        let mut files: Vec<String> = self
            .rt
            .block_on(self.bucket.list(&format!("archives/{name}")))?
            .into_iter()
            .filter_map(|m| m.location.filename().map(str::to_owned))
            .filter(|f| f.ends_with(".lines") || f.ends_with(".base"))
            .collect();
        files.sort();
        Ok(files)
    }

    /// The names of the archives, sorted.
    pub fn names(&self) -> Result<Vec<String>> {
        let mut names = self.rt.block_on(self.bucket.list_dirs("archives"))?;
        names.sort();
        Ok(names)
    }

    /// Archive `name`'s text: the newest `.base` and every `.lines` after
    /// it, in order; `None` if it has no objects.
    pub fn read(&self, name: &str) -> Result<Option<Vec<u8>>> {
        check_name(name)?;
        let files = self.objects(name)?;
        if files.is_empty() {
            return Ok(None);
        }
        let start = files
            .iter()
            .rposition(|f| f.ends_with(".base"))
            .unwrap_or(0);
        let bucket = self.bucket;
        let keys: Vec<_> = files[start..]
            .iter()
            .map(|f| bucket.key(&format!("archives/{name}/{f}")))
            .collect();
        let parts: Vec<Result<Option<Bytes>>> = self.rt.block_on(
            futures::stream::iter(keys.iter())
                .map(|k| bucket.get(k))
                .buffered(FETCHES)
                .collect(),
        );
        let mut text = Vec::new();
        for p in parts {
            // Gone since the listing: a replace deleted it, and its lines
            // are in the newer base (which this read missed: rare, and
            // the next read sees it).
            if let Some(b) = p? {
                text.extend_from_slice(&b);
            }
        }
        Ok(Some(text))
    }

    /// Appends `lines` to archive `name` as an object of its own.
    pub fn append(&self, name: &str, lines: &[u8]) -> Result<()> {
        check_name(name)?;
        archive::check_lines(lines)?;
        let key = self.bucket.key(&self.new_key(name, "lines"));
        self.rt
            .block_on(self.bucket.put(&key, Bytes::copy_from_slice(lines)))
    }

    /// Replaces archive `name` with `text`: writes it as a `.base`, then
    /// deletes every object that sorts before it.
    pub fn replace(&self, name: &str, text: &[u8]) -> Result<()> {
        check_name(name)?;
        archive::check_lines(text)?;
        let rel = self.new_key(name, "base");
        let base = rel.rsplit('/').next().unwrap_or_default().to_owned();
        let key = self.bucket.key(&rel);
        self.rt
            .block_on(self.bucket.put(&key, Bytes::copy_from_slice(text)))?;
        for f in self.objects(name)? {
            if f >= base {
                break;
            }
            let old = self.bucket.key(&format!("archives/{name}/{f}"));
            self.rt.block_on(self.bucket.delete(&old))?;
        }
        Ok(())
    }
}
