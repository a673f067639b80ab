//! The decoder's key/value cache for batched, left-padded generation. One [B, Hkv, capacity, D]
//! tensor per layer for keys and one for values, allocated once for the whole generation
//! (prompt + new tokens) and written in place, so appending a token never copies the cache.
//! Slots not yet written stay zero and are hidden from attention by the key mask, which also
//! hides the prompt's left padding. Finished sequences are dropped with `retain` (one gather
//! per finishing event, not per token), so they stop costing compute.

use super::config::TextConfig;
use crate::device::Device;
use crate::error::{Error, Result};
use crate::ops::{self, AttnOptions};
use crate::tensor::Tensor;

pub struct KvCache {
    keys: Vec<Tensor>,
    values: Vec<Tensor>,
    batch: usize,
    capacity: usize,
    /// Slots written by every layer.
    len: usize,
    /// [B, capacity]: 1 for a real token already in the cache (or being added), else 0.
    key_mask: Vec<f32>,
    heads: usize,
    head_dim: usize,
}

impl KvCache {
    pub fn new(c: &TextConfig, batch: usize, capacity: usize, device: &Device) -> Result<KvCache> {
        let (heads, head_dim) = (c.num_key_value_heads, c.head_dim());
        let shape = [batch, heads, capacity, head_dim];
        let mut keys = Vec::with_capacity(c.num_hidden_layers);
        let mut values = Vec::with_capacity(c.num_hidden_layers);
        for _ in 0..c.num_hidden_layers {
            keys.push(Tensor::zeros(&shape, device)?);
            values.push(Tensor::zeros(&shape, device)?);
        }
        Ok(KvCache { keys, values, batch, capacity, len: 0, key_mask: vec![0.0; batch * capacity], heads, head_dim })
    }

    pub fn batch(&self) -> usize {
        self.batch
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Marks `t` new slots per sequence (`mask` [B, t], true for a real token) before the
    /// layers write them; returns the attention options of a query over the whole cache.
    /// Several new tokens attend causally among themselves: the causal mask aligns the last
    /// query with the last key, so they must fill the cache exactly.
    pub fn begin(&mut self, t: usize, mask: &[bool]) -> Result<AttnOptions> {
        if self.len + t > self.capacity || mask.len() != self.batch * t {
            return Err(Error::shape("kv_cache", format!("{t} new tokens for {} sequences do not fit: {} of {} slots used", mask.len() / t.max(1), self.len, self.capacity)));
        }
        let causal = t > 1 && !self.is_empty();
        if causal && self.len + t != self.capacity {
            return Err(Error::shape("kv_cache", format!("{t} new tokens after {} must fill the cache of {} exactly", self.len, self.capacity)));
        }
        for b in 0..self.batch {
            for i in 0..t {
                self.key_mask[b * self.capacity + self.len + i] = if mask[b * t + i] { 1.0 } else { 0.0 };
            }
        }
        Ok(AttnOptions { causal, key_mask: Some(self.key_mask.clone()), ..Default::default() })
    }

    /// Writes layer `layer`'s new keys and values [B, Hkv, t, D] at the current end.
    pub fn write(&mut self, layer: usize, k: &Tensor, v: &Tensor) -> Result<()> {
        let (ks, vs) = (self.keys.get_mut(layer), self.values.get_mut(layer));
        let (Some(ks), Some(vs)) = (ks, vs) else {
            return Err(Error::shape("kv_cache", format!("no layer {layer}")));
        };
        ops::write_slice(ks, 2, self.len, k)?;
        ops::write_slice(vs, 2, self.len, v)
    }

    /// Layer `layer`'s keys and values [B, Hkv, capacity, D].
    pub fn layer(&self, layer: usize) -> (&Tensor, &Tensor) {
        (&self.keys[layer], &self.values[layer])
    }

    /// After every layer wrote `t` slots.
    pub fn commit(&mut self, t: usize) {
        self.len += t;
    }

    /// Keeps only the sequences `rows` (in that order): a gather of every layer's cache.
    pub fn retain(&mut self, rows: &[usize]) -> Result<()> {
        if let Some(&r) = rows.iter().find(|&&r| r >= self.batch) {
            return Err(Error::shape("kv_cache", format!("sequence {r} is not in a cache of {}", self.batch)));
        }
        let ids: Vec<u32> = rows.iter().map(|&r| r as u32).collect();
        let row = self.heads * self.capacity * self.head_dim;
        let shape = [rows.len(), self.heads, self.capacity, self.head_dim];
        for t in self.keys.iter_mut().chain(self.values.iter_mut()) {
            *t = ops::gather(&t.reshape(&[self.batch, row])?, &ids)?.reshape(&shape)?;
        }
        self.key_mask = rows.iter().flat_map(|&r| self.key_mask[r * self.capacity..(r + 1) * self.capacity].to_vec()).collect();
        self.batch = rows.len();
        Ok(())
    }
}
