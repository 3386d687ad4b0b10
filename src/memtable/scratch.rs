//! [`Scratch`]: the buffers of finished consolidations ([`super::Consolidated`]), kept for the next seal or
//! spill of the store instead of going back to the allocator.

use super::consolidated::ConsolidatedEntry;

/// Buffers of finished consolidations kept for the next ones (one store's seals and spills): at most two
/// entry buffers (a seal's partitioned input and its output) and one arena, and at most `cap_bytes` of
/// capacity in all (`Options::memtable_budget_bytes` / 4: a buffer beyond it is freed, as before). Peak
/// memory is unchanged (a seal holds these buffers while it runs); between seals the store keeps them
/// instead of returning them to the allocator, which unmaps them (glibc maps every allocation past its
/// mmap threshold, at most 32 MiB, on its own) and faults them in again on the next seal.
#[derive(Default)]
pub(crate) struct Scratch {
    cap_bytes: usize,
    spare: parking_lot::Mutex<Spare>,
}

#[derive(Default)]
struct Spare {
    bytes: Option<Vec<u8>>,
    entries: Vec<Vec<ConsolidatedEntry>>,
}

impl Spare {
    fn held(&self) -> usize {
        let entry = std::mem::size_of::<ConsolidatedEntry>();
        self.bytes.as_ref().map_or(0, Vec::capacity)
            + self.entries.iter().map(|e| e.capacity() * entry).sum::<usize>()
    }
}

/// How many entry buffers a [`Scratch`] keeps.
const SPARE_ENTRY_BUFFERS: usize = 2;

impl Scratch {
    /// A pool keeping at most `cap_bytes` of buffer capacity.
    pub(crate) fn new(cap_bytes: usize) -> Self {
        Scratch {
            cap_bytes,
            spare: Default::default(),
        }
    }

    /// Bytes of buffer capacity kept now.
    #[cfg(test)]
    pub(super) fn held_bytes(&self) -> usize {
        self.spare.lock().held()
    }

    /// An empty byte buffer of at least `len` bytes' capacity: the one given back if it is large enough,
    /// else a new one with an eighth more (so that seals of about one size reuse it).
    pub(super) fn take_bytes(&self, len: usize) -> Vec<u8> {
        let mut spare = self.spare.lock();
        match spare.bytes.take_if(|b| b.capacity() >= len) {
            Some(bytes) => bytes,
            // Not `reserve` on a smaller spare: `realloc` would copy its whole old capacity.
            None => Vec::with_capacity(len.saturating_add(len / 8)),
        }
    }

    /// An empty entry buffer of at least `len` entries' capacity: the smallest given back that is large
    /// enough, else a new one with an eighth more.
    pub(super) fn take_entries(&self, len: usize) -> Vec<ConsolidatedEntry> {
        let mut spare = self.spare.lock();
        let fits = (0..spare.entries.len())
            .filter(|&i| spare.entries[i].capacity() >= len)
            .min_by_key(|&i| spare.entries[i].capacity());
        match fits {
            Some(i) => spare.entries.swap_remove(i),
            None => Vec::with_capacity(len.saturating_add(len / 8)),
        }
    }

    pub(super) fn give_bytes(&self, mut bytes: Vec<u8>) {
        bytes.clear();
        let mut spare = self.spare.lock();
        let kept = spare.bytes.as_ref().map_or(0, Vec::capacity);
        if bytes.capacity() > kept && spare.held() - kept + bytes.capacity() <= self.cap_bytes {
            spare.bytes = Some(bytes);
        }
    }

    pub(super) fn give_entries(&self, mut entries: Vec<ConsolidatedEntry>) {
        entries.clear();
        let size = entries.capacity() * std::mem::size_of::<ConsolidatedEntry>();
        let mut spare = self.spare.lock();
        if spare.entries.len() == SPARE_ENTRY_BUFFERS {
            // Replace the smallest kept buffer if this one is larger.
            let smallest = (0..spare.entries.len()).min_by_key(|&i| spare.entries[i].capacity());
            match smallest {
                Some(i) if spare.entries[i].capacity() < entries.capacity() => {
                    spare.entries.swap_remove(i);
                }
                _ => return,
            }
        }
        if spare.held() + size <= self.cap_bytes {
            spare.entries.push(entries);
        }
    }
}
