//! Commands grouped by hash tag: all keys of one webhook share the tag `{W}`, so a cluster runs
//! each webhook's commands as one pipeline (or transaction) on that slot's node, and a single
//! node runs them all as one — the same code, one round trip where the server allows it.

/// Values (pipelines, or what a write expects back) by webhook id.
pub(super) struct Slots<T> {
    /// One group per webhook (a cluster), or one for all (a single node).
    split: bool,
    groups: Vec<(String, T)>,
}

impl<T: Default> Slots<T> {
    /// Empty groups: one per webhook when `split`.
    pub(super) fn new(split: bool) -> Self {
        Slots {
            split,
            groups: Vec::new(),
        }
    }

    /// The group that `webhook`'s commands go to (created empty the first time).
    pub(super) fn of(&mut self, webhook: &str) -> &mut T {
        let tag = if self.split { webhook } else { "" };
        let index = match self.groups.iter().position(|(t, _)| t == tag) {
            Some(index) => index,
            None => {
                self.groups.push((tag.to_owned(), T::default()));
                self.groups.len() - 1
            }
        };
        &mut self.groups[index].1
    }

    /// The groups with the webhook each is for ("" for all, on a single node), in the order
    /// they were first used.
    pub(super) fn into_tagged(self) -> impl Iterator<Item = (String, T)> {
        self.groups.into_iter()
    }

    /// The groups, in the order they were first used.
    pub(super) fn into_groups(self) -> impl Iterator<Item = T> {
        self.groups.into_iter().map(|(_, group)| group)
    }
}

#[cfg(test)]
mod tests {
    use super::Slots;

    #[test]
    fn a_cluster_gets_one_group_per_webhook_and_a_node_one_for_all() {
        for (split, expected) in [(true, vec![vec![1, 3], vec![2]]), (false, vec![vec![1, 2, 3]])] {
            let mut slots: Slots<Vec<i32>> = Slots::new(split);
            slots.of("a").push(1);
            slots.of("b").push(2);
            slots.of("a").push(3);
            assert_eq!(slots.into_groups().collect::<Vec<_>>(), expected);
        }
    }
}
