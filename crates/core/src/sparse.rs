//! [`shrink_if_sparse`]: a `HashMap` keeps the capacity of its fullest moment, so a server
//! that once held 10 000 connections would keep tables sized for 10 000 after everyone left.
//! Maps of connections call this after removing entries.

use std::{
    collections::HashMap,
    hash::{BuildHasher, Hash},
};

/// Below this capacity a map is left alone: shrinking it would give back almost nothing.
const FLOOR: usize = 64;

/// Shrinks `map` to twice its length once three quarters of its capacity are empty. Half of
/// the entries must leave again before the next shrink, so the cost stays constant per
/// removal, and a map that refills grows as it did the first time.
pub fn shrink_if_sparse<K: Eq + Hash, V, S: BuildHasher>(map: &mut HashMap<K, V, S>) {
    if map.capacity() > FLOOR && map.len() * 4 < map.capacity() {
        map.shrink_to((map.len() * 2).max(FLOOR));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_map_emptied_gives_its_capacity_back_and_a_full_one_keeps_it() {
        let mut map: HashMap<u32, [u8; 64]> = (0..10_000).map(|i| (i, [0; 64])).collect();
        let full = map.capacity();
        shrink_if_sparse(&mut map);
        assert_eq!(map.capacity(), full, "a full map is not shrunk");
        for i in 0..9_990 {
            map.remove(&i);
            shrink_if_sparse(&mut map);
        }
        assert_eq!(map.len(), 10);
        assert!(
            map.capacity() <= 4 * FLOOR,
            "capacity {} left",
            map.capacity()
        );
        assert!(map.contains_key(&9_995), "entries survive the shrinks");
    }

    #[test]
    fn shrinks_are_rare_while_a_map_drains() {
        let mut map: HashMap<u32, u32> = (0..4_096).map(|i| (i, i)).collect();
        let mut shrinks = 0;
        for i in 0..4_096 {
            map.remove(&i);
            let before = map.capacity();
            shrink_if_sparse(&mut map);
            shrinks += usize::from(map.capacity() < before);
        }
        assert!((1..=8).contains(&shrinks), "{shrinks} shrinks");
    }
}
