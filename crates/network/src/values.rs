//! The one walk over a network's values that every engine shares: value 0 is the input,
//! value `k + 1` layer `k`'s output, layers run in topological order, and (unless every value
//! is kept) each value is freed right after its last use, the output excepted, so a pass holds
//! only the values still to be read.

use crate::ir::{Network, ValueId};
use std::borrow::Cow;

/// The live values of one pass over a network.
pub struct ValueStore<'n, V> {
    net: &'n Network,
    values: Vec<Option<V>>,
    last_use: Cow<'n, [Option<usize>]>,
    keep_all: bool,
}

impl<'n, V> ValueStore<'n, V> {
    /// A pass over `net` starting from `input`; `keep_all` keeps every value to the end.
    pub fn new(net: &'n Network, input: V, keep_all: bool) -> Self {
        Self::start(net, Cow::Owned(net.last_uses()), input, keep_all)
    }

    /// [`ValueStore::new`] given `net.last_uses()`, for engines that run many passes and
    /// compute it once.
    pub fn with_last_uses(net: &'n Network, last_use: &'n [Option<usize>], input: V, keep_all: bool) -> Self {
        Self::start(net, Cow::Borrowed(last_use), input, keep_all)
    }

    fn start(net: &'n Network, last_use: Cow<'n, [Option<usize>]>, input: V, keep_all: bool) -> Self {
        let mut values: Vec<Option<V>> = (0..net.layers.len() + 1).map(|_| None).collect();
        values[0] = Some(input);
        ValueStore { net, values, last_use, keep_all }
    }

    /// The value `v`, if it has been computed and not freed.
    pub fn get(&self, v: ValueId) -> Option<&V> {
        self.values[v.0].as_ref()
    }

    /// Every value slot (index = value id), for engines that read values by id.
    pub fn slots(&self) -> &[Option<V>] {
        &self.values
    }

    /// Stores layer `k`'s output and frees the inputs it was the last reader of; returns the
    /// ids freed, so that stores kept beside this one can free theirs.
    pub fn finish_layer(&mut self, k: usize, out: V) -> Vec<usize> {
        self.values[k + 1] = Some(out);
        let mut freed = vec![];
        if self.keep_all {
            return freed;
        }
        for v in &self.net.layers[k].inputs {
            if self.last_use[v.0] == Some(k) && *v != self.net.output && self.values[v.0].take().is_some() {
                freed.push(v.0);
            }
        }
        freed
    }

    /// Takes the network's output out of the store.
    pub fn take_output(&mut self) -> Option<V> {
        self.values[self.net.output.0].take()
    }

    /// Every value slot (index = value id); freed ones are `None`.
    pub fn into_values(self) -> Vec<Option<V>> {
        self.values
    }
}
