//! In-memory storage for unit tests: the same no-clobber publish as the real backends, with
//! directories implied by the paths of the files in them. It records which paths were made
//! durable, so that tests can check the ordering rules of FORMAT.md.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io::{self, Cursor, Read, Write};
use std::rc::Rc;

use super::{DirEntry, NewObject, Publish, Storage};
use crate::error::Result;

#[derive(Default, Clone)]
pub struct MemoryStorage {
    pub files: Rc<RefCell<BTreeMap<String, Vec<u8>>>>,
    pub durable_calls: Rc<RefCell<Vec<String>>>,
}

struct MemoryObject {
    storage: MemoryStorage,
    path: String,
    bytes: Cursor<Vec<u8>>,
}

impl Write for MemoryObject {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.bytes.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl NewObject for MemoryObject {
    fn write_header(&mut self, header: &[u8]) -> io::Result<()> {
        self.bytes.get_mut()[..header.len()].copy_from_slice(header);
        Ok(())
    }

    fn commit(self: Box<Self>) -> Result<Publish> {
        let mut files = self.storage.files.borrow_mut();
        if files.contains_key(&self.path) {
            return Ok(Publish::AlreadyExists);
        }
        files.insert(self.path.clone(), self.bytes.into_inner());
        Ok(Publish::Created)
    }

    fn commit_replacing(self: Box<Self>) -> Result<()> {
        self.storage
            .files
            .borrow_mut()
            .insert(self.path.clone(), self.bytes.into_inner());
        Ok(())
    }
}

impl Storage for MemoryStorage {
    fn describe(&self) -> String {
        "memory".into()
    }
    fn check_root(&self) -> Result<()> {
        Ok(())
    }
    fn open_read(&self, path: &str) -> Result<Option<Box<dyn Read + '_>>> {
        Ok(self
            .files
            .borrow()
            .get(path)
            .map(|b| Box::new(Cursor::new(b.clone())) as Box<dyn Read>))
    }
    fn create(&self, path: &str) -> Result<Box<dyn NewObject + '_>> {
        self.create_with_header(path, 0)
    }
    fn create_with_header(&self, path: &str, header_len: usize) -> Result<Box<dyn NewObject + '_>> {
        let mut bytes = Cursor::new(vec![0u8; header_len]);
        bytes.set_position(header_len as u64);
        Ok(Box::new(MemoryObject {
            storage: self.clone(),
            path: path.into(),
            bytes,
        }))
    }
    fn make_durable(&self, path: &str) -> Result<()> {
        self.durable_calls.borrow_mut().push(path.into());
        Ok(())
    }
    fn list(&self, dir: &str) -> Result<Vec<DirEntry>> {
        let prefix = if dir.is_empty() {
            String::new()
        } else {
            format!("{dir}/")
        };
        let mut out: Vec<DirEntry> = Vec::new();
        for (path, bytes) in self.files.borrow().iter() {
            let Some(rest) = path.strip_prefix(&prefix) else {
                continue;
            };
            let (name, is_dir) = match rest.split_once('/') {
                Some((d, _)) => (d, true),
                None => (rest, false),
            };
            if name.starts_with('.') || out.last().is_some_and(|e| e.name == name) {
                continue;
            }
            out.push(DirEntry {
                name: name.to_string(),
                is_dir,
                size: if is_dir { 0 } else { bytes.len() as u64 },
                modified: None,
            });
        }
        Ok(out)
    }
    fn list_temporaries(&self, dir: &str) -> Result<Vec<DirEntry>> {
        let prefix = if dir.is_empty() {
            String::new()
        } else {
            format!("{dir}/")
        };
        Ok(self
            .files
            .borrow()
            .iter()
            .filter_map(|(path, bytes)| {
                let name = path.strip_prefix(&prefix)?;
                (!name.contains('/') && super::is_temporary(name, false)).then(|| DirEntry {
                    name: name.to_string(),
                    is_dir: false,
                    size: bytes.len() as u64,
                    modified: None,
                })
            })
            .collect())
    }
    fn remove(&self, path: &str) -> Result<bool> {
        Ok(self.files.borrow_mut().remove(path).is_some())
    }
    fn remove_dir_if_empty(&self, dir: &str) -> Result<bool> {
        // Directories exist only through their files: an empty one is already gone.
        let prefix = format!("{dir}/");
        Ok(!self.files.borrow().keys().any(|k| k.starts_with(&prefix)))
    }
    fn sync_directory(&self, dir: &str) -> Result<()> {
        self.durable_calls.borrow_mut().push(format!("{dir}/"));
        Ok(())
    }
}
