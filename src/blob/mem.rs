//! [`MemBlob`]: a [`Blob`] in memory, for tests and as the base of fault-injecting wrappers.

use super::{check_name, Blob, BlobBytes, BlobWriter};
use crate::error::Result;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;

/// Objects in a map behind a mutex. Cloning shares the objects (a clone sees what the original commits),
/// which lets a test "reopen" a store over the same blob.
#[derive(Clone, Default)]
pub struct MemBlob {
    objects: Arc<Mutex<HashMap<String, Arc<[u8]>>>>,
}

impl MemBlob {
    /// An empty blob.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Blob for MemBlob {
    fn get(&self, name: &str) -> Result<Option<BlobBytes>> {
        Ok(self.objects.lock().get(name).map(|b| BlobBytes::Heap(b.clone())))
    }

    fn create(&self, name: &str) -> Result<Box<dyn BlobWriter>> {
        check_name(name)?;
        Ok(Box::new(MemWriter {
            objects: self.objects.clone(),
            name: name.to_string(),
            bytes: Vec::new(),
        }))
    }

    fn delete(&self, name: &str) -> Result<()> {
        self.objects.lock().remove(name);
        Ok(())
    }

    fn list(&self) -> Result<Vec<String>> {
        Ok(self.objects.lock().keys().cloned().collect())
    }

    fn location(&self) -> String {
        "mem:".to_string()
    }
}

struct MemWriter {
    objects: Arc<Mutex<HashMap<String, Arc<[u8]>>>>,
    name: String,
    bytes: Vec<u8>,
}

impl BlobWriter for MemWriter {
    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.bytes.extend_from_slice(bytes);
        Ok(())
    }

    fn len(&self) -> u64 {
        self.bytes.len() as u64
    }

    fn commit(self: Box<Self>) -> Result<()> {
        let MemWriter { objects, name, bytes } = *self;
        objects.lock().insert(name, bytes.into());
        Ok(())
    }
}
