//! The Merkle tree of a receipt group: one signature vouches for every
//! receipt of a store commit, and each receipt still proves its own item on
//! its own, with an inclusion path.
//!
//! The hashing is RFC 9162's (Certificate Transparency 2.0, §2.1), so any
//! CT library can check a path: a leaf is `SHA-256(0x00 || receipt bytes)`,
//! an inner node `SHA-256(0x01 || left || right)`, and a tree of `n` leaves
//! splits at the largest power of two below `n`. Building the tree level by
//! level and promoting an unpaired last node unchanged gives the same root
//! and paths as that recursive split.

use crate::digest::sha256_parts;

/// A node's hash.
pub type Hash = [u8; 32];

/// The hash of a leaf holding `data`.
pub fn leaf(data: &[u8]) -> Hash {
    sha256_parts(&[&[0x00], data])
}

fn node(left: &Hash, right: &Hash) -> Hash {
    sha256_parts(&[&[0x01], left, right])
}

/// A tree over its leaves' hashes: its root and each leaf's path.
#[derive(Debug)]
pub struct Tree {
    /// `levels[0]` are the leaves; the last level holds only the root.
    levels: Vec<Vec<Hash>>,
}

impl Tree {
    /// The tree over `leaves` (at least one).
    pub fn new(leaves: Vec<Hash>) -> Self {
        let mut levels = vec![leaves];
        while levels.last().is_some_and(|l| l.len() > 1) {
            let below = levels.last().map(Vec::as_slice).unwrap_or_default();
            let above = below
                .chunks(2)
                .map(|pair| match pair {
                    [l, r] => node(l, r),
                    [only] => *only,
                    _ => unreachable!("chunks(2) yields one or two"),
                })
                .collect();
            levels.push(above);
        }
        Self { levels }
    }

    /// Leaves in the tree.
    pub fn size(&self) -> usize {
        self.levels[0].len()
    }

    /// The root (the only leaf's hash for a tree of one; zeros for none).
    pub fn root(&self) -> Hash {
        self.levels
            .last()
            .and_then(|l| l.first())
            .copied()
            .unwrap_or_default()
    }

    /// The inclusion path of leaf `index`, bottom up (RFC 9162 §2.1.3.1).
    pub fn path(&self, mut index: usize) -> Vec<Hash> {
        let mut path = Vec::new();
        for level in &self.levels[..self.levels.len() - 1] {
            let sibling = index ^ 1;
            if sibling < level.len() {
                path.push(level[sibling]);
            }
            index /= 2;
        }
        path
    }
}

/// The root that `path` leads to from leaf `index` (hash `leaf`) in a tree
/// of `size` leaves, or `None` if the path cannot be one of such a tree
/// (RFC 9162 §2.1.3.2).
pub fn root_from_path(index: u64, size: u64, leaf: Hash, path: &[Vec<u8>]) -> Option<Hash> {
    if index >= size {
        return None;
    }
    let (mut f, mut s) = (index, size - 1);
    let mut r = leaf;
    for p in path {
        let p: &Hash = p.as_slice().try_into().ok()?;
        if s == 0 {
            return None;
        }
        if f & 1 == 1 || f == s {
            r = node(p, &r);
            if f & 1 == 0 {
                while f & 1 == 0 && f != 0 {
                    f >>= 1;
                    s >>= 1;
                }
            }
        } else {
            r = node(&r, p);
        }
        f >>= 1;
        s >>= 1;
    }
    (s == 0).then_some(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 9162's recursive definition, to check the level-by-level one.
    fn mth(leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => crate::digest::sha256(&[]),
            1 => leaves[0],
            n => {
                let mut k = 1;
                while k * 2 < n {
                    k *= 2;
                }
                node(&mth(&leaves[..k]), &mth(&leaves[k..]))
            }
        }
    }

    fn leaves(n: usize) -> Vec<Hash> {
        (0..n).map(|i| leaf(&i.to_be_bytes())).collect()
    }

    #[test]
    fn every_path_of_every_small_tree_leads_to_the_recursive_root() {
        for n in 1..=70 {
            let ls = leaves(n);
            let tree = Tree::new(ls.clone());
            assert_eq!(tree.root(), mth(&ls), "root of {n}");
            for (i, l) in ls.iter().enumerate() {
                let path: Vec<Vec<u8>> = tree.path(i).iter().map(|h| h.to_vec()).collect();
                assert_eq!(
                    root_from_path(i as u64, n as u64, *l, &path),
                    Some(tree.root()),
                    "leaf {i} of {n}"
                );
            }
        }
    }

    #[test]
    fn a_path_proves_only_its_own_leaf_place_and_size() {
        let ls = leaves(13);
        let tree = Tree::new(ls.clone());
        let path: Vec<Vec<u8>> = tree.path(5).iter().map(|h| h.to_vec()).collect();
        let root = Some(tree.root());
        assert_ne!(root_from_path(5, 13, ls[6], &path), root, "other leaf");
        assert_ne!(root_from_path(4, 13, ls[5], &path), root, "other index");
        // A path does not bind the tree's size (one of 13 leaves can also
        // fit 12): that is why a group's signature covers the size too.
        assert_eq!(
            root_from_path(13, 13, ls[5], &path),
            None,
            "index out of the tree"
        );
        let mut short = path.clone();
        short.pop();
        assert_ne!(root_from_path(5, 13, ls[5], &short), root, "path too short");
        let mut long = path.clone();
        long.push(vec![0; 32]);
        assert_eq!(root_from_path(5, 13, ls[5], &long), None, "path too long");
        let mut bad = path;
        bad[0] = vec![0; 31];
        assert_eq!(root_from_path(5, 13, ls[5], &bad), None, "not a hash");
    }

    #[test]
    fn a_tree_of_one_is_its_leaf() {
        let l = leaf(b"receipt");
        let tree = Tree::new(vec![l]);
        assert_eq!(tree.root(), l);
        assert!(tree.path(0).is_empty());
        assert_eq!(root_from_path(0, 1, l, &[]), Some(l));
    }
}
