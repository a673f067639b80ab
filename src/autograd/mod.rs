//! A minimal, explicit autodiff tape. Every differentiable op (in `ops`) computes its forward
//! and, when recording, pushes a node holding what its backward needs. `Tape::backward`
//! walks the nodes in reverse, accumulating gradients by variable and freeing each node once
//! it has run, and returns the gradients of every leaf variable; the tape is then empty and
//! ready for the next micro-batch. `no_grad` stops recording (rollouts, the blind pass).
//! `Grads::accumulate` sums micro-batches.

pub mod ops;

use crate::error::{Error, Result};
use crate::tensor::Tensor;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

type BackwardFn = Box<dyn Fn(&Tensor) -> Result<Vec<Option<Tensor>>> + Send + Sync>;

struct Node {
    output: usize,
    inputs: Vec<usize>,
    backward: BackwardFn,
}

#[derive(Default)]
struct Inner {
    nodes: Vec<Node>,
    paused: usize,
}

/// The record of one forward pass. Cheap to clone: clones share the record.
#[derive(Clone, Default)]
pub struct Tape(Arc<Mutex<Inner>>);

/// A tensor on a tape. `tracked` variables take part in differentiation.
#[derive(Clone)]
pub struct Var {
    id: usize,
    value: Tensor,
    tracked: bool,
    tape: Tape,
}

static NEXT_ID: AtomicUsize = AtomicUsize::new(0);

fn next_id() -> usize {
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

/// Restores recording when dropped.
pub struct NoGrad(Tape);

impl Drop for NoGrad {
    fn drop(&mut self) {
        self.0.lock().paused -= 1;
    }
}

impl Tape {
    pub fn new() -> Tape {
        Tape::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A leaf whose gradient `backward` returns (a parameter, or an input of interest).
    pub fn var(&self, value: Tensor) -> Var {
        Var { id: next_id(), value, tracked: true, tape: self.clone() }
    }

    /// A leaf that needs no gradient.
    pub fn constant(&self, value: Tensor) -> Var {
        Var { id: next_id(), value, tracked: false, tape: self.clone() }
    }

    /// Stops recording until the guard drops.
    pub fn no_grad(&self) -> NoGrad {
        self.lock().paused += 1;
        NoGrad(self.clone())
    }

    pub fn is_recording(&self) -> bool {
        self.lock().paused == 0
    }

    /// Number of recorded nodes.
    pub fn len(&self) -> usize {
        self.lock().nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Wraps an op result, recording its backward when any input is tracked.
    pub(crate) fn record(&self, value: Tensor, inputs: &[&Var], backward: BackwardFn) -> Var {
        let tracked = inputs.iter().any(|v| v.tracked) && self.is_recording();
        let v = Var { id: next_id(), value, tracked, tape: self.clone() };
        if tracked {
            let inputs = inputs.iter().map(|i| if i.tracked { i.id } else { usize::MAX }).collect();
            self.lock().nodes.push(Node { output: v.id, inputs, backward });
        }
        v
    }

    /// Gradients of the scalar `loss` with respect to every tracked leaf (a variable made by
    /// `var`, not by an op) it depends on. Consumes the recorded nodes.
    pub fn backward(&self, loss: &Var) -> Result<Grads> {
        if loss.value.numel() != 1 {
            return Err(Error::shape("backward", format!("loss must be a scalar, got {:?}", loss.value.shape())));
        }
        self.backward_seeded(loss, Tensor::full(1.0, loss.value.shape(), loss.value.device())?)
    }

    /// Gradients of sum(out * seed) with respect to every tracked leaf (`seed` has out's
    /// shape): the backward of a recomputed block, seeded with the gradient of its output.
    /// Consumes the recorded nodes.
    pub fn backward_seeded(&self, out: &Var, seed: Tensor) -> Result<Grads> {
        if seed.shape() != out.value.shape() {
            return Err(Error::shape("backward", format!("seed {:?} for an output {:?}", seed.shape(), out.value.shape())));
        }
        let mut nodes = std::mem::take(&mut self.lock().nodes);
        let mut grads = Grads::default();
        grads.add(out.id, seed)?;
        // Nodes run in reverse order of recording, so a node's output has every contribution
        // to its gradient when the node runs. That gradient, and the node with the
        // activations it captured, are dropped right after: the backward's memory falls as
        // it goes instead of holding the whole tape and every intermediate gradient to the end.
        while let Some(node) = nodes.pop() {
            let Some(dout) = grads.map.remove(&node.output) else { continue };
            let input_grads = (node.backward)(&dout)?;
            for (&id, g) in node.inputs.iter().zip(input_grads) {
                if let (true, Some(g)) = (id != usize::MAX, g) {
                    grads.add(id, g)?;
                }
            }
        }
        Ok(grads)
    }
}

/// Gradients by variable.
#[derive(Default)]
pub struct Grads {
    map: HashMap<usize, Tensor>,
}

impl Grads {
    pub fn get(&self, v: &Var) -> Option<&Tensor> {
        self.map.get(&v.id)
    }

    fn add(&mut self, id: usize, g: Tensor) -> Result<()> {
        let sum = match self.map.remove(&id) {
            Some(prev) => crate::ops::add(&prev, &g)?,
            None => g,
        };
        self.map.insert(id, sum);
        Ok(())
    }

    /// Adds another micro-batch's gradients, matching variables by identity.
    pub fn accumulate(&mut self, other: Grads) -> Result<()> {
        for (id, g) in other.map {
            self.add(id, g)?;
        }
        Ok(())
    }
}

impl Var {
    pub fn value(&self) -> &Tensor {
        &self.value
    }

    pub fn shape(&self) -> &[usize] {
        self.value.shape()
    }

    pub fn is_tracked(&self) -> bool {
        self.tracked
    }

    pub fn tape(&self) -> &Tape {
        &self.tape
    }
}
