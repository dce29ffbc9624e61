//! The one walk over a network's values that every engine shares: value 0 is the input,
//! value `k + 1` layer `k`'s output, layers run in topological order, and (unless every value
//! is kept) each value is freed right after its last use, the output excepted, so a pass holds
//! only the values still to be read.

use crate::ir::{Network, ValueId};

/// The live values of one pass over a network.
pub struct ValueStore<V> {
    values: Vec<Option<V>>,
    last_use: Vec<Option<usize>>,
    inputs: Vec<Vec<ValueId>>,
    output: usize,
    keep_all: bool,
}

impl<V> ValueStore<V> {
    /// A pass over `net` starting from `input`; `keep_all` keeps every value to the end.
    pub fn new(net: &Network, input: V, keep_all: bool) -> Self {
        let mut values: Vec<Option<V>> = (0..net.layers.len() + 1).map(|_| None).collect();
        values[0] = Some(input);
        ValueStore {
            values,
            last_use: net.last_uses(),
            inputs: net.layers.iter().map(|l| l.inputs.clone()).collect(),
            output: net.output.0,
            keep_all,
        }
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
        for v in &self.inputs[k] {
            if self.last_use[v.0] == Some(k) && v.0 != self.output && self.values[v.0].take().is_some() {
                freed.push(v.0);
            }
        }
        freed
    }

    /// Takes the network's output out of the store.
    pub fn take_output(&mut self) -> Option<V> {
        self.values[self.output].take()
    }

    /// Every value slot (index = value id); freed ones are `None`.
    pub fn into_values(self) -> Vec<Option<V>> {
        self.values
    }
}
