//! [`Scratch`]: the buffers of finished consolidations ([`super::Consolidated`]), kept for the next seal or
//! spill of the store instead of going back to the allocator.

use super::consolidated::ConsolidatedEntry;

/// Buffers of finished consolidations kept for the next ones (one store's seals and spills): at most one
/// arena and one entry buffer, and at most `cap_bytes` of capacity in all (`Options::memtable_budget_bytes`
/// / 2: a consolidation takes 40 bytes an update and its key and val bytes past 16 against the
/// memtable's 24 and all of them, so that a seal of a quarter of the budget fits; a buffer beyond it is
/// freed, as before). Peak memory is unchanged (a seal holds these buffers while it runs); between seals
/// the store keeps them instead of returning them to the allocator, which unmaps them (glibc maps every
/// allocation past its mmap threshold, at most 32 MiB, on its own) and faults them in again on the next
/// seal.
pub(crate) struct Scratch {
    cap_bytes: usize,
    spare: parking_lot::Mutex<Spare>,
}

/// The kept buffers, empty (length 0).
#[derive(Default)]
struct Spare {
    arena: Option<Vec<u8>>,
    entries: Option<Vec<ConsolidatedEntry>>,
}

/// Capacity of the buffer in `slot`, in bytes (0 if none).
fn slot_bytes<T>(slot: &Option<Vec<T>>) -> usize {
    slot.as_ref()
        .map_or(0, |b| b.capacity() * std::mem::size_of::<T>())
}

/// The buffer of `slot` if it has room for `len` elements, taken out; else a new one with an eighth more
/// (so that seals of about one size reuse it). Never a smaller one grown: `realloc` would copy its whole
/// old capacity.
fn take_slot<T>(slot: &mut Option<Vec<T>>, len: usize) -> Vec<T> {
    (slot.take_if(|b| b.capacity() >= len)).unwrap_or_else(|| Vec::with_capacity(len.saturating_add(len / 8)))
}

/// Keeps `buffer` (cleared) in `slot` if it is larger than the one kept there and the capacity kept in all
/// stays within `cap_bytes`, where `others_bytes` is what the other slot holds; else it is freed (and the
/// kept one stays).
fn give_slot<T>(slot: &mut Option<Vec<T>>, mut buffer: Vec<T>, others_bytes: usize, cap_bytes: usize) {
    buffer.clear();
    let offered = Some(buffer);
    if slot_bytes(&offered) > slot_bytes(slot) && others_bytes + slot_bytes(&offered) <= cap_bytes {
        *slot = offered;
    }
}

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
        let spare = self.spare.lock();
        slot_bytes(&spare.arena) + slot_bytes(&spare.entries)
    }

    /// An empty arena of at least `len` bytes' capacity: the one given back if it is large enough, else a
    /// new one with an eighth more.
    pub(super) fn take_bytes(&self, len: usize) -> Vec<u8> {
        take_slot(&mut self.spare.lock().arena, len)
    }

    /// An empty entry buffer of at least `len` entries' capacity: the one given back if it is large
    /// enough, else a new one with an eighth more.
    pub(super) fn take_entries(&self, len: usize) -> Vec<ConsolidatedEntry> {
        take_slot(&mut self.spare.lock().entries, len)
    }

    /// Gives an arena back for the next [`take_bytes`](Self::take_bytes): kept if it is larger than the
    /// one kept and the capacity kept in all stays within the cap, else freed.
    pub(super) fn give_bytes(&self, bytes: Vec<u8>) {
        let spare = &mut *self.spare.lock();
        give_slot(
            &mut spare.arena,
            bytes,
            slot_bytes(&spare.entries),
            self.cap_bytes,
        );
    }

    /// Gives an entry buffer back for the next [`take_entries`](Self::take_entries), as
    /// [`give_bytes`](Self::give_bytes) gives an arena.
    pub(super) fn give_entries(&self, entries: Vec<ConsolidatedEntry>) {
        let spare = &mut *self.spare.lock();
        give_slot(
            &mut spare.entries,
            entries,
            slot_bytes(&spare.arena),
            self.cap_bytes,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_larger_buffer_replaces_the_kept_one_only_when_it_fits_under_the_cap() {
        let scratch = Scratch::new(1000);
        scratch.give_bytes(Vec::with_capacity(100));
        scratch.give_bytes(Vec::with_capacity(50));
        assert_eq!(
            scratch.held_bytes(),
            100,
            "a smaller arena is not kept over a larger one"
        );
        scratch.give_bytes(Vec::with_capacity(300));
        assert_eq!(scratch.held_bytes(), 300, "a larger arena replaces the kept one");
        scratch.give_bytes(Vec::with_capacity(2000));
        assert_eq!(
            scratch.held_bytes(),
            300,
            "one past the cap is freed, the kept one stays"
        );
        // The cap counts both slots, in bytes.
        let entry = std::mem::size_of::<ConsolidatedEntry>();
        scratch.give_entries(Vec::with_capacity(600 / entry));
        let entries_bytes = 600 / entry * entry;
        assert_eq!(scratch.held_bytes(), 300 + entries_bytes);
        scratch.give_entries(Vec::with_capacity(800 / entry));
        assert_eq!(
            scratch.held_bytes(),
            300 + entries_bytes,
            "larger, but over the cap with the arena"
        );
        scratch.give_bytes(Vec::with_capacity(1000 - entries_bytes + 1));
        assert_eq!(
            scratch.held_bytes(),
            300 + entries_bytes,
            "an arena over the cap with the entries"
        );
        // Taken: the kept one if it has room, empty; else a new one with an eighth more.
        assert!(scratch.take_entries(600 / entry + 1).capacity() >= (600 / entry + 1) * 9 / 8);
        let taken = scratch.take_entries(1);
        assert_eq!((taken.len(), taken.capacity()), (0, 600 / entry));
        assert_eq!(scratch.take_bytes(300).capacity(), 300);
        assert_eq!(scratch.held_bytes(), 0);
    }
}
