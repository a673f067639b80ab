//! `ops::add_into` writes a + b over a's buffer only when nothing else holds a, and the
//! linear layer that uses it for its bias gives, bit for bit, the product plus the bias as
//! two ops, with the same gradients.

use pgpo::autograd::{ops as ag, Tape};
use pgpo::ops::{self, Transpose};
use pgpo::rng::Rng;
use pgpo::{Device, Tensor};

fn tensor(rng: &mut Rng, shape: &[usize]) -> Tensor {
    Tensor::from_vec(rng.vec(shape.iter().product(), -2.0, 2.0), shape, &Device::cpu()).unwrap()
}

#[test]
fn add_into_reuses_a_buffer_nothing_else_holds_and_never_changes_a_shared_one() {
    let mut rng = Rng::new(3);
    let (a, b) = (tensor(&mut rng, &[37, 19]), tensor(&mut rng, &[19]));
    let want = ops::add(&a, &b).unwrap().to_vec().unwrap();
    let before = a.to_vec().unwrap();

    // Shared: the sum comes in a new buffer and the other holder's values stay.
    let held = a.clone();
    let out = ops::add_into(a, &b).unwrap();
    assert_eq!(out.to_vec().unwrap(), want);
    assert_eq!(held.to_vec().unwrap(), before, "a shared tensor changed under its other holder");
    assert_ne!(out.as_cpu().unwrap().as_ptr(), held.as_cpu().unwrap().as_ptr());

    // Sole holder: the sum lands in the same buffer, equal bit for bit to `add`'s.
    let ptr = held.as_cpu().unwrap().as_ptr();
    let out = ops::add_into(held, &b).unwrap();
    assert_eq!(out.as_cpu().unwrap().as_ptr(), ptr);
    assert_eq!(out.to_vec().unwrap(), want);
    assert_eq!(out.shape(), &[37, 19]);

    // Shapes are checked as for `add`.
    let err = ops::add_into(tensor(&mut rng, &[4, 5]), &tensor(&mut rng, &[4])).unwrap_err().to_string();
    assert!(err.contains("add"), "{err}");
}

#[test]
fn linear_with_a_bias_equals_product_plus_bias_with_the_same_gradients() {
    let mut rng = Rng::new(9);
    // Rows over several parallel chunks, columns off the vector widths.
    let (xv, wv, bv) = (tensor(&mut rng, &[300, 70]), tensor(&mut rng, &[53, 70]), tensor(&mut rng, &[53]));
    let run = |fused: bool| {
        let tape = Tape::new();
        let (x, w, b) = (tape.var(xv.clone()), tape.var(wv.clone()), tape.var(bv.clone()));
        let y = if fused { ag::linear(&x, &w, Some(&b)).unwrap() } else { ag::add(&ag::matmul(&x, &w, Transpose::NT).unwrap(), &b).unwrap() };
        // A loss that weighs every output differently, so each gradient element matters.
        let weights = tape.constant(tensor(&mut Rng::new(4), &[300, 53]));
        let loss = ag::sum(&ag::mul(&y, &weights).unwrap()).unwrap();
        let g = tape.backward(&loss).unwrap();
        let grads: Vec<Vec<f32>> = [&x, &w, &b].iter().map(|v| g.get(v).unwrap().to_vec().unwrap()).collect();
        (y.value().to_vec().unwrap(), grads)
    };
    let (fused, composite) = (run(true), run(false));
    assert_eq!(fused.0, composite.0);
    assert_eq!(fused.1, composite.1);
    // Under no_grad too (generation's path).
    let tape = Tape::new();
    let _g = tape.no_grad();
    let y = ag::linear(&tape.constant(xv.clone()), &tape.constant(wv.clone()), Some(&tape.constant(bv.clone()))).unwrap();
    assert_eq!(y.value().to_vec().unwrap(), composite.0);
}
